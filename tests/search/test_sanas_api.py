"""The SANAS API in one process: PaddleSlim's loop, restarts, stale trials, and every kind of bad input."""

from __future__ import annotations

import math
import time

import optuna
import pytest
from _support import TinySpace, free_port
from _worker import objective
from optuna.trial import TrialState
from torch import nn

from sanas.search import SANAS, StorageUnavailable, evaluations, replay_chain
from sanas.search.chain import FAIL_REASON_KEY

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
    with pytest.raises(OSError, match=f"cannot serve the study on 127.0.0.1:{port}"):
        small(server_addr=("127.0.0.1", port), save_checkpoint=tmp_path / "2", study_name=study_name)
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
    dead._pending.stop.set()  # the heartbeat stops, as when the process is killed
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
