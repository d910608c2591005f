"""Conv–BatchNorm networks described as data: the PaddleSlim spaces build and count the same description.

A network is a stem-to-head list of :class:`Unit` s — a chain of :class:`ConvSpec` s, optionally added to its
input (or to a shortcut conv of it) — then global average pooling and a linear classifier. :class:`ConvNet` builds
it; :func:`count` gives its exact parameters and MACs without building it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sanas.spaces.channels import ChannelGraph
from sanas.spaces.inherit import DEFAULT_IMPORTANCE, inherit_state

__all__ = ["ConvNet", "ConvSpec", "Unit", "count", "inherit_by_tracing"]

_ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


@dataclass(frozen=True)
class ConvSpec:
    """A ``kernel``×``kernel`` convolution (no bias, "same" padding), BatchNorm, then ``act`` (or none)."""

    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    act: str | None = "relu"

    def build(self) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(self.c_in, self.c_out, self.kernel, self.stride, self.kernel // 2,
                                             groups=self.groups, bias=False), nn.BatchNorm2d(self.c_out)]
        if self.act is not None:
            layers.append(_ACTIVATIONS[self.act](inplace=True))
        return nn.Sequential(*layers)

    def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return ((size[0] - 1) // self.stride + 1, (size[1] - 1) // self.stride + 1)

    def params(self) -> int:
        return self.c_in // self.groups * self.c_out * self.kernel**2 + 2 * self.c_out

    def macs(self, out: tuple[int, int]) -> int:
        return self.c_in // self.groups * self.c_out * self.kernel**2 * out[0] * out[1]


@dataclass(frozen=True)
class Unit:
    """``chain`` applied in order; with ``residual``, its output plus the input (through ``shortcut`` when given),
    then ``act``."""

    chain: tuple[ConvSpec, ...]
    residual: bool = False
    shortcut: ConvSpec | None = None
    act: str | None = None

    @property
    def c_out(self) -> int:
        return self.chain[-1].c_out


class _UnitModule(nn.Module):
    def __init__(self, unit: Unit) -> None:
        super().__init__()
        self.residual = unit.residual
        self.chain = nn.Sequential(*(spec.build() for spec in unit.chain))
        self.shortcut = unit.shortcut.build() if unit.shortcut is not None else None
        self.act = _ACTIVATIONS[unit.act](inplace=True) if unit.act is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.chain(x)
        if self.residual:
            out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return self.act(out) if self.act is not None else out


class ConvNet(nn.Module):
    """The units, global average pooling and a linear classifier. ``forward`` returns logits in both modes."""

    def __init__(self, units: Sequence[Unit], num_classes: int) -> None:
        super().__init__()
        self.units = nn.Sequential(*(_UnitModule(u) for u in units))
        self.classifier = nn.Linear(units[-1].c_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.units(x).mean((2, 3)))


def count(units: Sequence[Unit], num_classes: int, input_size: tuple[int, int]) -> tuple[int, int]:
    """Exact ``(parameters, MACs)`` of ``ConvNet(units, num_classes)`` on one ``input_size`` image (MACs of the
    convolutions and the classifier, as ``FlopCounterMode`` counts them, halved)."""
    params = macs = 0
    size = input_size
    for unit in units:
        start = size
        for spec in unit.chain:
            size = spec.out_size(size)
            params += spec.params()
            macs += spec.macs(size)
        if unit.shortcut is not None:
            params += unit.shortcut.params()
            macs += unit.shortcut.macs(unit.shortcut.out_size(start))
    c = units[-1].c_out
    return params + c * num_classes + num_classes, macs + c * num_classes


def inherit_by_tracing(parent: nn.Module, child: nn.Module, graph: ChannelGraph,
                       importance: str = DEFAULT_IMPORTANCE) -> nn.Module:
    """Load into ``child`` the trained ``parent``'s weights at the child's widths.

    ``graph`` is :func:`~sanas.spaces.channels.trace_channels` of any network of the same structure (depths,
    kernels) as both: which channels are coupled does not depend on the widths, which are read off each network.
    """
    parent_widths, child_widths = _widths_in(graph, parent), _widths_in(graph, child)
    child.load_state_dict(inherit_state(parent, child, graph.layout, dict(enumerate(parent_widths)),
                                        dict(enumerate(child_widths)), importance))
    return child


def _widths_in(graph: ChannelGraph, net: nn.Module) -> list[int]:
    """Each searchable group's width in ``net``, a network of the traced one's structure."""
    state = net.state_dict()
    widths: dict[int, int] = {}
    for name, dims in graph.layout.items():
        for dim, spec in dims.items():
            if len(spec.segments) == 1 and spec.segments[0].group is not None and name in state:
                seg = spec.segments[0]
                widths.setdefault(seg.group, int(state[name].shape[dim]) // seg.repeat)  # type: ignore[arg-type]
    missing = [g.name for k, g in enumerate(graph.groups) if k not in widths]
    if missing:
        raise ValueError(f"cannot read the width of channel group(s) {', '.join(missing)}")
    return [widths[k] for k in range(len(graph.groups))]
