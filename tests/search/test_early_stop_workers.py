"""What the early stop and ``reward()``'s verdict promise with several workers (README, "Stop early what cannot be
accepted"): the threshold is the chain's as read when the candidate started, so other workers' results can move
it; a stopped candidate is rejected in every replay; a verdict can be reversed by a result ordered before it.
With one worker the threshold is exactly where the verdict flips: tests/search/test_sanas_api.py."""

from __future__ import annotations

from _support import TinySpace
from _worker import objective

from sanas.search import SANAS, evaluations, replay_chain
from sanas.search.chain import Evaluation


def two_workers(tmp_path, study_name: str) -> tuple[SANAS, SANAS]:
    common = {"search_steps": 40, "save_checkpoint": tmp_path, "study_name": study_name, "seed": 3}
    return SANAS(TinySpace(n=6, r=8), **common), SANAS(TinySpace(n=6, r=8), **common)


def warm_up(sa: SANAS, n: int = 5) -> None:
    """A few evaluations, so that reward differences are known and the temperature is above 0."""
    for _ in range(n):
        sa.next_tokens()
        sa.reward(objective(sa.tokens))


def test_another_workers_result_moves_the_threshold_a_candidate_started_with(tmp_path, study_name) -> None:
    a, b = two_workers(tmp_path, study_name)
    warm_up(a)
    a.next_tokens()
    started_with = a.acceptance_threshold()
    b.next_tokens()
    assert b.reward(a.current_info()["current_reward"] + 0.5) is True  # a better result lands meanwhile
    now = a.acceptance_threshold()
    assert started_with is not None and now is not None and now > started_with
    # A reward that would have passed the threshold known at the start is rejected by the chain it finishes in.
    assert a.reward((started_with + now) / 2) is False


def test_a_stopped_candidate_stays_rejected_whatever_the_other_workers_finish(tmp_path, study_name) -> None:
    a, b = two_workers(tmp_path, study_name)
    warm_up(a)
    a.next_tokens()
    stopped_number = a.trial_number
    b.next_tokens()
    a.reward(5.0, stopped=True)  # a partial score above any reward: still rejected, never best
    b.reward(objective(b.tokens))
    warm_up(b, 3)
    for reader in (a, b):
        chain = replay_chain(evaluations(reader.study.get_trials()))
        step = next(s for s in chain.steps if s.number == stopped_number)
        assert step.accepted is False and chain.best_reward < 5.0
        assert reader.current_info()["best_reward"] < 5.0


def test_a_result_ordered_before_a_verdict_can_reverse_it() -> None:
    # b was judged on the chain [start]: 0.6 > 0.5, accepted. c finished before b (an earlier completion time) but
    # was stored after b's verdict was returned: the replay puts c first, and b (0.6 < 0.7, T = 0) is rejected.
    start, b, c = Evaluation(0, (1,), 0.5, 0.5), Evaluation(1, (2,), 0.6, 0.5), Evaluation(2, (3,), 0.7, 0.5)
    as_returned = replay_chain([start, b])
    replayed = replay_chain([start, c, b])
    assert as_returned.steps[-1].accepted is True
    assert next(s for s in replayed.steps if s.number == 1).accepted is False
