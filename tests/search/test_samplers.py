"""Single-process properties of the token samplers, driven through the SANAS loop and plain Optuna."""

from __future__ import annotations

import optuna
import pytest
from _support import TinySpace
from _worker import objective
from optuna.trial import TrialState

from sanas import get_space
from sanas.search import (
    SANAS,
    RandomTokenSampler,
    RegularizedEvolutionSampler,
    SearchExhausted,
    SimulatedAnnealingSampler,
    evaluations,
    replay_chain,
)
from sanas.search.chain import TOKENS_KEY

BUDGET = 3_770_000


def run(sa: SANAS) -> list[tuple[int, list[int], bool]]:
    """Run the loop to the end; return (trial number, tokens, accepted) per evaluation."""
    out = []
    while sa.next_tokens() is not None:
        number, tokens = sa.trial_number, sa.tokens
        out.append((number, tokens, sa.reward(objective(tokens))))
    return out


def diff_positions(a, b) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def test_sa_moves_one_position_never_repeats_respects_the_budget_and_starts_at_init() -> None:
    space = get_space("DartsSpace")
    sa = SANAS("DartsSpace", search_steps=60, save_checkpoint=None, max_params=BUDGET, seed=1, move="plain")
    history = run(sa)
    trials = sa.study.get_trials(states=[TrialState.COMPLETE])
    assert len(trials) == 60 and len(history) == 60
    assert history[0][1] == space.init_tokens()
    assert len({tuple(t) for _, t, _ in history}) == 60
    assert all(space.count_params(t) <= BUDGET for _, t, _ in history)
    # every proposal is one token away from the chain's current tokens when it was made
    evals = evaluations(trials)
    for i in range(1, len(evals)):
        current = replay_chain(evals[:i]).current_tokens
        assert diff_positions(evals[i].tokens, current) == 1, i  # 0 would be a repeat of the current tokens
    # what reward() returned is exactly the chain replayed from storage
    assert [acc for _, _, acc in history] == [s.accepted for s in replay_chain(evals).steps]
    # params and the user attribute (for the dashboard) both carry the tokens
    assert all([t.params[f"t{i}"] for i in range(20)] == t.user_attrs[TOKENS_KEY] for t in trials)
    info = sa.current_info()
    chain = replay_chain(evals)
    assert info["best_tokens"] == list(chain.best_tokens) and info["current_tokens"] == list(chain.current_tokens)
    assert info["finished"] == 60 and info["temperature"] == pytest.approx(chain.next_temperature("auto", 0.85))
    assert 0 < info["temperature"] < chain.scale("auto") * 0.85**59


def test_same_seed_same_search_and_another_seed_another() -> None:
    a = run(SANAS("DartsSpace", search_steps=15, save_checkpoint=None, max_params=BUDGET, seed=4))
    b = run(SANAS("DartsSpace", search_steps=15, save_checkpoint=None, max_params=BUDGET, seed=4))
    c = run(SANAS("DartsSpace", search_steps=15, save_checkpoint=None, max_params=BUDGET, seed=5))
    assert a == b and a != c


def test_infeasible_init_is_skipped_not_evaluated() -> None:
    space = get_space("DartsSpace")
    budget = space.count_params(space.init_tokens()) - 1
    history = run(SANAS(space, search_steps=5, save_checkpoint=None, max_params=budget, move="plain"))
    assert all(space.count_params(t) <= budget for _, t, _ in history)
    assert diff_positions(history[0][1], space.init_tokens()) == 1


def test_random_search_is_feasible_and_unique() -> None:
    space = TinySpace(n=4, r=4)
    sa = SANAS(space, search_steps=40, save_checkpoint=None, sampler="random",
               constraint=lambda t: sum(t) <= 8)
    history = run(sa)
    assert len(history) == 40 and history[0][1] == [0, 0, 0, 0]
    assert len({tuple(t) for _, t, _ in history}) == 40 and all(sum(t) <= 8 for _, t, _ in history)
    assert sum(diff_positions(t, [0] * 4) > 1 for _, t, _ in history) > 20  # not local moves


def test_regularized_evolution_mutates_a_tournament_winner_of_the_last_population() -> None:
    space = TinySpace(n=5, r=6)
    sampler = RegularizedEvolutionSampler(space.range_table(), space.init_tokens(), population_size=6,
                                          tournament_size=3, seed=2)
    sa = SANAS(space, search_steps=40, save_checkpoint=None, sampler=sampler)
    history = run(sa)
    assert len({tuple(t) for _, t, _ in history}) == 40
    evals = evaluations(sa.study.get_trials())
    for i in range(6, len(evals)):
        population = evals[i - 6:i]
        assert min(diff_positions(evals[i].tokens, p.tokens) for p in population) == 1, i


def test_any_optuna_sampler_through_the_adapter() -> None:
    space = TinySpace(n=4, r=5)
    sa = SANAS(space, search_steps=30, save_checkpoint=None, sampler=optuna.samplers.TPESampler(seed=0),
               constraint=lambda t: sum(t) <= 9)
    history = run(sa)
    assert type(sa.sampler).__name__ == "OptunaTokenSampler"
    assert len({tuple(t) for _, t, _ in history}) == 30 and all(sum(t) <= 9 for _, t, _ in history)


