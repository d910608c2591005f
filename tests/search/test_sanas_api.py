"""The SANAS API in one process: PaddleSlim's loop, restarts, stale trials, and every kind of bad input."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from _support import TinySpace, free_port
from _worker import objective
from optuna.trial import TrialState
from torch import nn

from sanas import get_space
from sanas.search import SANAS, OptunaTokenSampler, StorageUnavailable, evaluations, replay_chain
from sanas.search.chain import FAIL_REASON_KEY, SKIPPED, STATUS_KEY, STOPPED
from sanas.search.samplers import DEFAULT_SAMPLER, SAMPLERS
from sanas.search.storage import open_storage

BUDGET = 3_770_000


def small(**kwargs) -> SANAS:
    return SANAS(TinySpace(n=6, r=8), **{"search_steps": 20, "save_checkpoint": None, **kwargs})


def loop(sa: SANAS, stop_after: int | None = None) -> list[tuple[int, list[int], float, bool]]:
    out = []
    while sa.next_tokens() is not None:
        number, tokens = sa.trial_number, sa.tokens
        out.append((number, tokens, objective(tokens), sa.reward(objective(tokens))))
        if stop_after is not None and len(out) == stop_after:
            break
    return out


def snapshot(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.values, t.params, t.user_attrs) for t in study.get_trials()]


def test_paddleslim_loop_with_next_archs(tmp_path) -> None:
    sa = SANAS([("DartsSpace", {"layers": 5, "init_channels": 4})], search_steps=3, save_checkpoint=tmp_path)
    assert sa.current_info()["best_tokens"] is None and sa.current_info()["current_tokens"] == sa.space.init_tokens()
    rewards = []
    while archs := sa.next_archs():
        assert len(archs) == 1 and isinstance(archs[0], nn.Module)
        rewards.append(sa.reward(objective(sa.tokens)))
    assert len(rewards) == 3 and rewards[0] is True and sa.tokens is None
    assert isinstance(sa.tokens2arch(sa.current_info()["best_tokens"]), nn.Module)
    assert (tmp_path / "sanas.journal").exists()


def test_reward_misuse_is_refused_and_leaves_storage_unchanged() -> None:
    sa = small()
    with pytest.raises(RuntimeError, match="before next_archs"):
        sa.reward(0.5)
    tokens = sa.next_tokens()
    before = snapshot(sa.study)
    for bad in [math.nan, math.inf, -math.inf, "0.9", None, True, [0.9]]:
        with pytest.raises(ValueError, match="reward must be"):
            sa.reward(bad)
        assert snapshot(sa.study) == before and sa.tokens == tokens
    assert sa.study.trials[0].state == TrialState.RUNNING
    assert sa.reward(0.5) is True
    after = snapshot(sa.study)
    with pytest.raises(RuntimeError, match="called twice"):
        sa.reward(0.6)
    with pytest.raises(RuntimeError, match="called twice"):
        sa.fail("oom")
    assert snapshot(sa.study) == after


def test_failed_candidates_are_recorded_and_do_not_move_the_chain_or_count() -> None:
    sa = small(search_steps=4)
    sa.next_tokens()
    sa.reward(0.5)
    sa.next_tokens()
    with pytest.raises(ValueError, match="non-empty reason"):
        sa.fail("  ")
    sa.fail("CUDA out of memory")
    history = loop(sa)
    trials = sa.study.get_trials()
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs[FAIL_REASON_KEY] == "CUDA out of memory"
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4 and len(history) == 3
    assert 1 not in [s.number for s in replay_chain(evaluations(trials)).steps]
    assert tuple(trials[1].user_attrs["tokens"]) not in {tuple(t) for _, t, _, _ in history}  # never re-proposed


def test_stop_after_10_of_20_and_restart_continues_the_same_chain(tmp_path, study_name) -> None:
    whole = loop(SANAS("DartsSpace", search_steps=20, max_params=BUDGET, seed=3, save_checkpoint=tmp_path / "a",
                       study_name=study_name))
    first = SANAS("DartsSpace", search_steps=20, max_params=BUDGET, seed=3, save_checkpoint=tmp_path / "b",
                  study_name=study_name)
    part1 = loop(first, stop_after=10)
    first.close()
    del first
    again = SANAS("DartsSpace", search_steps=20, max_params=BUDGET, seed=3, load_checkpoint=tmp_path / "b",
                  study_name=study_name)
    assert again.current_info()["finished"] == 10
    part2 = loop(again)
    assert part2[0][0] == 10  # step 11 is trial number 10
    assert part1 + part2 == whole


def test_resuming_with_another_search_is_refused_and_changes_nothing(tmp_path, study_name) -> None:
    base = {"save_checkpoint": tmp_path, "study_name": study_name, "search_steps": 5}
    sa = SANAS("DartsSpace", max_params=BUDGET, **base)
    loop(sa, stop_after=2)
    before, attrs = snapshot(sa.study), dict(sa.study.user_attrs)
    sa.close()
    for other in [dict(configs="DartsSpace", max_params=BUDGET - 1),
                  dict(configs=[("DartsSpace", {"layers": 8})], max_params=BUDGET),
                  dict(configs="DartsSpace", max_params=BUDGET, reduce_rate=0.9),
                  dict(configs="DartsSpace", max_params=BUDGET, sampler="random"),
                  dict(configs="DartsSpace", max_params=BUDGET, seed=1)]:
        with pytest.raises(ValueError, match="created with a different search"):
            SANAS(**other, **base)
    study = optuna.load_study(study_name=study_name, storage=SANAS("DartsSpace", max_params=BUDGET,
                                                                     **base).storage)
    assert snapshot(study) == before and study.user_attrs == attrs


def test_load_checkpoint_must_hold_the_study(tmp_path, study_name) -> None:
    with pytest.raises(FileNotFoundError, match="holds no sanas store"):
        small(load_checkpoint=tmp_path / "nothing")
    loop(small(save_checkpoint=tmp_path, study_name=study_name), stop_after=1)
    with pytest.raises(KeyError, match="no study 'other'"):
        small(load_checkpoint=tmp_path, study_name="other")


@pytest.mark.parametrize("url", ["not a url", "runs/sanas.db", "postgresql+psycopg2://sanas:x@127.0.0.1:port/db",
                                 "nosuchdb://host/db"])
def test_malformed_storage_urls_are_refused(url) -> None:
    with pytest.raises(ValueError, match="storage"):
        small(storage=url)


def test_unreachable_database_fails_in_bounded_time() -> None:
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match=r"cannot reach storage .*sanas:\*\*\*@"):
        small(storage=f"postgresql+psycopg2://sanas:secret@127.0.0.1:{free_port()}/x", connect_timeout=2)
    assert time.monotonic() - start < 15


def test_unreachable_server_fails_in_bounded_time() -> None:
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match="no sanas server answered"):
        small(server_addr=("127.0.0.1", free_port()), is_server=False, connect_timeout=1.5)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("addr", [("127.0.0.1",), "127.0.0.1:80", ("127.0.0.1", 0), ("127.0.0.1", "80")])
def test_bad_server_addr_is_refused(addr) -> None:
    with pytest.raises(ValueError, match="server_addr"):
        small(server_addr=addr, is_server=False)


def test_server_and_client_in_one_process_and_a_taken_port(tmp_path, study_name) -> None:
    port = free_port()
    server = small(server_addr=("", port), save_checkpoint=tmp_path, study_name=study_name, search_steps=4)
    client = small(server_addr=("127.0.0.1", port), is_server=False, study_name=study_name, search_steps=4)
    assert (tmp_path / "sanas.db").exists()
    client.next_tokens()
    client.reward(0.5)
    assert len(loop(server)) == 3 and client.next_tokens() is None
    with pytest.raises(ValueError, match=f"cannot serve the study on 127.0.0.1:{port}: Address already in use"):
        small(server_addr=("127.0.0.1", port), save_checkpoint=tmp_path / "2", study_name=study_name)
    assert not (tmp_path / "2").exists()  # refused before the study is made
    server.close()


def test_a_run_directory_keeps_its_store_kind(tmp_path, study_name) -> None:
    loop(small(save_checkpoint=tmp_path / "journal", study_name=study_name), stop_after=1)
    with pytest.raises(ValueError, match="holds a journal store"):
        small(save_checkpoint=tmp_path / "journal", study_name=study_name, server_addr=("", free_port()))
    server = small(save_checkpoint=tmp_path / "db", study_name=study_name, server_addr=("", free_port()))
    loop(server, stop_after=2)
    server.close()
    local = small(save_checkpoint=tmp_path / "db", study_name=study_name)  # no server: the same SQLite study
    assert local.current_info()["finished"] == 2 and not (tmp_path / "db" / "sanas.journal").exists()


def test_a_dead_workers_trial_is_failed_after_the_grace_period_and_replaced(tmp_path, study_name) -> None:
    common = {"save_checkpoint": tmp_path, "study_name": study_name, "search_steps": 3, "heartbeat_interval": 0.2,
              "grace_period": 1.0, "poll_interval": 0.05}
    dead = small(**common)
    dead.next_tokens()
    dead.ledger.lease.stop.set()  # the heartbeat stops, as when the process is killed
    alive = small(**common)
    start = time.monotonic()
    history = loop(alive)
    assert time.monotonic() - start >= 1.0
    trials = alive.study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs[FAIL_REASON_KEY].startswith("stale")
    assert len(history) == 3 and sum(t.state == TrialState.COMPLETE for t in trials) == 3
    with pytest.raises(RuntimeError, match="already finished as FAIL"):
        dead.reward(0.9)


def test_postgres_single_process(postgres_url, study_name) -> None:
    sa = SANAS("DartsSpace", storage=postgres_url, study_name=study_name, search_steps=8, max_params=BUDGET)
    history = loop(sa)
    again = SANAS("DartsSpace", storage=postgres_url, study_name=study_name, search_steps=8, max_params=BUDGET)
    assert len(history) == 8 and again.next_tokens() is None
    assert again.current_info() == sa.current_info()


def test_next_archs_while_pending_skips_the_candidate_as_the_tutorials_continue_does(capsys) -> None:
    sa = small(search_steps=6, seed=2)
    skipped = []
    for step in range(40):  # the tutorial's loop: `continue` past a candidate, without reward()
        tokens = sa.next_tokens()
        if tokens is None:
            break
        if step % 3 == 1:
            skipped.append((sa.trial_number, tokens))
            continue
        sa.reward(objective(tokens))
    err = capsys.readouterr().err
    assert err.count("recorded as skipped") == 1 and f"trial {skipped[0][0]} " in err
    trials = sa.study.get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6  # skips are not evaluations
    by_number = {t.number: t for t in trials}
    for number, tokens in skipped:
        t = by_number[number]
        assert t.state == TrialState.FAIL and t.system_attrs[STATUS_KEY] == SKIPPED and t.value is None
        assert t.user_attrs[FAIL_REASON_KEY].startswith("skipped") and t.user_attrs["tokens"] == tokens
    proposed = [tuple(t.user_attrs["tokens"]) for t in trials]
    assert len(proposed) == len(set(proposed))  # a skipped candidate is never proposed again
    # the chain is the chain of the evaluated candidates alone
    assert sa.current_info()["finished"] == 6 == replay_chain(evaluations(trials)).k


@pytest.mark.parametrize(("ending", "status"), [("", SKIPPED), ("sa.close()", None),
                                              ("raise SystemExit(0)", SKIPPED), ("1/0", None)])
def test_a_script_that_ends_on_a_pending_candidate(tmp_path, ending, status) -> None:
    """The tutorial's loop can end on ``continue``: at a clean interpreter exit, without close(), that candidate
    was skipped; after an explicit close() or a crash it is left to the crash rules (failed when stale, retried)."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from _support import TinySpace\nfrom sanas import SANAS\n"
              f"sa = SANAS(TinySpace(), save_checkpoint={str(tmp_path)!r}, search_steps=5, study_name='s')\n"
              f"sa.next_tokens(); sa.reward(0.5); sa.next_tokens()\n{ending}\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert ("ZeroDivisionError" in done.stderr) == (ending == "1/0"), done.stderr
    trials = optuna.load_study(study_name="s", storage=open_storage(run_dir=tmp_path)).get_trials()
    assert len(trials) == 2 and trials[0].state == TrialState.COMPLETE
    assert trials[1].system_attrs.get(STATUS_KEY) == status
    assert trials[1].state == (TrialState.FAIL if status else TrialState.RUNNING)


