"""Parameter budgets as users write them: ``3770000``, ``"3.77M"``, ``"500k"``, ``"0.9x"`` of the init model.

One parser behind ``SANAS(max_params=...)``, the config's ``[search] max_params`` and ``sanas search --max-params``.
A plain number is a parameter count, so it must be a whole number: PaddleSlim scripts keep their budget in
millions (the tutorial's ``MAX_PARAMS = 3.77``), and ``3.77`` is refused with a hint instead of becoming a
budget of 3 parameters that no network meets.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sanas.spaces.base import CellWidthSpace, SearchSpace

__all__ = ["DEFAULT_FILL", "DEFAULT_MOVE", "MOVES", "Budget", "BudgetFill", "check_fill", "check_move",
           "parse_budget", "search_budgets", "within_budgets"]

_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([xXkKmM]?)\s*$")


def parse_budget(value: object, init_params: int, name: str = "max_params") -> int | None:
    """A parameter budget as an absolute count: ``"1.0x"`` (of ``init_params``), ``"3.77M"``, ``"500k"``, ``3770000``.

    ``None``/``"none"`` means no budget. A plain number that is not whole (``3.77``) raises ``ValueError``.
    ``name`` is the setting named in errors (``"max_macs"`` parses a MAC budget the same way).

    >>> parse_budget("0.9x", 1000), parse_budget("3.77M", 0), parse_budget(5000, 0), parse_budget(3.77e6, 0)
    (900, 3770000, 5000, 3770000)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} is {value!r}, expected a count (3770000, '3.77M') or a ratio ('1.0x')")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = _BUDGET.match(str(value))
        if not match:
            raise ValueError(f"{name} is {value!r}, expected a count (3770000, '3.77M', '500k') or a ratio of "
                             f"the init model ('1.0x')")
        number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number):
        raise ValueError(f"{name} is {value!r}, expected a finite budget")
    if unit == "" and number != int(number):
        unit_name = "MACs" if name == "max_macs" else "parameters"
        raise ValueError(f"{name} is {value!r}, which is not a whole number of {unit_name}; for {number:g} "
                         f"million (PaddleSlim's MAX_PARAMS = {number:g}) write '{number:g}M' or "
                         f"{round(number * 1e6)}")
    budget = {"x": number * init_params, "k": number * 1e3, "m": number * 1e6, "": number}[unit]
    if budget <= 0:
        raise ValueError(f"{name} is {value!r}, expected a positive budget")
    return int(budget)


#: Where a budget-filling search puts its candidates: between this fraction of the budget and the budget.
DEFAULT_FILL = 0.95
#: How a search moves: ``"fill"`` (the default) repairs every move into the budget band; ``"plain"`` is
#: PaddleSlim's one-token move, exactly (a candidate anywhere under the budget).
MOVES = ("fill", "plain")
DEFAULT_MOVE = "fill"


def check_fill(value: object) -> float:
    """The band's lower edge as a fraction of the budget, in (0, 1]; anything else raises ``ValueError``.

    >>> check_fill(0.95), check_fill("1")
    (0.95, 1.0)
    """
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"budget fill is {value!r}, expected the band's lower edge as a fraction of the budget in "
                         f"(0, 1] (default {DEFAULT_FILL}: candidates between {DEFAULT_FILL:g}× the budget and "
                         f"the budget)")
    return float(value)


def check_move(value: object) -> str:
    """``"fill"`` or ``"plain"``; anything else raises ``ValueError`` naming it."""
    if value not in MOVES:
        raise ValueError(f"move is {value!r}, expected one of {', '.join(MOVES)} ('fill' repairs every candidate "
                         f"into the budget band, 'plain' is PaddleSlim's one-token move)")
    return str(value)


@dataclass(frozen=True)
class Budget:
    """One limit on a candidate: what it counts (``"params"``, ``"macs"``), how (``cost(tokens)``), the limit."""

    name: str
    cost: Callable[[Sequence[int]], int]
    limit: int


