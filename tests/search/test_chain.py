"""The SA chain replay: Metropolis decisions, the temperature (auto and fixed), stopped evaluations, acceptance
thresholds and draws."""

from __future__ import annotations

import copy
import math
import statistics
from datetime import datetime, timedelta

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from sanas.search import Evaluation, SimulatedAnnealingSampler, acceptance_draw, evaluations, replay_chain
from sanas.search.chain import (
    AUTO,
    AUTO_ACCEPTANCE,
    DEFAULT_INIT_TEMPERATURE,
    DEFAULT_REDUCE_RATE,
    PADDLESLIM_INIT_TEMPERATURE,
    STATUS_KEY,
    STOPPED,
    TOKENS_KEY,
    U_KEY,
    ChainReplayer,
    ChainState,
    acceptance_threshold,
    check_init_temperature,
    temperature,
)


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


def _walk(n: int, seed: int = 0) -> list[Evaluation]:
    """A reward sequence with ups and downs, and its stored draws."""
    return [Evaluation(i, (i,), 0.7 + 0.05 * math.sin(i * 1.3) + 0.01 * ((i * 7) % 5), acceptance_draw(seed, (i,)))
            for i in range(n)]


@pytest.mark.parametrize(("a", "b"), [(100.0, 5.0), (0.01, -3.0), (1.0, -1.0), (-1.0, 0.0)])
def test_the_auto_temperature_is_invariant_to_an_affine_rescaling_of_the_reward(a, b) -> None:
    evals = _walk(200)
    for rate in (DEFAULT_REDUCE_RATE, 0.98):
        base = replay_chain(evals, AUTO, rate)
        transformed = [Evaluation(e.number, e.tokens, a * e.reward + b, e.u) for e in evals]
        if a < 0:  # a loss (lower is better) must be negated into a reward first; the raw loss is another search
            assert [s.accepted for s in replay_chain(transformed, AUTO, rate).steps] != [s.accepted for s in base.steps]
            continue
        scaled = replay_chain(transformed, AUTO, rate)
        assert [s.accepted for s in scaled.steps] == [s.accepted for s in base.steps]
        assert [s.best for s in scaled.steps] == [s.best for s in base.steps]
        assert scaled.current_tokens == base.current_tokens and scaled.best_tokens == base.best_tokens
        assert [s.temperature for s in scaled.steps] == pytest.approx([a * s.temperature for s in base.steps])
    if a < 0:
        return
    # a real chain: worse candidates are both accepted and rejected
    current, worse = None, []
    for step in base.steps:
        if current is not None and step.reward < current:
            worse.append(step.accepted)
        current = step.reward if step.accepted else current
    assert 5 <= sum(worse) <= len(worse) - 5, worse
    # A fixed T0 is tied to the scale: PaddleSlim's T0 = 1 accepts differently in percent than in fractions.
    fixed = replay_chain(evals, 1.0)
    fixed_scaled = replay_chain([Evaluation(e.number, e.tokens, 100 * e.reward, e.u) for e in evals], 1.0)
    assert [s.accepted for s in fixed.steps] != [s.accepted for s in fixed_scaled.steps]


def test_the_auto_temperature_follows_its_stated_rule() -> None:
    evals = _walk(60, seed=3)
    chain = replay_chain(evals, "auto", 0.9)
    current, diffs = None, []
    for k, (ev, step) in enumerate(zip(evals, chain.steps, strict=True)):
        expect_t = (statistics.median(diffs) / math.log(1 / AUTO_ACCEPTANCE) * 0.9**k) if diffs else 0.0
        assert step.temperature == pytest.approx(expect_t, rel=1e-12, abs=0), k
        if current is None:
            accepted = True
        else:
            accepted = ev.reward >= current or (expect_t > 0 and ev.u <= math.exp((ev.reward - current) / expect_t))
            diffs.append(abs(ev.reward - current))
        assert step.accepted == accepted, k
        current = ev.reward if accepted else current
    assert chain.steps[1].temperature == 0.0  # no difference known yet: only improvements are accepted


def test_a_fixed_t0_is_paddleslims_schedule_exactly() -> None:
    chain = replay_chain(_walk(40), PADDLESLIM_INIT_TEMPERATURE, DEFAULT_REDUCE_RATE)
    assert [s.temperature for s in chain.steps] == [1.0 * 0.85**k for k in range(40)]


def test_a_stopped_evaluation_counts_but_is_rejected_never_best_and_does_not_set_the_scale() -> None:
    evals = _walk(12)
    plain = replay_chain(evals)
    stopped_at = 6
    with_stop = [*evals[:stopped_at], Evaluation(99, (99,), 5.0, 0.0, stopped=True), *evals[stopped_at:]]
    chain = replay_chain(with_stop)
    step = chain.steps[stopped_at]
    assert step.stopped and not step.accepted and not step.best and step.k == stopped_at  # reward 5.0, u = 0
    assert chain.k == 13 and chain.best_reward == plain.best_reward and 99 not in (chain.best_number,)
    # it advanced k (the next evaluation is judged one step cooler) but left the differences and current alone
    assert chain.steps[stopped_at + 1].temperature == pytest.approx(plain.steps[stopped_at].temperature * 0.85)
    before, after = replay_chain(evals[:stopped_at]), replay_chain(with_stop[:stopped_at + 1])
    assert after.differences == before.differences and after.current_reward == before.current_reward
    assert after.k == before.k + 1
    # and stored as a trial: a COMPLETE trial with status "stopped"
    start = datetime(2026, 1, 1)
    trials = [_trial(0, [0], 0.5, TrialState.COMPLETE, start),
              _trial(1, [1], 0.9, TrialState.COMPLETE, start + timedelta(seconds=1), status=STOPPED)]
    assert [e.stopped for e in evaluations(trials)] == [False, True]
    assert replay_chain(evaluations(trials)).best_reward == 0.5


@pytest.mark.parametrize("t0", ["auto", 1.0, 0.0])
def test_acceptance_threshold_is_exactly_where_the_replay_flips(t0) -> None:
    evals = _walk(15)
    state = replay_chain(evals, t0)
    assert acceptance_threshold(ChainState(), 0.3, t0) is None  # before any reward: everything is accepted
    for u in (0.0, 1e-9, 0.2, 0.5, 0.93):
        threshold = acceptance_threshold(state, u, t0)
        assert threshold is not None and threshold <= state.current_reward
        if t0 == 0.0:
            assert threshold == state.current_reward
        for reward, accepted in [(threshold, True), (threshold + 1e-12, True),
                                 (math.nextafter(threshold, -math.inf), False), (threshold - 1e-9, False)]:
            if math.isinf(threshold):
                break  # u = 0 under T > 0: every reward is accepted
            nxt = replay_chain([Evaluation(100, (100,), reward, u)], t0, state=copy.deepcopy(state))
            assert nxt.steps[-1].accepted is accepted, (u, reward - threshold)


@pytest.mark.parametrize("bad", ["hot", float("nan"), -1.0, float("inf"), True, None, "-0.5"])
def test_bad_temperatures_are_refused_with_the_value(bad) -> None:
    with pytest.raises(ValueError, match=r"init_temperature is .*expected 'auto'"):
        check_init_temperature(bad)
    with pytest.raises(ValueError, match="init_temperature is"):
        SimulatedAnnealingSampler([3], init_temperature=bad)


def test_good_temperatures() -> None:
    assert check_init_temperature(" AUTO ") == AUTO and check_init_temperature("0.5") == 0.5
    assert check_init_temperature(0) == 0.0 and DEFAULT_INIT_TEMPERATURE == AUTO
