"""PlainCNNSpace: one width token per conv cell of a small plain CNN — DartsSpace's structure at a fraction of its cost.

The network is a stem conv, ``layers`` cells of conv3×3 → BatchNorm → ReLU whose widths are searched (stride 2
at the reduction cells ``layers // 3`` and ``2 * layers // 3``, as in DartsSpace), global average pooling and a
linear classifier. A 4-cell space with 5 widths has 625 networks that each train in seconds on a CPU, which is
what the search-strategy benchmark (``benchmarks/width_table.py``) trains exhaustively.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sanas.network import reduction_layers
from sanas.spaces.base import CellWidthSpace, positive_int, register_space, tag_network
from sanas.spaces.inherit import DimSpec, Layout, Segment, group_spec, inherit_state

__all__ = ["PlainCNN", "PlainCNNSpace"]


def _conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1  # 3×3 kernel, padding 1


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class PlainCNN(nn.Module):
    """The network of :class:`PlainCNNSpace`.

    ``forward`` follows :class:`~sanas.network.DartsNetwork`'s contract so the same trainer drives both:
    ``(logits, None)`` in training mode (there is no auxiliary head), ``logits`` in eval mode.
    """

    def __init__(self, widths: Sequence[int], strides: Sequence[int], stem_channels: int, stem_stride: int,
                 num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.widths = [int(w) for w in widths]
        self.stem = _block(in_channels, stem_channels, stem_stride)
        cells, c_prev = [], stem_channels
        for width, stride in zip(widths, strides, strict=True):
            cells.append(_block(c_prev, width, stride))
            c_prev = width
        self.cells = nn.Sequential(*cells)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, None]:
        features = self.cells(self.stem(x))
        logits = self.classifier(features.mean((2, 3)))
        return (logits, None) if self.training else logits


@register_space
class PlainCNNSpace(CellWidthSpace):
    """Per-cell widths of a plain CNN: token ``i`` picks cell ``i``'s conv width from ``filter_num``.

    Args:
        filter_num: the width choices, ascending.
        layers: number of searched cells; the reduction cells ``layers // 3`` and ``2 * layers // 3`` have stride 2.
        stem_channels, stem_stride: the fixed stem conv (stride 2 halves the cost of every cell).
        num_classes, in_channels: classifier outputs and image channels.
        init_tokens: the "trained model" a search starts from (default: the middle width of every cell).

    >>> space = PlainCNNSpace()
    >>> space.range_table(), space.init_tokens(), space.widths(space.init_tokens())
    ([5, 5, 5, 5], [2, 2, 2, 2], [24, 24, 24, 24])
    >>> space.count_params([2, 2, 2, 2]) == sum(p.numel() for p in space.token2arch([2, 2, 2, 2]).parameters())
    True
    >>> space.count_params([0, 0, 0, 0]), space.count_params([4, 4, 4, 4])  # narrowest and widest of 625 networks
    (3210, 70170)

    MACs are counted for one image of ``input_size`` as ``FlopCounterMode`` counts them (FLOPs / 2):

    >>> from torch.utils.flop_counter import FlopCounterMode
    >>> with FlopCounterMode(display=False) as counter:
    ...     _ = space.token2arch([0, 4, 2, 1]).eval()(torch.zeros(1, 1, 28, 27))
    >>> counter.get_total_flops() == 2 * space.count_macs([0, 4, 2, 1], input_size=(28, 27))
    True
    """

    def __init__(self, filter_num: Sequence[int] = (8, 16, 24, 32, 48), layers: int = 4, stem_channels: int = 16,
                 stem_stride: int = 2, num_classes: int = 10, in_channels: int = 1,
                 init_tokens: Sequence[int] | None = None) -> None:
        self._set_cells(filter_num, layers)
        self.stem_channels = positive_int("stem_channels", stem_channels)
        self.stem_stride = positive_int("stem_stride", stem_stride)
        self.num_classes = positive_int("num_classes", num_classes)
        self.in_channels = positive_int("in_channels", in_channels)
        middle = (len(self.filter_num) - 1) // 2
        self._init_tokens = [middle] * self.layers if init_tokens is None else self.validate(init_tokens)

    def strides(self) -> list[int]:
        """Stride of each cell: 2 at the reduction cells, 1 elsewhere."""
        reductions = reduction_layers(self.layers)
        return [2 if i in reductions else 1 for i in range(self.layers)]

    def cell_types(self) -> list[str]:
        """``"normal"`` or ``"reduction"`` for each cell."""
        return ["reduction" if s == 2 else "normal" for s in self.strides()]

    def token2arch(self, tokens: Sequence[int]) -> PlainCNN:
        net = PlainCNN(self.widths(tokens), self.strides(), self.stem_channels, self.stem_stride,
                       self.num_classes, self.in_channels)
        return tag_network(net, self, tokens)

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str | None = None) -> PlainCNN:
        """The network for ``tokens`` with the trained ``parent``'s weights (see :mod:`sanas.spaces.inherit`):
        each cell keeps its most important output channels (or replicates them, function-preservingly), and the
        next cell's conv (or the classifier) reads the same channels.

        >>> space = PlainCNNSpace()
        >>> parent = space.token2arch([2, 2, 2, 2])
        >>> [c.out_channels for c in (block[0] for block in space.inherit(parent, [0, 4, 2, 1]).cells)]
        [8, 48, 24, 16]
        """
        from sanas.spaces.darts import check_parent

        importance = self.resolve_importance(importance)
        check_parent(self, parent, PlainCNN)
        child = self.token2arch(tokens)
        child.load_state_dict(inherit_state(parent, child, plain_cnn_layout(child), dict(enumerate(parent.widths)),
                                            dict(enumerate(child.widths)), importance))
        return child

    def structure(self) -> dict[str, Any]:
        """The settings a trained parent must share with this space to pass its weights on (not the widths)."""
        return {"name": self.name, "layers": self.layers, "stem_channels": self.stem_channels,
                "stem_stride": self.stem_stride, "num_classes": self.num_classes, "in_channels": self.in_channels}

    def _convs(self, tokens: Sequence[int], input_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """(c_in, c_out, out_h, out_w) of every conv, stem first."""
        h, w = (_conv_out(s, self.stem_stride) for s in input_size)
        convs, c_prev = [(self.in_channels, self.stem_channels, h, w)], self.stem_channels
        for width, stride in zip(self.widths(tokens), self.strides(), strict=True):
            h, w = _conv_out(h, stride), _conv_out(w, stride)
            convs.append((c_prev, width, h, w))
            c_prev = width
        return convs

    def count_params(self, tokens: Sequence[int]) -> int:
        convs = self._convs(tokens, (32, 32))
        conv_bn = sum(c_in * c_out * 9 + 2 * c_out for c_in, c_out, _, _ in convs)
        return conv_bn + convs[-1][1] * self.num_classes + self.num_classes

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        convs = self._convs(tokens, input_size)
        return sum(c_in * c_out * 9 * h * w for c_in, c_out, h, w in convs) + convs[-1][1] * self.num_classes

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "filter_num": list(self.filter_num), "layers": self.layers,
                "stem_channels": self.stem_channels, "stem_stride": self.stem_stride,
                "num_classes": self.num_classes, "in_channels": self.in_channels, "init_tokens": self.init_tokens()}


def plain_cnn_layout(net: PlainCNN) -> Layout:
    """Where every cell's channel group appears in ``net``'s state dict (group ``k`` = cell ``k``'s conv outputs)."""
    layout: Layout = {}
    source = DimSpec((Segment(size=net.stem[0].out_channels),), reads=True)
    for k in range(len(net.cells)):
        layout[f"cells.{k}.0.weight"] = {0: group_spec(k), 1: source}
        for field in ("weight", "bias", "running_mean", "running_var"):
            layout[f"cells.{k}.1.{field}"] = {0: group_spec(k)}
        source = group_spec(k, reads=True)
    layout["classifier.weight"] = {1: source}
    return layout