@pytest.mark.parametrize("widen", [True, False])
def test_sa_widens_its_move_when_every_neighbour_is_seen_instead_of_stopping_early(widen) -> None:
    # A greedy chain (T0 = 0) settles on [2, 2, 2, 2]; its 16 one-token neighbours are soon all seen. PaddleSlim
    # (widen_when_stuck=False) ends the search there; by default sanas widens the move and runs every step.
    space = TinySpace(n=4, r=5)
    sampler = SimulatedAnnealingSampler(space.range_table(), space.init_tokens(), seed=3, init_temperature=0.0,
                                        widen_when_stuck=widen)
    sa = SANAS(space, search_steps=120, save_checkpoint=None, sampler=sampler)
    evaluated = []
    while (tokens := sa.next_tokens()) is not None:
        evaluated.append(tuple(tokens))
        sa.reward(-sum((t - 2) ** 2 for t in tokens))
    assert len(evaluated) == len(set(evaluated))
    evals = evaluations(sa.study.get_trials(states=[TrialState.COMPLETE]))
    widths = [diff_positions(evals[i].tokens, replay_chain(evals[:i], 0.0).current_tokens)
              for i in range(1, len(evals))]
    assert replay_chain(evals, 0.0).best_tokens == (2, 2, 2, 2)
    if widen:
        assert len(evaluated) == 120 and widths[0] == 1 and max(widths) >= 2
    else:
        assert len(evaluated) < 60 and set(widths) == {1}
        assert sa.study.get_trials()[-1].user_attrs["fail_reason"].startswith("exhausted: SimulatedAnnealing")


def test_sa_move_changes_exactly_radius_positions() -> None:
    import random

    sampler = SimulatedAnnealingSampler([5, 1, 7, 3, 4])
    rng = random.Random(0)
    for radius in range(1, 6):
        for _ in range(50):
            moved = sampler.move((4, 0, 6, 0, 3), radius, rng)
            assert all(0 <= m < r for m, r in zip(moved, sampler.range_table, strict=True))
            # position 1 has a single choice and cannot change
            assert diff_positions(moved, (4, 0, 6, 0, 3)) in (radius, radius - 1) and moved[1] == 0


def test_exhausted_search_ends_cleanly_for_every_worker(tmp_path, study_name) -> None:
    space = TinySpace(n=2, r=2)  # 4 token vectors in all
    sa = SANAS(space, search_steps=10, save_checkpoint=tmp_path, study_name=study_name)
    history = run(sa)
    assert len(history) == 4 and sa.next_archs() == []
    again = SANAS(space, search_steps=10, save_checkpoint=tmp_path, study_name=study_name)
    assert again.next_archs() == []
    trials = again.study.get_trials()
    assert len(trials) == 5 and trials[-1].user_attrs["fail_reason"].startswith("exhausted: SimulatedAnnealing")


def test_samplers_drive_plain_optuna_studies() -> None:
    sampler = SimulatedAnnealingSampler([6] * 3, init_tokens=[0, 0, 0], seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: -sum((t.suggest_int(f"t{i}", 0, 5) - 4) ** 2 for i in range(3)), n_trials=25)
    tokens = [tuple(t.params[f"t{i}"] for i in range(3)) for t in study.trials]
    assert tokens[0] == (0, 0, 0) and len(set(tokens)) == 25
    assert all(t.user_attrs[TOKENS_KEY] == list(tok) for t, tok in zip(study.trials, tokens, strict=True))
    assert replay_chain(evaluations(study.trials), 1.0, 0.85).best_reward == study.best_value


def test_propose_raises_search_exhausted_with_a_clear_message() -> None:
    sampler = RandomTokenSampler([2, 2], init_tokens=[0, 0], max_try_times=50)
    assert sampler.propose(None, []) == [0, 0]
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: t.suggest_int("t0", 0, 1) + t.suggest_int("t1", 0, 1), n_trials=4)
    with pytest.raises(SearchExhausted, match="no feasible, never-proposed candidate in 50 draws"):
        sampler.propose(study, study.trials)


@pytest.mark.parametrize("bad", [dict(reduce_rate=0.0), dict(reduce_rate=1.5), dict(init_temperature=-1.0),
                                 dict(max_try_times=0), dict(init_tokens=[9, 9])])
def test_bad_sampler_settings_are_refused(bad) -> None:
    kwargs = {"init_tokens": [0, 0], **bad}
    with pytest.raises(ValueError):
        SimulatedAnnealingSampler([3, 3], **kwargs)


def _frozen(number: int, tokens: tuple[int, ...], state: TrialState, status: str | None = None):
    from optuna.trial import FrozenTrial

    return FrozenTrial(number=number, state=state, value=0.5 if state == TrialState.COMPLETE else None, values=None,
                       datetime_start=None, datetime_complete=None, params={}, distributions={},
                       user_attrs={TOKENS_KEY: list(tokens)},
                       system_attrs={} if status is None else {"sanas:status": status}, intermediate_values={},
                       trial_id=number)


def test_incremental_claim_index_equals_a_full_scan() -> None:
    import random

    from sanas.search.samplers import ClaimIndex

    rng = random.Random(0)
    index, trials = ClaimIndex(), []
    for _ in range(400):
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if running and rng.random() < 0.5:
            t = rng.choice(running)
            state, status = rng.choice([(TrialState.COMPLETE, None), (TrialState.FAIL, None),
                                        (TrialState.FAIL, "surplus"), (TrialState.FAIL, "collision")])
            trials[t.number] = _frozen(t.number, trial_tokens_of(t), state, status)
        else:
            trials.append(_frozen(len(trials), (rng.randrange(4), rng.randrange(4)), TrialState.RUNNING))
        full = {tuple(t.user_attrs[TOKENS_KEY]) for t in trials if t.system_attrs.get("sanas:status") is None}
        assert index.claimed(trials) == full
        if running:
            me = running[0].number
            if trials[me].state == TrialState.RUNNING:
                others = {tuple(t.user_attrs[TOKENS_KEY]) for t in trials
                          if t.number != me and t.system_attrs.get("sanas:status") is None}
                assert index.claimed(trials, exclude=me) == others


def trial_tokens_of(trial) -> tuple[int, ...]:
    return tuple(trial.user_attrs[TOKENS_KEY])
