"""Many worker processes on one study: embedded store, PostgreSQL, gRPC server, and a worker killed mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from _support import free_port, wait_for_port
from _worker import objective
from optuna.trial import TrialState

from sanas.search import evaluations, replay_chain
from sanas.search.chain import FAIL_REASON_KEY, STATUS_KEY, VOID_STATUSES, released, trial_tokens
from sanas.search.storage import open_storage

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).with_name("_worker.py"))
STEPS = 40


def spawn(out: Path, *args: str | int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, "--out", str(out), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker {p.args} did not finish in {timeout} s")
        assert p.returncode == 0, f"worker {p.args} exited {p.returncode}:\n{err[-3000:]}"


def check_study(storage, study_name: str, outs: list[Path], steps: int = STEPS,
                killed: bool = False) -> list[optuna.trial.FrozenTrial]:
    """Exactly `steps` evaluations, none repeated, and every worker's final report equals the replayed chain."""
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == steps
    # A crashed candidate gives its tokens back and is proposed once more; nothing else is proposed twice.
    proposed = [trial_tokens(t) for t in trials if t.system_attrs.get(STATUS_KEY) not in VOID_STATUSES
                and not released(t)]
    assert len(proposed) == len(set(proposed)), "a token vector was proposed twice"
    assert all(t.state == TrialState.FAIL for t in trials if t.system_attrs.get(STATUS_KEY) in VOID_STATUSES)
    chain = replay_chain(evaluations(trials))  # the workers' default temperature ("auto")
    reports = [json.loads(o.read_text()) for o in outs]
    for r in reports:
        info = r["info"]
        assert info["finished"] == steps
        assert info["best_tokens"] == list(chain.best_tokens) and info["best_reward"] == chain.best_reward
        assert info["current_tokens"] == list(chain.current_tokens)
        assert info["current_reward"] == chain.current_reward
    # no finished evaluation lost: the workers' rewards are exactly the stored ones (a killed worker reports
    # nothing, but what it finished before dying is stored)
    rewarded = {t["number"]: t["reward"] for r in reports for t in r["trials"]}
    stored = {t.number: t.value for t in complete}
    assert all(stored[n] == v for n, v in rewarded.items())
    assert set(rewarded) == set(stored) if not killed else len(stored) - len(rewarded) <= 1
    assert all(t.value == objective(trial_tokens(t)) for t in complete)
    return trials


def test_four_workers_on_the_embedded_store(tmp_path, study_name) -> None:
    run_dir = tmp_path / "run"
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    finish([spawn(o, "--study", study_name, "--steps", STEPS, "--run-dir", run_dir, "--sleep", 0.05) for o in outs])
    check_study(open_storage(run_dir=run_dir), study_name, outs)


def test_four_workers_on_postgres(tmp_path, postgres_url, study_name) -> None:
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    finish([spawn(o, "--study", study_name, "--steps", STEPS, "--storage", postgres_url, "--sleep", 0.05)
            for o in outs])
    check_study(postgres_url, study_name, outs)


def test_server_and_two_clients_over_grpc(tmp_path, study_name) -> None:
    port = free_port()
    outs = [tmp_path / f"w{i}.json" for i in range(3)]
    server = spawn(outs[0], "--study", study_name, "--steps", STEPS, "--server", port, "--run-dir", tmp_path / "run",
                   "--sleep", 0.05)
    wait_for_port(port, server)
    clients = [spawn(o, "--study", study_name, "--steps", STEPS, "--client", port, "--sleep", 0.05)
               for o in outs[1:]]
    finish([*clients, server])
    check_study(open_storage(run_dir=tmp_path / "run", server=True), study_name, outs)
    assert all(json.loads(o.read_text())["trials"] for o in outs[1:]), "a client evaluated nothing"


def test_a_worker_killed_mid_trial_is_failed_and_the_search_still_finishes(tmp_path, study_name) -> None:
    steps = 12
    run_dir = tmp_path / "run"
    common = ["--study", study_name, "--steps", steps, "--run-dir", run_dir, "--sleep", 0.1]
    victim = spawn(tmp_path / "victim.json", *common, "--hang-at", 2)
    line = victim.stdout.readline()  # blocks until the victim holds its second candidate
    assert line.startswith("HANG "), (line, victim.stderr.read() if victim.poll() is not None else "")
    number = int(line.split()[1])
    outs = [tmp_path / f"w{i}.json" for i in range(2)]
    others = [spawn(o, *common) for o in outs]
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    finish(others)
    trials = check_study(open_storage(run_dir=run_dir), study_name, outs, steps=steps, killed=True)
    killed = next(t for t in trials if t.number == number)
    # On the same machine its death is seen at once (its process is gone), not after the grace period.
    assert killed.state == TrialState.FAIL and killed.user_attrs[FAIL_REASON_KEY].startswith("stale: its worker")
    assert released(killed)
    assert any(t.state == TrialState.COMPLETE and trial_tokens(t) == trial_tokens(killed) for t in trials)