def test_budgets_in_millions_and_paddleslims_max_params() -> None:
    space = get_space("DartsSpace")
    a = SANAS(space, search_steps=1, save_checkpoint=None, max_params="3.77M")
    b = SANAS(space, search_steps=1, save_checkpoint=None, max_params=3_770_000)
    c = SANAS(space, search_steps=1, save_checkpoint=None, max_params="1.0x")
    assert a.settings() == b.settings() and a.max_params == 3_770_000
    assert c.max_params == space.count_params(space.init_tokens())
    with pytest.raises(ValueError, match=r"max_params is 3.77, which is not a whole number of parameters; for 3.77 "
                                         r"million \(PaddleSlim's MAX_PARAMS = 3.77\) write '3.77M' or 3770000"):
        SANAS(space, save_checkpoint=None, max_params=3.77)
    with pytest.raises(ValueError, match=r"max_params is 4 \(4 parameters\), below the smallest network of "
                                         r"DartsSpace \(.* parameters, every cell at width 4\).*'4M'"):
        SANAS(space, save_checkpoint=None, max_params=4)


def test_rerunning_a_finished_search_says_so_once_with_its_best(tmp_path, capsys) -> None:
    first = small(save_checkpoint=tmp_path, search_steps=3)
    loop(first)
    best = first.current_info()["best_tokens"]
    assert "finished" not in capsys.readouterr().err  # the run that did the work is not told
    again = small(save_checkpoint=tmp_path, search_steps=3)
    assert again.next_archs() == [] and again.next_tokens() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"the search in {tmp_path}/ is already finished (3 of 3 evaluations); best tokens {best}" in err
    assert "To start another, use another save_checkpoint or study_name" in err


