"""PaddleSlim's server mode (``server_addr``, ``is_server``) end to end: a server serves until its clients have
reported, a client whose server has finished gets ``[]`` (never a traceback), a non-loopback bind says what it
exposes, and the tutorial's own loop runs through a server and two clients 10 times in a row, and without
check-ins (nobody waits for anybody) 50 times each with one and two clients under load, never hanging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from _support import TinySpace, free_port, wait_for_port
from _tutorial import CONFIG, MAX_PARAMS, SEARCH_STEPS
from optuna.trial import TrialState

from sanas import get_space
from sanas.search import SANAS, StorageUnavailable, evaluations, replay_chain
from sanas.search.chain import SKIPPED, STATUS_KEY, VOID_STATUSES, trial_tokens
from sanas.search.storage import is_loopback, open_storage

TUTORIAL = str(Path(__file__).with_name("_tutorial.py"))


def server_and_client(tmp_path: Path, study_name: str, steps: int = 4, **kw) -> tuple[SANAS, SANAS]:
    port = free_port()
    common = {"study_name": study_name, "search_steps": steps, "poll_interval": 0.1, **kw}
    server = SANAS(TinySpace(n=6, r=8), server_addr=("", port), save_checkpoint=tmp_path, **common)
    client = SANAS(TinySpace(n=6, r=8), server_addr=("127.0.0.1", port), is_server=False, save_checkpoint=None,
                   connect_timeout=5, **common)
    return server, client


def test_a_client_whose_server_finished_gets_an_empty_list_not_a_traceback(tmp_path, study_name, capsys) -> None:
    server, client = server_and_client(tmp_path, study_name)
    while server.next_tokens() is not None:
        server.reward(0.5 + 0.01 * sum(server.tokens))
    server.close()
    start = time.monotonic()
    assert client.next_tokens() is None and client.next_archs() == []
    assert time.monotonic() - start < 10  # a short wait for a blip, not connect_timeout per call
    err = capsys.readouterr().err
    assert err.count("has finished (or cannot be reached any more)") == 1, err
    assert client.current_info()["finished"] == 0  # what it last read (nothing): no exception either


def test_a_server_closing_waits_for_a_clients_candidate_and_its_clients_then_stop(tmp_path, study_name,
                                                                                   capsys) -> None:
    server, client = server_and_client(tmp_path, study_name, steps=10)
    server.next_tokens()
    server.reward(0.5)
    tokens = client.next_tokens()  # the client holds a candidate when the server's own loop ends
    closing = threading.Thread(target=server.close)
    closing.start()
    time.sleep(1.5)
    assert closing.is_alive(), "the server stopped serving while a client held a candidate"
    assert client.reward(0.6) in (True, False)  # recorded: the server still answers
    closing.join(timeout=30)
    assert not closing.is_alive()
    assert client.next_tokens() is None  # no new candidate from a closing (or closed) server
    trials = optuna.load_study(study_name=study_name, storage=open_storage(run_dir=tmp_path, server=True)).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [trial_tokens(t) for t in complete][-1] == tuple(tokens) and len(complete) == 2
    assert "serving until the other workers report their 1 running candidate(s)" in capsys.readouterr().err


def test_a_client_joining_as_its_server_stops_says_so_in_one_line(tmp_path, study_name, monkeypatch) -> None:
    import sanas.search.api as api

    server = SANAS(TinySpace(n=6, r=8), server_addr=("", free_port()), save_checkpoint=tmp_path,
                   study_name=study_name, search_steps=2, poll_interval=0.1)
    real = api.open_study

    def server_stops_first(*args, **kwargs):  # the client connected; the server stops before the study is read
        server.close()
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "open_study", server_stops_first)
    with pytest.raises(StorageUnavailable, match=r"stopped answering while this client joined: its search is over"):
        SANAS(TinySpace(n=6, r=8), server_addr=("127.0.0.1", server._server.port), is_server=False,
              save_checkpoint=None, study_name=study_name, search_steps=2, connect_timeout=5)


def test_a_client_cannot_record_a_result_once_its_server_is_gone(tmp_path, study_name) -> None:
    server, client = server_and_client(tmp_path, study_name, steps=10)
    client.next_tokens()
    server._server.stop(grace=0)  # the server process died (kill -9): nothing waits for the client
    server._server = None
    with pytest.raises(StorageUnavailable, match=r"is gone: trial 0 .* could not be recorded"):
        client.reward(0.5)


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_a_non_loopback_bind_says_once_what_it_exposes(tmp_path, study_name, capsys, host, warned) -> None:
    server = SANAS(TinySpace(), server_addr=(host, free_port()), save_checkpoint=tmp_path, study_name=study_name,
                   search_steps=1, poll_interval=0.05)
    server.close()
    err = capsys.readouterr().err
    assert err.count("unauthenticated and unencrypted") == (1 if warned else 0), err
    if warned:
        assert "the whole study" in err


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("no-such-host.invalid")


def _wait_all(procs: list[subprocess.Popen], run: str, limit: float) -> list[str]:
    """Each process's stderr, once all have exited within ``limit`` seconds in all; on a hang, every live process
    dumps its threads' stacks (faulthandler, on SIGABRT) and the run fails with them."""
    deadline = time.monotonic() + limit
    errs = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stacks = []
            for q in procs:
                if q.poll() is None:
                    q.send_signal(signal.SIGABRT)
                    try:
                        stacks.append(f"{q.args[2:]}:\n{q.communicate(timeout=30)[1][-4000:]}")
                    except subprocess.TimeoutExpired:
                        q.kill()
            pytest.fail(f"run {run}: {p.args[2:]} did not finish within {limit:g} s (a hang); stacks:\n"
                        + "\n".join(stacks))
        errs.append(err)
    return errs


