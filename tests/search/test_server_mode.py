"""PaddleSlim's server mode (``server_addr``, ``is_server``) end to end: a server serves until its clients have
reported, a client whose server has finished gets ``[]`` (never a traceback), a non-loopback bind says what it
exposes, and the tutorial's own loop runs through a server and two clients, 20 times in a row."""

from __future__ import annotations

import json
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


def _run_tutorial(tmp_path: Path, run: int) -> None:
    port = free_port()
    outs = [tmp_path / f"run{run}-{role}.json" for role in ("server", "client1", "client2")]
    run_dir, joined = tmp_path / f"run{run}", tmp_path / f"joined{run}"
    joined.mkdir()
    check_in = ["--joined", str(joined), "--clients", "2"]
    procs = [subprocess.Popen([sys.executable, TUTORIAL, "--port", str(port), "--server", "--run-dir", str(run_dir),
                               "--out", str(outs[0]), *check_in], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)]
    wait_for_port(port, procs[0])
    procs += [subprocess.Popen([sys.executable, TUTORIAL, "--port", str(port), "--client", "--out", str(out),
                                *check_in], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for out in outs[1:]]
    errs = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"run {run}: {p.args[2:]} did not finish")
        errs.append(err)
        assert p.returncode == 0, f"run {run}: {p.args[2:]} exited {p.returncode}:\n{err[-3000:]}"
    assert not any("Traceback" in e for e in errs), errs
    trials = optuna.load_study(study_name="sanas", storage=open_storage(run_dir=run_dir, server=True)).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    reports = [json.loads(o.read_text()) for o in outs]
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
    rewarded = {e["number"]: e for r in reports for e in r["evaluated"]}
    assert set(rewarded) == {t.number for t in complete}  # every result reached the study, none twice
    chain = replay_chain(evaluations(trials))  # what reward() returned is the chain replayed from the study
    assert all(rewarded[s.number]["accepted"] == s.accepted for s in chain.steps)


@pytest.mark.slow
def test_the_tutorial_loop_through_a_server_and_two_clients_20_runs_in_a_row(tmp_path) -> None:
    for run in range(20):
        _run_tutorial(tmp_path, run)