class BudgetFill:
    """Repairs a candidate into the band ``[fill · limit, limit]`` of its budgets, deterministically.

    A search whose candidates land anywhere under the budget spends much of its chain on networks that are
    simply smaller (and so worse) than the budget allows, while a uniform pruning ratio fills it exactly. After a
    move, :meth:`repair` compensates it on the *other* positions, spread over them in proportion to their size —
    NNI's simulated-annealing pruner rescales every sparsity to meet its budget; this is that rescale in integer
    token steps:

    * over a budget: narrow one position by one step, repeatedly — each time the position (other than the moved
      one, wider than its narrowest choice) that has so far lost the smallest fraction of its token value; the
      moved position itself only when no other can narrow;
    * under the band (every budget below ``fill`` × its limit): widen one position by one step, repeatedly — the
      one that has so far gained the smallest fraction, among those whose widening stays within every budget —
      until a budget is reached or no position can widen.

    Ties are broken by ``rng`` (seeded from the study by the sampler), so every worker computes the same repair.
    A move is thus a reallocation of the budget between positions. The band is reached unless no position can
    widen without going over a budget (then the candidate is as full as one step allows). With two budgets
    (parameters and MACs) both hold, and the band is reached when either is nearly spent.

    >>> import random
    >>> fill = BudgetFill([Budget("params", sum, 20)], [10] * 4)
    >>> tokens = fill.repair((9, 9, 9, 9), None, random.Random(0))
    >>> sum(tokens), max(tokens) - min(tokens) <= 1     # the parent's widths shrunk evenly into [19, 20]
    (20, True)
    >>> moved = fill.repair((1, *tokens[1:]), 0, random.Random(0))  # position 0 narrowed: the others fill in
    >>> moved[0], sum(moved), fill.in_band(moved)
    (1, 19, True)
    """

    def __init__(self, budgets: Sequence[Budget], range_table: Sequence[int], fill: float = DEFAULT_FILL) -> None:
        self.budgets = list(budgets)
        if not self.budgets:
            raise ValueError("a budget-filling search needs a budget (max_params or max_macs)")
        self.range_table = [int(r) for r in range_table]
        self.fill = check_fill(fill)
        self._costs: dict[tuple[int, ...], tuple[int, ...]] = {}

    def costs(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """Every budget's cost of ``tokens`` (cached: a repair asks for the same vectors many times)."""
        key = tuple(tokens)
        if key not in self._costs:
            if len(self._costs) > 100_000:
                self._costs.clear()
            self._costs[key] = tuple(int(b.cost(list(key))) for b in self.budgets)
        return self._costs[key]

    def fits(self, tokens: Sequence[int]) -> bool:
        """Within every budget."""
        return all(c <= b.limit for c, b in zip(self.costs(tokens), self.budgets, strict=True))

    def in_band(self, tokens: Sequence[int]) -> bool:
        """Within every budget and at least ``fill`` of one of them spent."""
        costs = self.costs(tokens)
        return self.fits(tokens) and any(c >= self.fill * b.limit for c, b in zip(costs, self.budgets, strict=True))

    def repair(self, tokens: Sequence[int], moved: int | None, rng: random.Random) -> tuple[int, ...] | None:
        """``tokens`` repaired into the band, keeping position ``moved`` (``None``: every position may change);
        ``None`` when not even the narrowest choices fit."""
        start = tuple(int(t) for t in tokens)
        t = list(start)
        n = len(t)

        def changed(i: int) -> float:  # the fraction of its token value position i has changed by so far
            return abs(t[i] - start[i]) / (start[i] + 1)

        def pick(positions: list[int]) -> int:
            least = min(changed(i) for i in positions)
            return rng.choice([i for i in positions if changed(i) == least])

        while not self.fits(t):
            narrower = [i for i in range(n) if i != moved and t[i] > 0]
            if not narrower:
                narrower = [i for i in range(n) if t[i] > 0]
                if not narrower:
                    return None
            t[pick(narrower)] -= 1
        while not self.in_band(t):
            wider = [i for i in range(n) if i != moved and t[i] + 1 < self.range_table[i]
                     and self.fits([*t[:i], t[i] + 1, *t[i + 1:]])]
            if not wider:
                break
            t[pick(wider)] += 1
        return tuple(t)


def search_budgets(space: SearchSpace, init: list[int], max_params: object,
                   max_macs: object) -> tuple[int | None, int | None, list[Budget]]:
    """A search's budgets from the values users write (:func:`parse_budget`; ratios are of ``init``'s counts):
    ``(max_params, max_macs, budgets)``, ``budgets`` holding the ones given. A parameter budget below the
    smallest network of a one-width-per-cell space is refused (it is usually millions written as a count)."""
    params = parse_budget(max_params, space.count_params(init))
    if params is not None and isinstance(space, CellWidthSpace):
        smallest = space.count_params([0] * space.layers)  # filter_num is ascending
        if params < smallest:
            raise ValueError(f"max_params is {max_params!r} ({params:,} parameters), below the smallest network "
                             f"of {space.name} ({smallest:,} parameters, every cell at width "
                             f"{space.filter_num[0]}); budgets count parameters (for millions write "
                             f"'{max_params}M')")
    macs = parse_budget(max_macs, space.count_macs(init), "max_macs")
    budgets = [Budget(name, cost, limit) for name, cost, limit in (
        ("params", space.count_params, params), ("macs", space.count_macs, macs)) if limit is not None]
    return params, macs, budgets


def within_budgets(budgets: Sequence[Budget],
                   constraint: Callable[[list[int]], bool] | None) -> Callable[[list[int]], bool] | None:
    """``constraint`` with every budget added to it (unchanged without budgets)."""
    if not budgets:
        return constraint

    def feasible(tokens: list[int]) -> bool:
        return all(b.cost(tokens) <= b.limit for b in budgets) and (constraint is None or bool(constraint(tokens)))

    return feasible