def _check_study(run_dir: Path, reports: list[dict], run: str) -> None:
    """The study a tutorial run left behind is the one its processes' loops reported, and consistent."""
    trials = optuna.load_study(study_name="sanas", storage=open_storage(run_dir=run_dir, server=True)).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # The tutorial's loop counts a skipped (over-budget) network as a step, as PaddleSlim's does: the server's
    # process may use up its SEARCH_STEPS iterations (and end, after its clients' running candidates) before the
    # study holds SEARCH_STEPS evaluations. Otherwise the search ended because the study's budget was reached.
    server_steps = len(reports[0]["evaluated"]) + len(reports[0]["skipped"])
    assert len(complete) <= SEARCH_STEPS, f"run {run}: {len(complete)} evaluations"
    if reports[0]["ended"] == "search over":
        assert len(complete) == SEARCH_STEPS, f"run {run}: {len(complete)} evaluations, {reports}"
    else:
        assert server_steps == SEARCH_STEPS, reports
    proposed = [trial_tokens(t) for t in trials if t.system_attrs.get(STATUS_KEY) not in VOID_STATUSES]
    assert len(proposed) == len(set(proposed)), f"run {run}: a candidate was proposed twice"
    space = get_space(CONFIG)
    assert all(space.count_params(trial_tokens(t)) <= MAX_PARAMS * 1e6 for t in complete)
    skipped = [t for t in trials if t.system_attrs.get(STATUS_KEY) == SKIPPED]
    assert all(t.state == TrialState.FAIL and space.count_params(trial_tokens(t)) > MAX_PARAMS * 1e6
               for t in skipped)
    assert sorted(n for r in reports for n in r["skipped"]) == sorted(t.number for t in skipped)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], f"run {run}: a trial left running"
    rewarded = {e["number"]: e for r in reports for e in r["evaluated"]}
    assert set(rewarded) == {t.number for t in complete}  # every result reached the study, none twice
    chain = replay_chain(evaluations(trials))  # what reward() returned is the chain replayed from the study
    assert all(rewarded[s.number]["accepted"] == s.accepted for s in chain.steps)


def _tutorial(port: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, TUTORIAL, "--port", str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _run_tutorial(tmp_path: Path, run: int) -> None:
    port = free_port()
    outs = [tmp_path / f"run{run}-{role}.json" for role in ("server", "client1", "client2")]
    run_dir, joined = tmp_path / f"run{run}", tmp_path / f"joined{run}"
    joined.mkdir()
    check_in = ["--joined", str(joined), "--clients", "2"]
    procs = [_tutorial(port, "--server", "--run-dir", str(run_dir), "--out", str(outs[0]), *check_in)]
    wait_for_port(port, procs[0])
    procs += [_tutorial(port, "--client", "--out", str(out), *check_in) for out in outs[1:]]
    errs = _wait_all(procs, str(run), 240)
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 0, f"run {run}: {p.args[2:]} exited {p.returncode}:\n{err[-3000:]}"
    assert not any("Traceback" in e for e in errs), errs
    _check_study(run_dir, [json.loads(o.read_text()) for o in outs], str(run))


@pytest.mark.slow
def test_the_tutorial_loop_through_a_server_and_two_clients_10_runs_in_a_row(tmp_path) -> None:
    for run in range(10):
        _run_tutorial(tmp_path, run)


#: Runs per client count of the hang test, and how many run at once (the CPU load: each is three processes).
HANG_RUNS, AT_ONCE = 50, 4
#: What a client says when it came after its server had gone, or just as it stopped.
LATE = ("no sanas server answered", "stopped answering while this client joined")


def _run_unjoined(tmp_path: Path, clients: int, run: int) -> None:
    """The tutorial as a user runs it: a server, then its clients as soon as it listens, nobody waiting for
    anybody — so the server may finish before a client connects. Every process must end within the bound."""
    port, name = free_port(), f"c{clients}-run{run}"
    outs = [tmp_path / f"{name}-{k}.json" for k in range(clients + 1)]
    run_dir = tmp_path / name
    procs = [_tutorial(port, "--server", "--run-dir", str(run_dir), "--out", str(outs[0]))]
    wait_for_port(port, procs[0])
    procs += [_tutorial(port, "--client", "--out", str(out), "--connect-timeout", "10") for out in outs[1:]]
    errs = _wait_all(procs, name, 150)
    assert procs[0].returncode == 0, f"run {name}: the server exited {procs[0].returncode}:\n{errs[0][-3000:]}"
    reports = [json.loads(outs[0].read_text())]
    for p, out, err in zip(procs[1:], outs[1:], errs[1:], strict=True):
        if p.returncode != 0:  # only a client that came after its server had gone may fail, and says why
            assert any(line in err for line in LATE), f"run {name}: {p.args[2:]} exited {p.returncode}:\n{err[-3000:]}"
            continue
        assert "Traceback" not in err, err
        reports.append(json.loads(out.read_text()))
        assert not ("it is closing" in err and "already finished" in err), err  # closing is not "finished"
    _check_study(run_dir, reports, name)


@pytest.mark.slow
@pytest.mark.parametrize("clients", [1, 2])
def test_the_tutorial_loop_without_check_ins_never_hangs_50_runs_under_load(tmp_path, clients) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(AT_ONCE) as pool:
        done = list(pool.map(lambda run: _run_unjoined(tmp_path, clients, run), range(HANG_RUNS)))
    assert len(done) == HANG_RUNS  # every run returned (a failed run raised)
