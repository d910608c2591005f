"""Faults during candidates: a crash, kill or interrupt is no verdict (the candidate is proposed once more, the
chain is unchanged); a NaN loss is; a restarted worker finds its own dead candidate at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _support import TinySpace
from _worker import BUDGET, objective
from optuna.trial import TrialState

from sanas.search import SANAS
from sanas.search.chain import CRASHED, FAIL_REASON_KEY, RETRY_OF_KEY, STATUS_KEY, released, trial_tokens
from sanas.search.lease import OWNER_KEY
from sanas.search.lease import owner_gone as _owner_gone
from sanas.search.lease import owner_identity as _owner

WORKER = str(Path(__file__).with_name("_worker.py"))


def search(run_dir, study_name, faults=None, steps=12, **kwargs):
    """A single-worker search; ``faults`` maps a candidate's position (1-based) to ("crash"|"nan", restart?)."""
    faults = dict(faults or {})
    common = {"search_steps": steps, "save_checkpoint": run_dir, "study_name": study_name, "seed": 5, **kwargs}
    sa = SANAS(TinySpace(n=6, r=8), **common)
    done, seen = [], 0
    while (tokens := sa.next_tokens()) is not None:
        seen += 1
        fault, restart = faults.pop(seen, (None, False))
        if fault == "crash":
            sa.fail("interrupted: the test stopped this candidate", retry=True)
        elif fault == "nan":
            sa.fail("non-finite training loss (nan) at epoch 1, step 3")
        else:
            sa.reward(objective(tokens))
            done.append(tuple(tokens))
        if restart:  # the worker process ends; a new one resumes the run directory
            sa.close()
            sa = SANAS(TinySpace(n=6, r=8), **common)
    return sa, done


def test_a_crashed_candidate_is_proposed_again_and_the_chain_is_as_without_the_crash(tmp_path, study_name) -> None:
    clean, clean_done = search(tmp_path / "clean", study_name)
    crashed, crashed_done = search(tmp_path / "crashed", study_name, faults={1: ("crash", True), 5: ("crash", False)})
    # Same evaluations in the same order, so the same chain: a crash is not a verdict.
    assert crashed_done == clean_done
    assert crashed.current_info() == clean.current_info()
    trials = crashed.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and all(released(t) and t.system_attrs[STATUS_KEY] == CRASHED for t in failed)
    assert all(t.user_attrs[FAIL_REASON_KEY].endswith("; proposed again") for t in failed)
    for t in failed:  # the next trial repeats it, and says so
        again = trials[t.number + 1]
        assert trial_tokens(again) == trial_tokens(t) and again.system_attrs[RETRY_OF_KEY] == t.number
        assert again.state == TrialState.COMPLETE


def test_a_second_crash_is_final_and_a_nan_loss_is_a_verdict(tmp_path, study_name) -> None:
    sa, done = search(tmp_path, study_name, faults={2: ("crash", False), 3: ("crash", False), 6: ("nan", False)})
    trials = sa.study.get_trials()
    first, second, nan = (t for t in trials if t.state == TrialState.FAIL)
    assert trial_tokens(first) == trial_tokens(second) and second.system_attrs[RETRY_OF_KEY] == first.number
    assert released(first) and not released(second)
    assert "not proposed again (already the second attempt" in second.user_attrs[FAIL_REASON_KEY]
    assert not released(nan) and nan.user_attrs[FAIL_REASON_KEY].startswith("non-finite")
    for final in (second, nan):  # never evaluated again
        assert trial_tokens(final) not in done
        assert sum(trial_tokens(t) == trial_tokens(final) for t in trials) == (2 if final is second else 1)
    assert len(done) == 12


def test_a_stale_candidate_is_proposed_again(tmp_path, study_name) -> None:
    # One step: the other worker waits for the hung candidate, finds it stale, and takes the same tokens.
    common = {"save_checkpoint": tmp_path, "study_name": study_name, "search_steps": 1, "heartbeat_interval": 0.2,
              "grace_period": 1.0, "poll_interval": 0.05}
    hung = SANAS(TinySpace(n=6, r=8), **common)
    tokens = hung.next_tokens()
    hung.ledger.lease.stop.set()  # its heartbeat stops: hung (same process, so only the heartbeat can tell)
    other = SANAS(TinySpace(n=6, r=8), **common)
    assert other.next_tokens() == tokens  # after the grace period, the same candidate again
    first = other.study.get_trials()[0]
    assert first.user_attrs[FAIL_REASON_KEY].startswith("stale: no heartbeat") and released(first)


def test_owner_identity_tells_a_dead_process_of_this_machine() -> None:
    me = _owner()
    here = me["ns"]
    assert here is not None and me["pid"] == os.getpid() and not _owner_gone(me, here)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {**me, "pid": child.pid}
    assert _owner_gone(gone, here)
    assert not _owner_gone({**gone, "ns": "another-machine/1"}, here)  # other hosts: only heartbeats tell
    assert not _owner_gone({**gone, "ns": None}, here)  # no /proc: cannot tell
    assert _owner_gone({**me, "start": me["start"] + 1}, here)  # same pid, other process: pid reused


def test_a_restarted_worker_picks_up_its_own_dead_candidate_at_once(tmp_path, study_name) -> None:
    # Production heartbeat settings: a 60 s grace period that a restart no longer waits out.
    run_dir = tmp_path / "run"
    victim = subprocess.Popen([sys.executable, WORKER, "--out", str(tmp_path / "victim.json"), "--study", study_name,
                               "--steps", "3", "--run-dir", str(run_dir), "--hang-at", "1", "--heartbeat", "10",
                               "--grace", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = victim.stdout.readline()
    assert line.startswith("HANG "), (line, victim.stderr.read() if victim.poll() is not None else "")
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    start = time.monotonic()
    again = SANAS("DartsSpace", search_steps=3, study_name=study_name, max_params=BUDGET, seed=0,
                  heartbeat_interval=10, grace_period=60, save_checkpoint=run_dir)
    tokens = again.next_tokens()
    waited = time.monotonic() - start
    dead = again.study.get_trials()[0]
    assert tuple(tokens) == trial_tokens(dead) and again.trial_number == 1
    assert dead.state == TrialState.FAIL and released(dead)
    assert dead.user_attrs[FAIL_REASON_KEY].startswith(f"stale: its worker (pid {victim.pid} on ")
    assert dead.system_attrs[OWNER_KEY]["pid"] == victim.pid
    assert waited < 30, waited  # not the 60 s grace period
    again.reward(objective(tokens))
    again.close()
