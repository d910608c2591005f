"""The DARTS CIFAR network with one width per cell, and its exact analytic parameter and MAC counts.

Layout (``L`` cells, reductions at ``L // 3`` and ``2 * L // 3``)::

    stem: conv3×3 in→stem_channels + BN
    cell i: preprocess s0 (FactorizedReduce after a reduction cell, else ReLU-conv1×1-BN) and s1
            (ReLU-conv1×1-BN) to width C_i, four nodes from the genotype, concat → 4·C_i channels
    auxiliary head after cell 2·L//3 (training only), global average pool, linear classifier

Every raw cell output is only ever consumed through a ReLU (the next cells' preprocess, the auxiliary
head) except the last one, which feeds the classifier. The network therefore applies that ReLU once, in
place on the concatenation, and the cells share one ReLU per internal state across all ops that start
with one. The function equals the DARTS reference network; memory and time are lower.

``forward`` returns ``(logits, aux_logits)`` in training mode (``aux_logits`` is ``None`` without the
auxiliary head) and ``logits`` in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sanas.network.genotypes import Genotype
from sanas.network.operations import (
    OPS,
    FactorizedReduce,
    ReLUConvBN,
    factorized_reduce_macs,
    factorized_reduce_params,
    op_is_identity,
    op_relu_first,
    out_size,
    relu_conv_bn_params,
)

__all__ = ["AuxiliaryHead", "Cell", "DartsNetwork", "NetworkCounts", "network_counts", "reduction_layers"]

AUX_HIDDEN = 128
AUX_FEATURES = 768


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells of an ``layers``-cell network (DARTS: ``L//3``, ``2L//3``)."""
    return layers // 3, 2 * layers // 3


