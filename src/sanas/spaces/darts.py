"""DartsSpace: one width token per cell of the DARTS CIFAR network (PaddleSlim's ``DartsSpace``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from sanas.network import DartsNetwork, NetworkCounts, get_genotype, network_counts, reduction_layers
from sanas.network.operations import FactorizedReduce
from sanas.spaces.base import CellWidthSpace, Part, positive_int, register_space, tag_network
from sanas.spaces.inherit import DimSpec, Layout, Segment, group_spec, inherit_state

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
        net = DartsNetwork(self.widths(tokens), self.genotype, stem_channels=self.stem_channels,
                           num_classes=self.num_classes, in_channels=self.in_channels, auxiliary=self.auxiliary)
        return tag_network(net, self, tokens)

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str | None = None) -> DartsNetwork:
        """The network for ``tokens`` with the trained ``parent``'s weights (see :mod:`sanas.spaces.inherit`).

        Cell ``k``'s channel group is cut to its most important channels or widened function-preservingly,
        consistently in its preprocessing, every op (separable and dilated convs' internals, FactorizedReduce),
        the node sums and the concatenation, the next two cells' preprocessing inputs, the auxiliary head and
        the classifier. The parent may come from another ``filter_num`` (only widths matter), but must have
        the same genotype, number of cells, stem, classes and input channels. A parent without an auxiliary
        head leaves the child's freshly initialised.

        >>> import torch
        >>> space = DartsSpace(layers=5, filter_num=[4, 8, 16, 32], init_channels=8)
        >>> parent = space.token2arch(space.init_tokens()).eval()
        >>> child = space.inherit(parent, [3, 3, 3, 3, 3]).eval()     # every cell widened to 32
        >>> x = torch.randn(2, 3, 32, 32)
        >>> bool((child(x) - parent(x)).abs().max() < 1e-4)
        True
        """
        importance = self.resolve_importance(importance)
        check_parent(self, parent, DartsNetwork)
        child = self.token2arch(tokens)
        layout = darts_layout(child)
        parent_widths = dict(enumerate(parent.widths))
        child_widths = dict(enumerate(child.widths))
        if (parent.auxiliary_head is None) != (child.auxiliary_head is None):
            if child.auxiliary_head is not None:  # keep the child's fresh head; copy everything else
                fresh = {k: v for k, v in child.state_dict().items() if k.startswith("auxiliary_head.")}
                probe = self._without_aux(child.widths)
                state = inherit_state(parent, probe, layout, parent_widths, child_widths, importance)
                child.load_state_dict({**state, **fresh})
                return child
            parent = self._strip_aux(parent)
        child.load_state_dict(inherit_state(parent, child, layout, parent_widths, child_widths, importance))
        return child

    def _without_aux(self, widths: Sequence[int]) -> DartsNetwork:
        return DartsNetwork(widths, self.genotype, stem_channels=self.stem_channels, num_classes=self.num_classes,
                            in_channels=self.in_channels, auxiliary=False)

    def _strip_aux(self, parent: DartsNetwork) -> DartsNetwork:
        stripped = self._without_aux(parent.widths)
        stripped.load_state_dict({k: v for k, v in parent.state_dict().items()
                                  if not k.startswith("auxiliary_head.")})
        return stripped

    def counts(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> NetworkCounts:
        """Per-part parameters and MACs (stem, each cell, classifier, aux head)."""
        return network_counts(self.widths(tokens), self.genotype, self.stem_channels, self.num_classes,
                              self.in_channels, input_size)

    def parts(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> list[Part]:
        """Stem, each cell (its type and width), classifier, and the auxiliary head (not counted)."""
        counts = self.counts(tokens, input_size)
        cells = zip(self.cell_types(), self.widths(tokens), counts.cells, strict=True)
        return [Part("stem", "stem", self.stem_channels, *counts.stem),
                *(Part(f"cell {i}", kind, width, *pm) for i, (kind, width, pm) in enumerate(cells)),
                Part("classifier", "linear", None, *counts.classifier),
                Part("aux head", "auxiliary", None, counts.aux_head_params, 0, counted=False)]

    def count_params(self, tokens: Sequence[int]) -> int:
        return self.counts(tokens).params

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return self.counts(tokens, input_size).macs

    def cell_types(self) -> list[str]:
        """``"normal"`` or ``"reduction"`` for each cell."""
        reductions = reduction_layers(self.layers)
        return ["reduction" if i in reductions else "normal" for i in range(self.layers)]

    def structure(self) -> dict[str, Any]:
        """The settings a trained parent must share with this space to pass its weights on (not the widths)."""
        return {"name": self.name, "layers": self.layers, "genotype": self.genotype_name,
                "stem_channels": self.stem_channels, "num_classes": self.num_classes, "in_channels": self.in_channels}

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


def _bn_entries(layout: Layout, prefix: str, spec: DimSpec) -> None:
    for field in ("weight", "bias", "running_mean", "running_var"):
        layout[f"{prefix}.{field}"] = {0: spec}


def _add_factorized_reduce(layout: Layout, prefix: str, group: int, source: DimSpec) -> None:
    layout[f"{prefix}.conv_1.weight"] = {0: group_spec(group, 0), 1: source}
    layout[f"{prefix}.conv_2.weight"] = {0: group_spec(group, 1), 1: source}
    _bn_entries(layout, f"{prefix}.bn", group_spec(group))


def _add_in_group(layout: Layout, prefix: str, module: nn.Module, group: int, source: DimSpec) -> None:
    """Every conv/BN of ``module`` outputs ``group``'s channels; its first convs read ``source``."""
    if isinstance(module, FactorizedReduce):
        _add_factorized_reduce(layout, prefix, group, source)
        return
    for name, m in module.named_children():
        path = f"{prefix}.{name}"
        if isinstance(m, FactorizedReduce):
            _add_factorized_reduce(layout, path, group, source)
        elif isinstance(m, nn.Conv2d):
            if m.groups > 1:  # depthwise: one filter per channel, nothing read across channels
                layout[f"{path}.weight"] = {0: group_spec(group)}
            else:
                layout[f"{path}.weight"] = {0: group_spec(group), 1: source}
        elif isinstance(m, nn.BatchNorm2d):
            _bn_entries(layout, path, group_spec(group))
        else:
            _add_in_group(layout, path, m, group, source)


def darts_layout(net: DartsNetwork) -> Layout:
    """Where every cell's channel group appears in ``net``'s state dict (group ``k`` = cell ``k``).

    The output of cell ``k`` is the concatenation of its nodes, so a tensor reading it sees group ``k``'s
    channels once per node.
    """
    layout: Layout = {}
    stem = DimSpec((Segment(size=net.stem[0].out_channels),), reads=True)

    def output_of(k: int) -> DimSpec:
        if k < 0:
            return stem
        return DimSpec((Segment(k),) * net.cells[k].multiplier, reads=True)

    for k, cell in enumerate(net.cells):
        own = DimSpec((Segment(k),), reads=True)
        _add_in_group(layout, f"cells.{k}.preprocess0", cell.preprocess0, k, output_of(k - 2))
        _add_in_group(layout, f"cells.{k}.preprocess1", cell.preprocess1, k, output_of(k - 1))
        for i, op in enumerate(cell.ops):
            _add_in_group(layout, f"cells.{k}.ops.{i}", op, k, own)
    if net.auxiliary_head is not None:
        layout["auxiliary_head.features.1.weight"] = {1: output_of(net.aux_layer)}
    layout["classifier.weight"] = {1: output_of(len(net.cells) - 1)}
    return layout


def check_parent(space: CellWidthSpace, parent: object, network_type: type[nn.Module]) -> None:
    """Refuse a parent that is not a trained network of a compatible space, naming both sides."""
    if not isinstance(parent, network_type):
        raise ValueError(f"the parent is a {type(parent).__name__}, expected a {network_type.__name__} built by "
                         f"{space.name} (space.token2arch or load_model)")
    theirs = getattr(parent, "sanas_space", None)
    if theirs is None:
        return  # an untagged network: inherit_state checks every tensor's shape instead
    mine_s, theirs_s = space.structure(), theirs.structure()
    diff = [f"{k} {theirs_s.get(k)!r} (parent) vs {mine_s.get(k)!r} (child)" for k in mine_s
            if mine_s.get(k) != theirs_s.get(k)]
    if diff:
        raise ValueError(f"the parent belongs to another space: {'; '.join(diff)}")
