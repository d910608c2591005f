"""Part-by-part model summary (type, width, parameters, MACs) of a space that reports its parts (DartsSpace:
stem, cells, classifier): :meth:`sanas.spaces.base.SearchSpace.parts`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sanas.spaces.base import Part, SearchSpace

__all__ = ["CellRow", "ModelSummary", "model_summary", "render_summary"]


#: A row of the summary: one part of the network.
CellRow = Part


@dataclass(frozen=True)
class ModelSummary:
    tokens: list[int]
    rows: list[CellRow]
    params: int
    macs: int
    init_params: int
    init_macs: int
    aux_head_params: int
    input_size: tuple[int, int]

    @property
    def params_ratio(self) -> float:
        return self.params / self.init_params

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.init_macs


def model_summary(space: SearchSpace, tokens: Sequence[int],
                  input_size: tuple[int, int] = (32, 32)) -> ModelSummary:
    """Exact per-part counts of ``tokens`` in ``space``, and their ratio to the space's init tokens. Raises
    ``ValueError`` for a space whose :meth:`~sanas.spaces.base.SearchSpace.parts` is ``None``.

    >>> from sanas import get_space
    >>> s = model_summary(get_space("DartsSpace"), [5, 5, 0, 5, 5, 10, 7, 7, 5, 7, 7, 11, 10, 12, 10, 0, 5, 3, 10, 8])
    >>> s.params, round(s.params_ratio, 3)
    (3344396, 0.888)
    """
    tokens = space.validate(tokens)
    parts, init = space.parts(tokens, input_size), space.parts(space.init_tokens(), input_size)
    if parts is None or init is None:
        raise ValueError(f"{space.name} reports no per-part counts; expected a space such as DartsSpace")
    rows = [p for p in parts if p.counted]
    return ModelSummary(tokens, rows, sum(p.params for p in rows), sum(p.macs for p in rows),
                        sum(p.params for p in init if p.counted), sum(p.macs for p in init if p.counted),
                        sum(p.params for p in parts if not p.counted), input_size)


def render_summary(summary: ModelSummary, title: str | None = None) -> Group:
    """A rich table of :func:`model_summary`: one row per part, totals, and the ratio to the init model."""
    table = Table(title=title, show_footer=True)
    h, w = summary.input_size
    table.add_column("part", footer="total")
    table.add_column("type")
    table.add_column("width", justify="right")
    table.add_column("params", justify="right", footer=f"{summary.params:,}")
    table.add_column(f"MACs ({h}×{w})", justify="right", footer=f"{summary.macs:,}")
    for row in summary.rows:
        table.add_row(row.name, row.kind, "" if row.width is None else str(row.width), f"{row.params:,}",
                      f"{row.macs:,}")
    notes = Text(f"tokens {summary.tokens}\n"
                 f"vs init tokens: params {summary.params_ratio:.3f}× ({_pct(summary.params_ratio)}), "
                 f"MACs {summary.macs_ratio:.3f}× ({_pct(summary.macs_ratio)})\n"
                 f"aux head (training only, not counted): {summary.aux_head_params:,} params")
    return Group(table, notes)


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f} %"
