"""Parameter budgets as users write them: ``3770000``, ``"3.77M"``, ``"500k"``, ``"0.9x"`` of the init model.

One parser behind ``SANAS(max_params=...)``, the config's ``[search] max_params`` and ``sanas search --max-params``.
A plain number is a parameter count, so it must be a whole number: PaddleSlim scripts keep their budget in
millions (the tutorial's ``MAX_PARAMS = 3.77``), and ``3.77`` is refused with a hint instead of becoming a
budget of 3 parameters that no network meets.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_budget"]

_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([xXkKmM]?)\s*$")


def parse_budget(value: object, init_params: int) -> int | None:
    """A parameter budget as an absolute count: ``"1.0x"`` (of ``init_params``), ``"3.77M"``, ``"500k"``, ``3770000``.

    ``None``/``"none"`` means no budget. A plain number that is not whole (``3.77``) raises ``ValueError``.

    >>> parse_budget("0.9x", 1000), parse_budget("3.77M", 0), parse_budget(5000, 0), parse_budget(3.77e6, 0)
    (900, 3770000, 5000, 3770000)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, bool):
        raise ValueError(f"max_params is {value!r}, expected a count (3770000, '3.77M') or a ratio ('1.0x')")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = _BUDGET.match(str(value))
        if not match:
            raise ValueError(f"max_params is {value!r}, expected a count (3770000, '3.77M', '500k') or a ratio of "
                             f"the init model ('1.0x')")
        number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number):
        raise ValueError(f"max_params is {value!r}, expected a finite budget")
    if unit == "" and number != int(number):
        raise ValueError(f"max_params is {value!r}, which is not a whole number of parameters; for "
                         f"{number:g} million (PaddleSlim's MAX_PARAMS = {number:g}) write '{number:g}M' or "
                         f"{round(number * 1e6)}")
    budget = {"x": number * init_params, "k": number * 1e3, "m": number * 1e6, "": number}[unit]
    if budget <= 0:
        raise ValueError(f"max_params is {value!r}, expected a positive budget")
    return int(budget)
