"""The DARTS operation table, with each op's exact parameter and MAC count beside its builder.

Every op is described once by an :class:`OpSpec`: how to build it, how many trainable parameters it has
and how many multiply-accumulates its convolutions do. The search space counts models analytically from
these formulas (microseconds, no network built) and the tests check them against the built modules, so
the two can never drift apart silently.

Ops whose first layer is a ReLU (``relu_first``) are built *without* that ReLU: the cell applies ReLU to
each of its states once and hands the result to every such op. The function is the same as the DARTS
reference code; the activation memory and time of the repeated ReLUs are not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OPS", "FactorizedReduce", "OpSpec", "ReLUConvBN", "out_size"]


def out_size(size: int, stride: int) -> int:
    """Spatial size after an op with ``stride`` (every DARTS op pads to keep ``ceil(size / stride)``)."""
    return -(-size // stride)


class ReLUConvBN(nn.Sequential):
    """(ReLU) → conv k×k → BN. The ReLU is left out when ``relu=False`` (the caller applies it once)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReLU()] if relu else []
        layers += [nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False), nn.BatchNorm2d(c_out)]
        super().__init__(*layers)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1×1 convs whose outputs are concatenated.

    The input is expected to be ReLU'd already (the cell or network shares one ReLU per state).
    Odd input sizes are padded so both halves agree (the DARTS reference code fails on them).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            shifted = F.pad(shifted, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _dw_pw(c: int, k: int, stride: int, padding: int, dilation: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c, c, k, stride, padding, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
    ]


def _sep_conv(c: int, stride: int, k: int) -> nn.Module:
    # ReLU, dw k×k (stride), pw, BN, ReLU, dw k×k, pw, BN — the first ReLU is the cell's shared one.
    return nn.Sequential(*_dw_pw(c, k, stride, k // 2, 1), nn.ReLU(inplace=True), *_dw_pw(c, k, 1, k // 2, 1))


def _dil_conv(c: int, stride: int, k: int) -> nn.Module:
    return nn.Sequential(*_dw_pw(c, k, stride, k - 1, 2))


def _conv_7x1_1x7(c: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(c),
    )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (only meaningful in searched genotypes)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


@dataclass(frozen=True)
class OpSpec:
    """One candidate operation of a cell.

    ``build(C, stride)`` makes the module; ``params(C, stride)`` and ``macs(C, stride, h, w)`` give its
    trainable parameters and conv/linear multiply-accumulates for an ``h × w`` input, exactly as built.
    ``relu_first`` ops expect an already ReLU'd input (see :func:`op_relu_first` for the stride-2 skip).

    >>> spec = OPS["sep_conv_3x3"]
    >>> spec.params(16, 1), sum(p.numel() for p in spec.build(16, 1).parameters())
    (864, 864)
    >>> spec.macs(16, 1, 32, 32), spec.macs(16, 2, 32, 32)  # stride 2: a quarter of the outputs
    (819200, 204800)
    """

    build: Callable[[int, int], nn.Module]
    params: Callable[[int, int], int]
    macs: Callable[[int, int, int, int], int]
    relu_first: bool = False


def _hw(h: int, w: int, stride: int) -> int:
    return out_size(h, stride) * out_size(w, stride)


def _sep_macs(c: int, s: int, h: int, w: int, k: int) -> int:
    return 2 * (c * k * k + c * c) * _hw(h, w, s)


def _fr_params(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out


def _fr_macs(c_in: int, c_out: int, h: int, w: int) -> int:
    return c_in * c_out * _hw(h, w, 2)


def _skip(c: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c)


OPS: dict[str, OpSpec] = {
    "none": OpSpec(lambda c, s: Zero(s), lambda c, s: 0, lambda c, s, h, w: 0),
    "avg_pool_3x3": OpSpec(
        lambda c, s: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
        lambda c, s: 0, lambda c, s, h, w: 0),
    "max_pool_3x3": OpSpec(lambda c, s: nn.MaxPool2d(3, stride=s, padding=1),
                           lambda c, s: 0, lambda c, s, h, w: 0),
    # A stride-2 skip is a FactorizedReduce; it starts with a ReLU and is subject to drop path.
    "skip_connect": OpSpec(
        _skip,
        lambda c, s: 0 if s == 1 else _fr_params(c, c),
        lambda c, s, h, w: 0 if s == 1 else _fr_macs(c, c, h, w),
    ),
    "sep_conv_3x3": OpSpec(lambda c, s: _sep_conv(c, s, 3), lambda c, s: 2 * (9 * c + c * c + 2 * c),
                           lambda c, s, h, w: _sep_macs(c, s, h, w, 3), relu_first=True),
    "sep_conv_5x5": OpSpec(lambda c, s: _sep_conv(c, s, 5), lambda c, s: 2 * (25 * c + c * c + 2 * c),
                           lambda c, s, h, w: _sep_macs(c, s, h, w, 5), relu_first=True),
    "sep_conv_7x7": OpSpec(lambda c, s: _sep_conv(c, s, 7), lambda c, s: 2 * (49 * c + c * c + 2 * c),
                           lambda c, s, h, w: _sep_macs(c, s, h, w, 7), relu_first=True),
    "dil_conv_3x3": OpSpec(lambda c, s: _dil_conv(c, s, 3), lambda c, s: 9 * c + c * c + 2 * c,
                           lambda c, s, h, w: (9 * c + c * c) * _hw(h, w, s), relu_first=True),
    "dil_conv_5x5": OpSpec(lambda c, s: _dil_conv(c, s, 5), lambda c, s: 25 * c + c * c + 2 * c,
                           lambda c, s, h, w: (25 * c + c * c) * _hw(h, w, s), relu_first=True),
    "conv_7x1_1x7": OpSpec(
        _conv_7x1_1x7, lambda c, s: 14 * c * c + 2 * c,
        lambda c, s, h, w: 7 * c * c * (h * out_size(w, s) + _hw(h, w, s)), relu_first=True),
}


def op_relu_first(name: str, stride: int) -> bool:
    """Whether op ``name`` at ``stride`` expects a ReLU'd input (a stride-2 skip is a FactorizedReduce)."""
    return OPS[name].relu_first or (name == "skip_connect" and stride == 2)


def op_is_identity(name: str, stride: int) -> bool:
    """Whether op ``name`` at ``stride`` passes its input through unchanged (exempt from drop path)."""
    return name == "skip_connect" and stride == 1


def relu_conv_bn_params(c_in: int, c_out: int) -> int:
    """Parameters of a 1×1 ReLUConvBN preprocess."""
    return c_in * c_out + 2 * c_out


def factorized_reduce_params(c_in: int, c_out: int) -> int:
    """Parameters of a FactorizedReduce ``c_in → c_out``."""
    return _fr_params(c_in, c_out)


def factorized_reduce_macs(c_in: int, c_out: int, h: int, w: int) -> int:
    """MACs of a FactorizedReduce on an ``h × w`` input."""
    return _fr_macs(c_in, c_out, h, w)
