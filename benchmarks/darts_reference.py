"""A plain DARTS reference network, as the original ``cnn/model.py`` computes it, for baselines only.

Same operations, genotype, widths and parameters as :class:`sanas.network.DartsNetwork`, but wired the
reference way: every op applies its own (out-of-place) ReLU, every preprocess too, and no ReLU is shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sanas.network import Genotype
from sanas.network.model import AuxiliaryHead, _drop_path, reduction_layers
from sanas.network.operations import OPS, FactorizedReduce, ReLUConvBN, op_is_identity, op_relu_first


def _with_relu(module: nn.Module) -> nn.Module:
    return nn.Sequential(nn.ReLU(inplace=False), module)


class ReferenceCell(nn.Module):
    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.preprocess0 = _with_relu(FactorizedReduce(c_pp, c)) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        steps, self.concat = (genotype.reduce, genotype.reduce_concat) if reduction else (
            genotype.normal, genotype.normal_concat)
        self.ops = nn.ModuleList()
        self.indices, self.identity = [], []
        for name, index in steps:
            stride = 2 if reduction and index < 2 else 1
            op = OPS[name].build(c, stride)
            self.ops.append(_with_relu(op) if op_relu_first(name, stride) else op)
            self.indices.append(index)
            self.identity.append(op_is_identity(name, stride))

    def forward(self, s0, s1, keep):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(len(self.ops) // 2):
            hs = []
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.indices[k]])
                if keep is not None and not self.identity[k]:
                    h = _drop_path(h, keep)
                hs.append(h)
            states.append(hs[0] + hs[1])
        return torch.cat([states[i] for i in self.concat], dim=1)


class ReferenceNetwork(nn.Module):
    def __init__(self, widths: Sequence[int], genotype: Genotype, stem_channels: int = 108, num_classes: int = 10,
                 in_channels: int = 3, auxiliary: bool = True):
        super().__init__()
        reductions = reduction_layers(len(widths))
        self.aux_layer = reductions[1]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_channels))
        c_pp = c_p = c_aux = stem_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i, c in enumerate(widths):
            reduction = i in reductions
            self.cells.append(ReferenceCell(genotype, c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, 4 * c
            if i == self.aux_layer:
                c_aux = c_p
        self.auxiliary_head = _with_relu(AuxiliaryHead(c_aux, num_classes)) if auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes)
        self.drop_prob = 0.0

    def set_drop_path_prob(self, p: float) -> None:
        self.drop_prob = p

    def forward(self, x):
        keep = torch.tensor(1.0 - self.drop_prob) if self.training and self.drop_prob > 0 else None
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, keep)
            if i == self.aux_layer and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(nn.functional.adaptive_avg_pool2d(s1, 1).flatten(1))
        return (logits, aux) if self.training else logits
