"""The lease module on its own: claims (surplus, collision), release, heartbeats, reaping, crashed retries, the
exhausted marker and a server's drain — one Ledger per simulated worker on one in-memory study."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from sanas.search.chain import CRASHED, FAIL_REASON_KEY, RETRY_OF_KEY, STATUS_KEY
from sanas.search.lease import CLOSING_KEY, HEARTBEAT_KEY, OWNER_KEY, Ledger, owner_identity
from sanas.search.samplers import SearchExhausted, make_sampler


def make_study(n: int = 3, r: int = 4):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler("random", [r] * n, init_tokens=[0] * n, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    return study, sampler


def ledger(study, sampler, steps: int = 3, **kwargs) -> Ledger:
    settings = {"heartbeat_interval": 0.05, "grace_period": 0.3, "poll_interval": 0.01, **kwargs}
    return Ledger(study._storage, study, sampler, steps, **settings)


def states(study) -> list[tuple[str, str | None]]:
    return [(t.state.name, t.system_attrs.get(STATUS_KEY)) for t in study.get_trials(deepcopy=False)]


def test_a_claim_records_tokens_owner_and_parameters_and_release_finishes_it() -> None:
    study, sampler = make_study()
    a = ledger(study, sampler)
    lease = a.claim([1, 2, 3])
    assert lease is not None and a.lease is lease and lease.tokens == [1, 2, 3]
    trial = study.get_trials(deepcopy=False)[0]
    assert trial.state == TrialState.RUNNING and trial.system_attrs[OWNER_KEY] == owner_identity()
    done = a.release(TrialState.COMPLETE, 0.75)
    assert done is lease and a.lease is None and not lease.thread.is_alive()
    trial = study.get_trials(deepcopy=False)[0]
    assert trial.value == 0.75 and trial.params == {"t0": 1, "t1": 2, "t2": 3}


def test_the_same_tokens_claimed_twice_is_a_collision_and_claims_past_the_steps_are_surplus() -> None:
    study, sampler = make_study()
    a, b = ledger(study, sampler, steps=2), ledger(study, sampler, steps=2)
    assert a.claim([1, 1, 1]) is not None
    assert b.claim([1, 1, 1]) is None  # a holds these tokens
    assert b.claim([2, 2, 2]) is not None
    c = ledger(study, sampler, steps=2)
    assert c.claim([3, 3, 3]) is None  # two running trials already fill search_steps = 2
    assert states(study) == [("RUNNING", None), ("FAIL", "collision"), ("RUNNING", None), ("FAIL", "surplus")]
    a.release(TrialState.COMPLETE, 0.5)
    b.release(TrialState.COMPLETE, 0.6)
    assert a.tally(a.read()) == (2, 0) and a.acquire(lambda trials: [0, 0, 0]) is None  # the study is full


def test_a_silent_heartbeat_is_reaped_as_crashed_and_its_tokens_come_back_first() -> None:
    study, sampler = make_study()
    dead, alive = ledger(study, sampler), ledger(study, sampler)
    dead.owner = {**dead.owner, "ns": "another-machine/1"}  # not this machine: only the heartbeat can tell
    lease = dead.claim([2, 2, 2])
    deadline = time.monotonic() + 30  # a beat every 0.05 s; a loaded machine may schedule the thread late
    while study.get_trials(deepcopy=False)[0].system_attrs.get(HEARTBEAT_KEY, 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert study.get_trials(deepcopy=False)[0].system_attrs.get(HEARTBEAT_KEY, 0) >= 1  # it beats
    lease.stop.set()  # the worker hangs: its heartbeat stops
    lease.thread.join()
    assert not alive.fail_stale(study.get_trials(deepcopy=False))  # first sight of this heartbeat value
    time.sleep(0.4)
    assert alive.fail_stale(study.get_trials(deepcopy=False))
    trial = study.get_trials(deepcopy=False)[0]
    assert trial.state == TrialState.FAIL and trial.system_attrs[STATUS_KEY] == CRASHED
    assert "no heartbeat" in trial.user_attrs[FAIL_REASON_KEY]
    retry = alive.acquire(lambda trials: pytest.fail("a crashed candidate comes back before any new one"))
    assert retry is not None and retry.tokens == [2, 2, 2] and retry.retry_of == 0
    assert study.get_trials(deepcopy=False)[-1].system_attrs[RETRY_OF_KEY] == 0
    alive.release(TrialState.FAIL, reason="crashed again", retry=True)  # a second crash is final
    trial = study.get_trials(deepcopy=False)[-1]
    assert trial.system_attrs.get(STATUS_KEY) is None and "not proposed again" in trial.user_attrs[FAIL_REASON_KEY]


def test_a_dead_process_of_this_machine_is_reaped_at_once() -> None:
    study, sampler = make_study()
    dead, alive = ledger(study, sampler, grace_period=3600), ledger(study, sampler, grace_period=3600)
    dead.owner = {**dead.owner, "start": dead.owner["start"] + 1}  # same pid, another start time: gone
    dead.claim([1, 0, 1]).stop.set()
    assert alive.fail_stale(study.get_trials(deepcopy=False))
    assert "is gone" in study.get_trials(deepcopy=False)[0].user_attrs[FAIL_REASON_KEY]


def test_releasing_a_trial_another_worker_already_failed_says_so() -> None:
    study, sampler = make_study()
    a, b = ledger(study, sampler), ledger(study, sampler)
    lease = a.claim([3, 3, 3])
    b.mark_failed(lease.trial_id, "stale: test", crash=True, retry_of=None)
    with pytest.raises(RuntimeError, match="already finished as FAIL by another worker"):
        a.release(TrialState.COMPLETE, 0.9)
    assert a.lease is None


def test_an_exhausted_sampler_is_recorded_once_and_ends_every_worker() -> None:
    study, sampler = make_study()
    a, b = ledger(study, sampler), ledger(study, sampler)

    def nothing(trials):
        raise SearchExhausted("no new feasible candidate")

    assert a.acquire(nothing) is None and a.exhausted
    assert b.acquire(lambda trials: pytest.fail("must not propose")) is None and b.exhausted
    assert states(study) == [("FAIL", "exhausted")]


def test_a_server_drains_until_the_clients_candidate_is_reported() -> None:
    study, sampler = make_study()
    server, client = ledger(study, sampler, role="server"), ledger(study, sampler, role="client")
    lease = client.claim([1, 2, 1])
    assert lease is not None
    waits: list[int] = []
    t0 = time.monotonic()
    finisher = threading.Timer(0.3, lambda: client.release(TrialState.COMPLETE, 0.4))
    finisher.start()
    server.drain(waits.append)
    finisher.join()
    assert time.monotonic() - t0 >= 0.3 and waits and set(waits) == {1}
    assert study._storage.get_study_system_attrs(study._study_id)[CLOSING_KEY] and client.server_closing()
    assert client.acquire(lambda trials: [0, 0, 0], on_closing=lambda: waits.append(-1)) is None and waits[-1] == -1