def test_a_stopped_evaluation_counts_toward_search_steps_and_is_rejected() -> None:
    sa = small(search_steps=3)
    sa.next_tokens()
    assert sa.acceptance_threshold() is None  # the first reward is always accepted
    sa.reward(0.5)
    sa.next_tokens()
    assert sa.acceptance_threshold() == 0.5  # no difference known yet: T = 0, only >= current passes
    assert sa.reward(0.99, stopped=True) is False
    sa.next_tokens()
    sa.reward(0.6)
    assert sa.next_tokens() is None  # 3 finished evaluations, the stopped one included
    stopped = sa.study.trials[1]
    assert stopped.state == TrialState.COMPLETE and stopped.system_attrs[STATUS_KEY] == STOPPED
    info = sa.current_info()
    assert info["finished"] == 3 and info["best_reward"] == 0.6


@pytest.mark.parametrize("t0", ["auto", 1.0])
def test_acceptance_threshold_of_the_pending_candidate_is_where_reward_flips(t0) -> None:
    def search() -> SANAS:
        sa = small(search_steps=12, seed=5, init_temperature=t0)
        for _ in range(8):
            sa.next_tokens()
            sa.reward(objective(sa.tokens))
        sa.next_tokens()
        return sa

    probe = search()
    threshold = probe.acceptance_threshold()
    assert threshold is not None and threshold < probe.current_info()["current_reward"]
    assert probe.reward(threshold) is True
    assert search().reward(threshold + 1e-9) is True
    assert search().reward(math.nextafter(threshold, -math.inf)) is False
    assert search().reward(threshold - 1e-6) is False


def test_samplers_by_name_are_one_registry(tmp_path) -> None:
    from sanas.cli import build_parser
    from sanas.runs.config import SEARCH_DEFAULTS

    tpe = small(sampler="tpe", search_steps=6)
    assert isinstance(tpe.sampler, OptunaTokenSampler) and tpe.settings()["wrapped"] == "TPESampler"
    assert len(loop(tpe)) == 6
    assert small(sampler="evolution").sampler.acceptance_threshold([], 0.5) is None
    search = next(a for a in build_parser()._subparsers._group_actions[0].choices["search"]._actions
                  if a.dest == "sampler")
    assert list(search.choices) == list(SAMPLERS) and SEARCH_DEFAULTS["sampler"] == DEFAULT_SAMPLER
    with pytest.raises(ValueError, match="unknown sampler 'annealing'; expected one of sa, random, evolution, tpe"):
        small(sampler="annealing")