def _drop_path(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    # One Bernoulli(keep) draw per sample, rescaled so the expectation is unchanged.
    mask = torch.bernoulli(keep.to(x.dtype).expand(x.shape[0], 1, 1, 1))
    return x * (mask / keep.to(x.dtype))


def _cell_steps(genotype: Genotype, reduction: bool) -> tuple[list[tuple[str, int]], list[int]]:
    if reduction:
        return genotype.reduce, genotype.reduce_concat
    return genotype.normal, genotype.normal_concat


class Cell(nn.Module):
    """One DARTS cell of width ``c``. Takes the ReLU'd outputs of the two previous cells."""

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, relu=False)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, relu=False)
        steps, concat = _cell_steps(genotype, reduction)
        self.concat = list(concat)
        self.ops = nn.ModuleList()
        # (input index, whether the op wants the ReLU'd input, whether drop path applies)
        self.wiring: list[tuple[int, bool, bool]] = []
        for name, index in steps:
            stride = 2 if reduction and index < 2 else 1
            self.ops.append(OPS[name].build(c, stride))
            self.wiring.append((index, op_relu_first(name, stride), not op_is_identity(name, stride)))
        self.multiplier = len(concat)

    def forward(self, r0: torch.Tensor, r1: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        states = [self.preprocess0(r0), self.preprocess1(r1)]
        relus: dict[int, torch.Tensor] = {}
        for node in range(len(self.ops) // 2):
            total = None
            for k in (2 * node, 2 * node + 1):
                index, relu_first, droppable = self.wiring[k]
                if relu_first:
                    if index not in relus:
                        relus[index] = F.relu(states[index])
                    x = relus[index]
                else:
                    x = states[index]
                y = self.ops[k](x)
                if keep is not None and droppable:
                    y = _drop_path(y, keep)
                total = y if total is None else total + y
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' CIFAR auxiliary classifier for 8×8 maps; takes the ReLU'd output of its cell."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, AUX_HIDDEN, 1, bias=False), nn.BatchNorm2d(AUX_HIDDEN), nn.ReLU(inplace=True),
            nn.Conv2d(AUX_HIDDEN, AUX_FEATURES, 2, bias=False), nn.BatchNorm2d(AUX_FEATURES),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(AUX_FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.shape[-1] != 1 or x.shape[-2] != 1:  # inputs larger than 32×32: pool what is left
            x = F.adaptive_avg_pool2d(x, 1)
        return self.classifier(x.flatten(1))


class DartsNetwork(nn.Module):
    """The DARTS evaluation network with one width per cell.

    Example:
        >>> from sanas.network import DartsNetwork, get_genotype
        >>> net = DartsNetwork([8, 8, 16, 16, 32], get_genotype("DARTS_V2"), stem_channels=24)
        >>> net.eval()(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(self, widths: Sequence[int], genotype: Genotype, stem_channels: int = 108,
                 num_classes: int = 10, in_channels: int = 3, auxiliary: bool = True) -> None:
        super().__init__()
        self.widths = [int(w) for w in widths]
        layers = len(self.widths)
        reductions = reduction_layers(layers)
        self.aux_layer = reductions[1]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_channels))
        c_pp, c_p = stem_channels, stem_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_p
        for i, c in enumerate(self.widths):
            reduction = i in reductions
            cell = Cell(genotype, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if i == self.aux_layer:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes)
        # Drop probability as a buffer, not a Python float, so torch.compile does not recompile each epoch.
        self.register_buffer("drop_prob", torch.zeros(()), persistent=False)
        self._drop_active = False
        #: Number of leading cells whose activations are recomputed in backward instead of stored.
        self.checkpoint_cells = 0

    def set_checkpointing(self, cells: int) -> None:
        """Trade compute for memory: recompute the first ``cells`` cells' activations during backward.

        The first cells work on the largest feature maps, so they hold most of the activation memory:
        checkpointing the first stage (``layers // 3`` cells) roughly halves a training step's memory for
        about a tenth more compute. Drop-path masks are reproduced exactly (the RNG state is preserved).
        """
        if isinstance(cells, bool) or not isinstance(cells, int) or not 0 <= cells <= len(self.cells):
            raise ValueError(f"checkpoint cells is {cells!r}, expected an integer in [0, {len(self.cells)}]")
        self.checkpoint_cells = cells

    def set_drop_path_prob(self, p: float) -> None:
        """Set the drop-path probability used in training mode (DARTS: ``0.2 * epoch / epochs``)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability {p!r} is outside [0, 1)")
        self.drop_prob.fill_(p)
        self._drop_active = p > 0

    @property
    def drop_path_prob(self) -> float:
        return float(self.drop_prob)

    def count_params(self, include_aux: bool = False) -> int:
        """Trainable parameters (BN affine included, running stats and, by default, the aux head excluded)."""
        return sum(p.numel() for name, p in self.named_parameters()
                   if p.requires_grad and (include_aux or not name.startswith("auxiliary_head.")))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        keep = 1.0 - self.drop_prob if self.training and self._drop_active else None
        r = F.relu(self.stem(x))
        r_pp, r_p = r, r
        out = r
        aux_logits = None
        last = len(self.cells) - 1
        recompute = self.training and torch.is_grad_enabled()
        for i, cell in enumerate(self.cells):
            if recompute and i < self.checkpoint_cells:
                out = checkpoint(cell, r_pp, r_p, keep, use_reentrant=False)
            else:
                out = cell(r_pp, r_p, keep)
            if i < last:
                # Every later use of this output starts with a ReLU; `cat` keeps nothing for backward.
                out = F.relu_(out)
                if i == self.aux_layer and self.auxiliary_head is not None and self.training:
                    aux_logits = self.auxiliary_head(out)
            r_pp, r_p = r_p, out
        logits = self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))
        if self.training:
            return logits, aux_logits
        return logits


def _cell_counts(genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 hw_pp: tuple[int, int], hw_p: tuple[int, int]) -> tuple[int, int, int]:
    """(params, MACs, output channels) of one cell, given its inputs' channels and spatial sizes."""
    if reduction_prev:
        params = factorized_reduce_params(c_pp, c)
        macs = factorized_reduce_macs(c_pp, c, *hw_pp)
    else:
        params = relu_conv_bn_params(c_pp, c)
        macs = c_pp * c * hw_pp[0] * hw_pp[1]
    params += relu_conv_bn_params(c_p, c)
    macs += c_p * c * hw_p[0] * hw_p[1]
    h, w = hw_p
    oh, ow = (out_size(h, 2), out_size(w, 2)) if reduction else (h, w)
    steps, concat = _cell_steps(genotype, reduction)
    for name, index in steps:
        stride = 2 if reduction and index < 2 else 1
        in_h, in_w = (h, w) if index < 2 else (oh, ow)
        params += OPS[name].params(c, stride)
        macs += OPS[name].macs(c, stride, in_h, in_w)
    return params, macs, len(concat) * c


@dataclass(frozen=True)
class NetworkCounts:
    """Exact per-part (params, MACs) of a :class:`DartsNetwork`; see :func:`network_counts`."""

    stem: tuple[int, int]
    cells: list[tuple[int, int]]
    classifier: tuple[int, int]
    aux_head_params: int

    @property
    def params(self) -> int:
        """Trainable parameters, auxiliary head excluded (PaddleSlim's counting rule)."""
        return self.stem[0] + sum(p for p, _ in self.cells) + self.classifier[0]

    @property
    def macs(self) -> int:
        """Forward multiply-accumulates of one image in eval mode."""
        return self.stem[1] + sum(m for _, m in self.cells) + self.classifier[1]


def network_counts(widths: Sequence[int], genotype: Genotype, stem_channels: int = 108,
                   num_classes: int = 10, in_channels: int = 3,
                   input_size: tuple[int, int] = (32, 32)) -> NetworkCounts:
    """Exact parameter and MAC counts of :class:`DartsNetwork` without building it.

    MACs count the multiply-accumulates of convolutions and linear layers in eval mode (what
    ``torch.utils.flop_counter.FlopCounterMode`` reports, halved); the auxiliary head only runs in
    training, so its MACs are not counted.

    >>> from sanas.network import get_genotype
    >>> network_counts([36] * 6 + [72] * 7 + [144] * 7, get_genotype("PADDLESLIM_DARTS_V2")).params
    3767302
    """
    h, w = input_size
    reductions = reduction_layers(len(widths))
    stem = (in_channels * stem_channels * 9 + 2 * stem_channels, in_channels * stem_channels * 9 * h * w)
    c_pp = c_p = c_aux = stem_channels
    hw_pp = hw_p = (h, w)
    reduction_prev = False
    cells = []
    for i, c in enumerate(widths):
        reduction = i in reductions
        params, macs, c_out = _cell_counts(genotype, c_pp, c_p, c, reduction, reduction_prev, hw_pp, hw_p)
        cells.append((params, macs))
        hw_out = (out_size(hw_p[0], 2), out_size(hw_p[1], 2)) if reduction else hw_p
        c_pp, c_p, hw_pp, hw_p, reduction_prev = c_p, c_out, hw_p, hw_out, reduction
        if i == reductions[1]:
            c_aux = c_p
    aux_params = (c_aux * AUX_HIDDEN + 2 * AUX_HIDDEN + AUX_HIDDEN * AUX_FEATURES * 4 + 2 * AUX_FEATURES
                  + AUX_FEATURES * num_classes + num_classes)
    return NetworkCounts(stem, cells, (c_p * num_classes + num_classes, c_p * num_classes), aux_params)
