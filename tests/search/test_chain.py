"""The SA chain replay: Metropolis decisions, temperature schedule, acceptance draws."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from sanas.search import Evaluation, acceptance_draw, evaluations, replay_chain
from sanas.search.chain import STATUS_KEY, TOKENS_KEY, U_KEY, ChainReplayer, temperature


def test_first_reward_always_accepted_and_best_on_strict_improvement() -> None:
    chain = replay_chain([Evaluation(0, (1,), 0.2, 0.999), Evaluation(1, (2,), 0.2, 0.999),
                          Evaluation(2, (3,), 0.5, 0.999)])
    assert [s.accepted for s in chain.steps] == [True, True, True]  # equal reward: exp(0) = 1 >= u
    assert [s.best for s in chain.steps] == [True, False, True]
    assert chain.best_tokens == (3,) and chain.best_number == 2 and chain.current_tokens == (3,)


def test_each_decision_follows_the_metropolis_formula() -> None:
    evals = [Evaluation(i, (i,), 0.5 + 0.3 * math.sin(i * 1.7), acceptance_draw(3, (i,))) for i in range(300)]
    chain = replay_chain(evals, init_temperature=0.2, reduce_rate=0.99)
    current = None
    for k, (ev, step) in enumerate(zip(evals, chain.steps, strict=True)):
        t = 0.2 * 0.99**k
        assert step.temperature == pytest.approx(t)
        expect = current is None or ev.reward > current or ev.u <= math.exp((ev.reward - current) / t)
        assert step.accepted == expect, k
        if expect:
            current = ev.reward
    assert 20 < sum(s.accepted for s in chain.steps) < 280  # both branches exercised


def test_acceptance_counts_match_exp_delta_over_t() -> None:
    # Alternate a reset (reward 1.0, always accepted) with a 0.1 drop, at a constant temperature: every drop is
    # judged against current = 1.0, so it is accepted with probability exp(-0.1 / T) = exp(-1).
    n = 4000
    evals = []
    for i in range(n):
        tokens = (i, 1) if i % 2 == 0 else (i, 0)
        evals.append(Evaluation(i, tokens, 1.0 if i % 2 == 0 else 0.9, acceptance_draw(0, tokens)))
    chain = replay_chain(evals, init_temperature=0.1, reduce_rate=1.0)
    drops = [s for s in chain.steps if s.reward == 0.9]
    accepted = sum(s.accepted for s in drops)
    p = math.exp(-1.0)
    sigma = math.sqrt(len(drops) * p * (1 - p))
    assert abs(accepted - len(drops) * p) < 4 * sigma, (accepted, len(drops) * p)
    # and the same count from the stored draws directly
    assert accepted == sum(s.u <= p + 1e-12 for s in drops)


def test_temperature_is_counted_in_evaluations_and_zero_temperature_hill_climbs() -> None:
    assert temperature(0) == 1.0
    assert temperature(30) == pytest.approx(0.85**30)
    chain = replay_chain([Evaluation(0, (0,), 0.5, 0.0), Evaluation(1, (1,), 0.49, 0.0)], init_temperature=0.0)
    assert [s.accepted for s in chain.steps] == [True, False]  # u = 0 would accept any finite drop at T > 0
    late = replay_chain([Evaluation(i, (i,), 0.5 - i, 0.0) for i in range(6000)], 1.0, 0.85)  # T underflows to 0
    assert late.steps[-1].temperature == 0.0 and not late.steps[-1].accepted


def test_acceptance_draws_are_deterministic_and_uniform() -> None:
    draws = [acceptance_draw(7, (i, j)) for i in range(100) for j in range(100)]
    assert draws == [acceptance_draw(7, [i, j]) for i in range(100) for j in range(100)]
    assert all(0 <= u < 1 for u in draws)
    deciles = [sum(d < q / 10 for d in draws) for q in range(1, 10)]
    assert all(abs(c - 1000 * q) < 200 for q, c in enumerate(deciles, start=1)), deciles


def _trial(number: int, tokens: list[int], value: float | None, state: TrialState, done: datetime,
           status: str = "candidate") -> optuna.trial.FrozenTrial:
    trial = create_trial(state=state, value=value, params={"t0": tokens[0]},
                         distributions={"t0": IntDistribution(0, 99)}, user_attrs={TOKENS_KEY: tokens},
                         system_attrs={U_KEY: 0.5, STATUS_KEY: status})
    trial.number = number
    trial.datetime_complete = done
    return trial


def test_evaluations_follow_completion_order_and_skip_failures() -> None:
    t0 = datetime(2026, 1, 1)
    trials = [_trial(0, [0], 0.1, TrialState.COMPLETE, t0 + timedelta(seconds=5)),
              _trial(1, [1], 0.2, TrialState.COMPLETE, t0 + timedelta(seconds=1)),
              _trial(2, [2], None, TrialState.FAIL, t0 + timedelta(seconds=2)),
              _trial(3, [3], 0.3, TrialState.COMPLETE, t0 + timedelta(seconds=1))]  # same time: by number
    assert [e.number for e in evaluations(trials)] == [1, 3, 0]


@pytest.mark.parametrize("t0", [1.0, "auto"])
def test_incremental_replayer_equals_full_replay_even_when_a_completion_lands_in_the_past(t0) -> None:
    start = datetime(2026, 1, 1)
    trials = [_trial(i, [i], 0.5 + ((i * 37) % 11) / 50, TrialState.COMPLETE, start + timedelta(seconds=10 * i),
                     status="stopped" if i % 7 == 3 else "candidate") for i in range(30)]
    replayer = ChainReplayer(t0, 0.85)
    for n in range(1, 31):
        state = replayer.replay(trials[:n])
        full = replay_chain(evaluations(trials[:n]), t0, 0.85)
        assert state.steps == full.steps and state.differences == full.differences
    late = _trial(30, [30], 0.95, TrialState.COMPLETE, start + timedelta(seconds=15))  # sorts between 1 and 2
    assert replayer.replay([*trials, late]).steps == replay_chain(evaluations([*trials, late]), t0, 0.85).steps
    assert [s.number for s in replayer.replay([*trials, late]).steps][:3] == [0, 1, 30]
