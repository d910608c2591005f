"""DartsSpace: one width token per cell of the DARTS CIFAR network (PaddleSlim's ``DartsSpace``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sanas.network import DartsNetwork, NetworkCounts, get_genotype, network_counts, reduction_layers
from sanas.spaces.base import CellWidthSpace, positive_int, register_space

__all__ = ["DEFAULT_FILTER_NUM", "DartsSpace"]

DEFAULT_FILTER_NUM = (4, 8, 12, 16, 20, 36, 54, 72, 90, 108, 144, 180, 216, 252)


@register_space
class DartsSpace(CellWidthSpace):
    """Per-cell widths of the DARTS network: token ``i`` picks cell ``i``'s width from ``filter_num``.

    Every conv of cell ``i`` (its two preprocess convs included) outputs ``filter_num[tokens[i]]``
    channels; the cell outputs four times that. The stem (``stem_multiplier * init_channels`` wide) is
    not searched. The init tokens are the original network's widths: ``init_channels`` in the first
    stage, twice that after the first reduction cell, four times after the second.

    Args:
        filter_num: the width choices, ascending.
        layers: number of cells (20 in DARTS); reductions sit at ``layers // 3`` and ``2 * layers // 3``.
        init_channels: DARTS' ``C``; sets the init widths and the stem.
        stem_multiplier: stem width = ``stem_multiplier * init_channels`` (DARTS: 3 × 36 = 108).
        num_classes, in_channels: classifier outputs and image channels.
        auxiliary: build the auxiliary head (training only; never counted in ``count_params``).
        genotype: ``"PADDLESLIM_DARTS_V2"`` (PaddleSlim's cell, the default) or ``"DARTS_V2"`` (the paper's).
        init_tokens: override the init tokens (needed when the init widths are not in ``filter_num``).

    >>> space = DartsSpace()
    >>> space.count_params([5, 5, 0, 5, 5, 10, 7, 7, 5, 7, 7, 11, 10, 12, 10, 0, 5, 3, 10, 8])
    3344396
    """

    def __init__(self, filter_num: Sequence[int] = DEFAULT_FILTER_NUM, layers: int = 20,
                 init_channels: int = 36, stem_multiplier: int = 3, num_classes: int = 10,
                 in_channels: int = 3, auxiliary: bool = True, genotype: str = "PADDLESLIM_DARTS_V2",
                 init_tokens: Sequence[int] | None = None) -> None:
        self._set_cells(filter_num, layers)
        self.init_channels = positive_int("init_channels", init_channels)
        self.stem_multiplier = positive_int("stem_multiplier", stem_multiplier)
        self.num_classes = positive_int("num_classes", num_classes)
        self.in_channels = positive_int("in_channels", in_channels)
        self.auxiliary = bool(auxiliary)
        self.genotype_name = genotype
        self.genotype = get_genotype(genotype)
        if init_tokens is None:
            self._init_tokens = self._default_init_tokens()
        else:
            self._init_tokens = self.validate(init_tokens)

    def _default_init_tokens(self) -> list[int]:
        r1, r2 = reduction_layers(self.layers)
        tokens = []
        for i in range(self.layers):
            width = self.init_channels * (1 if i < r1 else 2 if i < r2 else 4)
            if width not in self.filter_num:
                raise ValueError(f"init width {width} of cell {i} (init_channels={self.init_channels}) is not in "
                                 f"filter_num {self.filter_num}; add it or pass init_tokens")
            tokens.append(self.filter_num.index(width))
        return tokens

    @property
    def stem_channels(self) -> int:
        return self.stem_multiplier * self.init_channels

    def token2arch(self, tokens: Sequence[int]) -> DartsNetwork:
        return DartsNetwork(self.widths(tokens), self.genotype, stem_channels=self.stem_channels,
                            num_classes=self.num_classes, in_channels=self.in_channels,
                            auxiliary=self.auxiliary)

    def counts(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> NetworkCounts:
        """Per-part parameters and MACs (stem, each cell, classifier, aux head)."""
        return network_counts(self.widths(tokens), self.genotype, self.stem_channels, self.num_classes,
                              self.in_channels, input_size)

    def count_params(self, tokens: Sequence[int]) -> int:
        return self.counts(tokens).params

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return self.counts(tokens, input_size).macs

    def cell_types(self) -> list[str]:
        """``"normal"`` or ``"reduction"`` for each cell."""
        reductions = reduction_layers(self.layers)
        return ["reduction" if i in reductions else "normal" for i in range(self.layers)]

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filter_num": list(self.filter_num),
            "layers": self.layers,
            "init_channels": self.init_channels,
            "stem_multiplier": self.stem_multiplier,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "auxiliary": self.auxiliary,
            "genotype": self.genotype_name,
            "init_tokens": self.init_tokens(),
        }
