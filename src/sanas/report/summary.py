"""Per-cell model summary of a DartsSpace architecture: type, width, parameters and MACs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sanas.spaces import DartsSpace

__all__ = ["CellRow", "ModelSummary", "model_summary", "render_summary"]


@dataclass(frozen=True)
class CellRow:
    name: str
    kind: str
    width: int | None
    params: int
    macs: int


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


def model_summary(space: DartsSpace, tokens: Sequence[int],
                  input_size: tuple[int, int] = (32, 32)) -> ModelSummary:
    """Exact per-part counts of ``tokens`` in ``space``, and their ratio to the space's init tokens.

    >>> from sanas import get_space
    >>> s = model_summary(get_space("DartsSpace"), [5, 5, 0, 5, 5, 10, 7, 7, 5, 7, 7, 11, 10, 12, 10, 0, 5, 3, 10, 8])
    >>> s.params, round(s.params_ratio, 3)
    (3344396, 0.888)
    """
    tokens = space.validate(tokens)
    counts = space.counts(tokens, input_size)
    init = space.counts(space.init_tokens(), input_size)
    rows = [CellRow("stem", "stem", space.stem_channels, *counts.stem)]
    for i, (kind, width, (params, macs)) in enumerate(
            zip(space.cell_types(), space.widths(tokens), counts.cells, strict=True)):
        rows.append(CellRow(f"cell {i}", kind, width, params, macs))
    rows.append(CellRow("classifier", "linear", None, *counts.classifier))
    return ModelSummary(tokens, rows, counts.params, counts.macs, init.params, init.macs, counts.aux_head_params,
                        input_size)


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
