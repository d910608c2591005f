"""Budget-filling proposals: every candidate repaired into [fill · budget, budget], deterministically."""

from __future__ import annotations

import itertools
import random

import pytest
from _worker import objective

from sanas import get_space
from sanas.search import SANAS, evaluations, replay_chain
from sanas.search.budget import Budget, BudgetFill, check_fill, check_move


def run(sa: SANAS) -> list[list[int]]:
    out = []
    while (tokens := sa.next_tokens()) is not None:
        out.append(tokens)
        sa.reward(objective(tokens))
    return out


@pytest.mark.parametrize("ratio", ["0.9x", "0.5x", "0.3x"])
def test_every_proposal_of_a_filling_search_lies_in_the_band(ratio: str) -> None:
    space = get_space("DartsSpace")
    sa = SANAS(space, search_steps=40, save_checkpoint=None, max_params=ratio, seed=3)
    budget = sa.max_params
    history = run(sa)
    assert len(history) == 40 and len({tuple(t) for t in history}) == 40
    params = [space.count_params(t) for t in history]
    assert all(0.95 * budget <= p <= budget for p in params), (budget, min(params), max(params))
    # a plain search under the same budget does not fill it — far under the init, its one-token moves from the
    # init cannot even reach the budget (the search is over at once): the band is the repair's doing
    plain = run(SANAS(space, search_steps=40, save_checkpoint=None, max_params=ratio, seed=3, move="plain"))
    if ratio == "0.9x":
        assert len(plain) == 40 and any(space.count_params(t) < 0.95 * budget for t in plain)
    else:
        assert plain == []


def test_a_start_over_the_budget_is_the_init_narrowed_evenly_into_the_band() -> None:
    space = get_space("DartsSpace")
    init = space.init_tokens()
    sa = SANAS(space, search_steps=3, save_checkpoint=None, max_params="0.5x", seed=0)
    first = sa.next_tokens()
    assert first is not None and sa.fill is not None and sa.fill.in_band(first)
    assert all(t <= i for t, i in zip(first, init, strict=True))
    drops = [i - t for t, i in zip(first, init, strict=True)]
    assert max(drops) - min(drops) <= 2, drops  # narrowed in proportion, not one cell to its narrowest
    sa.reward(0.5)
    # the same start in another process with the same settings (a worker, a restart)
    again = SANAS(space, search_steps=3, save_checkpoint=None, max_params="0.5x", seed=0)
    assert again.next_tokens() == first


def test_a_move_is_compensated_on_the_other_positions() -> None:
    """Each proposal differs from the chain's current tokens; the moved position keeps its new value and the
    others make room (or fill in), so a move is a reallocation of the budget."""
    space = get_space("DartsSpace")
    sa = SANAS(space, search_steps=30, save_checkpoint=None, max_params="0.7x", seed=5)
    run(sa)
    evals = evaluations(sa.study.get_trials(deepcopy=False))
    compensated = 0
    for i in range(1, len(evals)):
        current = replay_chain(evals[:i]).current_tokens
        changed = sum(a != b for a, b in zip(evals[i].tokens, current, strict=True))
        assert changed >= 1
        compensated += changed > 1
    assert compensated > len(evals) // 2  # most moves need the others to give or take room


def test_repair_keeps_the_moved_position_and_spreads_the_rest() -> None:
    fill = BudgetFill([Budget("params", sum, 40)], [13] * 5, 0.95)
    rng = random.Random(0)
    start = fill.repair((12,) * 5, None, rng)
    assert fill.in_band(start) and max(start) - min(start) <= 1
    widened = fill.repair((12, *start[1:]), 0, rng)
    assert widened[0] == 12 and fill.in_band(widened)
    assert all(w <= s for w, s in zip(widened[1:], start[1:], strict=True))
    assert max(s - w for w, s in zip(widened[1:], start[1:], strict=True)) <= 2  # spread, not one position
    narrowed = fill.repair((0, *start[1:]), 0, rng)
    assert narrowed[0] == 0 and fill.in_band(narrowed)
    # nothing fits: no repair
    assert BudgetFill([Budget("params", lambda t: 100 + sum(t), 40)], [3] * 2).repair((2, 2), None, rng) is None


def test_two_budgets_both_hold_and_one_is_nearly_spent() -> None:
    space = get_space("DartsSpace")
    sa = SANAS(space, search_steps=20, save_checkpoint=None, max_params="0.8x", max_macs="0.6x", seed=1)
    history = run(sa)
    init = space.init_tokens()
    max_params, max_macs = sa.max_params, sa.max_macs
    assert max_macs == int(0.6 * space.count_macs(init))
    for t in history:
        p, m = space.count_params(t), space.count_macs(t)
        assert p <= max_params and m <= max_macs
        assert p >= 0.95 * max_params or m >= 0.95 * max_macs
    assert sa.settings()["max_macs"] == max_macs and sa.settings()["fill"] == 0.95


def test_the_band_and_the_move_are_part_of_the_study_identity(tmp_path) -> None:
    SANAS("DartsSpace", search_steps=2, save_checkpoint=tmp_path, max_params="0.9x").close()
    with pytest.raises(ValueError, match="different search"):
        SANAS("DartsSpace", search_steps=2, save_checkpoint=tmp_path, max_params="0.9x", move="plain")
    with pytest.raises(ValueError, match="different search"):
        SANAS("DartsSpace", search_steps=2, save_checkpoint=tmp_path, max_params="0.9x", fill=0.9)
    # a plain study records no fill at all: one made before the band existed resumes unchanged
    assert "fill" not in SANAS("DartsSpace", search_steps=2, save_checkpoint=None, max_params="0.9x",
                               move="plain").settings()


@pytest.mark.parametrize("value", [0, -0.5, 1.5, "x", True, float("nan")])
def test_a_band_edge_outside_0_1_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match=r"budget fill is .*expected the band's lower edge as a fraction of the "
                                         r"budget in \(0, 1\]"):
        check_fill(value)
    with pytest.raises(ValueError, match="budget fill is"):
        SANAS("DartsSpace", search_steps=2, save_checkpoint=None, max_params="0.9x", fill=value)  # type: ignore


def test_an_unknown_move_is_refused() -> None:
    with pytest.raises(ValueError, match="move is 'jump', expected one of fill, plain"):
        check_move("jump")


def test_a_small_space_whose_band_is_used_up_goes_on_under_the_budget() -> None:
    """Three tokens of four widths hold few networks in [0.95, 1] × the budget: once the band has no new
    candidate, the search proposes others under the budget instead of ending with steps left."""
    space = get_space("PlainCNNSpace", layers=3, filter_num=[4, 8, 12, 16], stem_channels=8, in_channels=1)
    budget = space.count_params([2, 2, 2])
    fits = [t for t in itertools.product(range(4), repeat=3) if space.count_params(t) <= budget]
    sa = SANAS(space, search_steps=len(fits), save_checkpoint=None, max_params=budget, seed=0)
    history = run(sa)
    assert sorted(tuple(t) for t in history) == sorted(fits)  # every network that fits, each once
    in_band = [sa.fill.in_band(t) for t in history]
    assert in_band[1] and not all(in_band)  # the init (it fits), the band, then the rest of what fits
