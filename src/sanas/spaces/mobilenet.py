"""PaddleSlim's MobileNetV1Space and MobileNetV2Space: the same tokens, ranges and init tokens, in PyTorch.

Both spaces start from the original network (their init tokens) and let every token pick a width, a depth or a
kernel size from a table (``paddleslim/nas/search_space/mobilenetv{1,2}.py``). A PaddleSlim script's
``SANAS([("MobileNetV2Space", {...})])`` works as it is: the settings PaddleSlim passes (``input_size``,
``output_size``, ``block_num``, ``block_mask``) are accepted and, as in PaddleSlim for these two spaces, unused.
The networks end in global average pooling and a linear classifier (PaddleSlim's demos add that ``fc``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sanas.spaces.base import SearchSpace, positive_int, register_space, tag_network
from sanas.spaces.channels import ChannelGraph, trace_channels
from sanas.spaces.convnet import ConvNet, ConvSpec, Unit, count, inherit_by_tracing

__all__ = ["MobileNetV1Space", "MobileNetV2Space", "PaddleSlimSpace"]

HEAD_NUM = (3, 4, 8, 12, 16, 24, 32)
K_SIZE = (3, 5)
REPEAT = (1, 2, 3, 4, 5, 6)


class PaddleSlimSpace(SearchSpace):
    """What the PaddleSlim model spaces share: one table per token position, the classifier, the counts.

    Subclasses set ``TABLES`` (the choices of each position), ``INIT_TOKENS`` and ``STRUCTURE`` (the positions
    that set depth or kernel sizes, which :meth:`inherit` cannot change), and define :meth:`units`.
    """

    TABLES: tuple[tuple[int, ...], ...]
    INIT_TOKENS: tuple[int, ...]
    STRUCTURE: tuple[int, ...]

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init_tokens: Sequence[int] | None = None,
                 input_size: Any = None, output_size: Any = None, block_num: Any = None,
                 block_mask: Any = None) -> None:
        self.num_classes = positive_int("num_classes", num_classes)
        self.in_channels = positive_int("in_channels", in_channels)
        unused = [k for k, v in (("input_size", input_size), ("output_size", output_size),
                                 ("block_num", block_num), ("block_mask", block_mask)) if v is not None]
        if unused:
            warnings.warn(f"{type(self).__name__} searches the whole original network; {', '.join(unused)} "
                          f"(PaddleSlim's block-space settings) are unused, as in PaddleSlim", stacklevel=3)
        self._init_tokens = list(self.INIT_TOKENS) if init_tokens is None else self.validate(init_tokens)

    def init_tokens(self) -> list[int]:
        return list(self._init_tokens)

    def range_table(self) -> list[int]:
        return [len(t) for t in self.TABLES]

    def values(self, tokens: Sequence[int]) -> list[int]:
        """What each token picks: a width, an expansion factor, a depth or a kernel size."""
        return [table[t] for table, t in zip(self.TABLES, self.validate(tokens), strict=True)]

    def units(self, tokens: Sequence[int]) -> list[Unit]:
        raise NotImplementedError

    def token2arch(self, tokens: Sequence[int]) -> ConvNet:
        return tag_network(ConvNet(self.units(tokens), self.num_classes), self, self.validate(tokens))

    def count_params(self, tokens: Sequence[int]) -> int:
        return count(self.units(tokens), self.num_classes, (32, 32))[0]

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return count(self.units(tokens), self.num_classes, input_size)[1]

    def structure(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """What :meth:`inherit` cannot change: the values of the depth and kernel-size tokens."""
        values = self.values(tokens)
        return tuple(values[i] for i in self.STRUCTURE)

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str | None = None) -> ConvNet:
        """The network for ``tokens`` with the trained ``parent``'s weights: every channel group keeps its most
        important channels, or is widened function-preservingly (see :mod:`sanas.spaces.inherit`).

        Widths (and expansion factors) may differ from the parent's; depths and kernel sizes may not.
        """
        importance = self.resolve_importance(importance)
        tokens = self.validate(tokens)
        if not isinstance(parent, ConvNet):
            raise ValueError(f"the parent is a {type(parent).__name__}, expected a network built by {self.name}")
        theirs = getattr(parent, "sanas_space", None)
        if theirs is not None and (theirs.name, theirs.num_classes, theirs.in_channels) != \
                (self.name, self.num_classes, self.in_channels):
            raise ValueError(f"the parent is a {theirs.name} network with {theirs.num_classes} classes and "
                             f"{theirs.in_channels} input channels, the child a {self.name} one with "
                             f"{self.num_classes} and {self.in_channels}")
        parent_tokens = getattr(parent, "sanas_tokens", None)
        if parent_tokens is not None and self.structure(parent_tokens) != self.structure(tokens):
            differ = [i for i in self.STRUCTURE if parent_tokens[i] != tokens[i]]
            raise ValueError(f"inherit keeps the parent's depths and kernel sizes, but the tokens differ from the "
                             f"parent's at positions {differ}; evaluate such candidates from scratch")
        child = self.token2arch(tokens)
        try:
            return inherit_by_tracing(parent, child, self._graph(tokens), importance)
        except ValueError as e:
            raise ValueError(f"cannot inherit {self.name} tokens {tokens} from this parent: {e}") from None

    def _graph(self, tokens: list[int]) -> ChannelGraph:
        """The channel groups of the networks with ``tokens``' structure (traced once per structure)."""
        key = self.structure(tokens)
        cache = self.__dict__.setdefault("_graphs", {})
        if key not in cache:
            cache[key] = trace_channels(self.token2arch(tokens), torch.zeros(2, self.in_channels, 32, 32))
        return cache[key]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "init_tokens": self.init_tokens()}


# --- MobileNetV2 ------------------------------------------------------------------------------------------------
V2_FILTER_NUM = (
    (3, 4, 8, 12, 16, 24, 32, 48),
    (8, 12, 16, 24, 32, 48, 64, 80),
    (16, 24, 32, 48, 64, 80, 96, 128),
    (24, 32, 48, 64, 80, 96, 128, 144, 160, 192),
    (32, 48, 64, 80, 96, 128, 144, 160, 192, 224),
    (64, 80, 96, 128, 144, 160, 192, 224, 256, 320, 384, 512),
)
V2_MULTIPLY = (1, 2, 3, 4, 6)
V2_STRIDES = (2, 2, 2, 1, 2, 1)


@register_space
class MobileNetV2Space(PaddleSlimSpace):
    """PaddleSlim's ``MobileNetV2Space``: 25 tokens over the original MobileNetV2.

    Token 0 picks the first bottleneck's width from ``HEAD_NUM``; then, for each of the six following stages,
    four tokens: expansion factor (``1, 2, 3, 4, 6``), width (that stage's ``V2_FILTER_NUM`` table), number of
    inverted-residual units (1–6) and depthwise kernel size (3 or 5). Strides 2, 2, 2, 1, 2, 1 as in PaddleSlim.
    Fixed parts: the stem (3×3 stride-2 conv to 32 channels), the last 1×1 conv to 1280 channels and the
    classifier. Every unit has its 1×1 expansion conv (even at factor 1) and only units after a stage's first
    add their input back — PaddleSlim's layout. Activations are ReLU6.

    >>> space = MobileNetV2Space()
    >>> space.init_tokens() == [4, 4, 5, 1, 0, 4, 4, 2, 0, 4, 4, 3, 0, 4, 5, 2, 0, 4, 7, 2, 0, 4, 9, 0, 0]
    True
    >>> space.count_params(space.init_tokens())  # torchvision's MobileNetV2 (10 classes) + the 32→32 expansion
    2237770
    """

    TABLES = (HEAD_NUM, *(t for f in V2_FILTER_NUM for t in (V2_MULTIPLY, f, REPEAT, K_SIZE)))
    INIT_TOKENS = (4, 4, 5, 1, 0, 4, 4, 2, 0, 4, 4, 3, 0, 4, 5, 2, 0, 4, 7, 2, 0, 4, 9, 0, 0)
    STRUCTURE = tuple(i for s in range(6) for i in (3 + 4 * s, 4 + 4 * s))

    def settings(self, tokens: Sequence[int]) -> list[tuple[int, int, int, int, int]]:
        """``(expansion, width, units, stride, kernel)`` of each of the seven stages (PaddleSlim's
        ``bottleneck_params_list``)."""
        v = self.values(tokens)
        out = [(1, v[0], 1, 1, 3)]
        for s in range(6):
            t, c, n, k = v[1 + 4 * s: 5 + 4 * s]
            out.append((t, c, n, V2_STRIDES[s], k))
        return out

    def units(self, tokens: Sequence[int]) -> list[Unit]:
        units = [Unit((ConvSpec(self.in_channels, 32, 3, 2, act="relu6"),))]
        c_in = 32
        for t, c, n, s, k in self.settings(tokens):
            for i in range(n):
                hidden = round(c_in * t)
                units.append(Unit((ConvSpec(c_in, hidden, 1, act="relu6"),
                                   ConvSpec(hidden, hidden, k, s if i == 0 else 1, groups=hidden, act="relu6"),
                                   ConvSpec(hidden, c, 1, act=None)), residual=i > 0))
                c_in = c
        units.append(Unit((ConvSpec(c_in, 1280, 1, act="relu6"),)))
        return units


# --- MobileNetV1 ------------------------------------------------------------------------------------------------
V1_FILTER_NUM = (
    (3, 4, 8, 12, 16, 24, 32, 48),
    (8, 12, 16, 24, 32, 48, 64, 80),
    (16, 24, 32, 48, 64, 80, 96, 128, 144, 160),
    (24, 32, 48, 64, 80, 96, 128, 144, 160, 192),
    (32, 48, 64, 80, 96, 128, 144, 160, 192, 224, 256, 320),
    (64, 80, 96, 128, 144, 160, 192, 224, 256, 320, 384),
    (64, 80, 96, 128, 144, 160, 192, 224, 256, 320, 384, 512, 1024, 1048),
    (128, 144, 160, 192, 224, 256, 320, 384, 512, 576, 640, 704, 768),
    (160, 192, 224, 256, 320, 384, 512, 640, 768, 832, 1024, 1048),
)


def _v1_tables() -> tuple[tuple[int, ...], ...]:
    f = (None, *V1_FILTER_NUM)  # f[1] .. f[9], PaddleSlim's filter_num1 .. filter_num9
    pairs = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]
    tables: list[tuple[int, ...]] = [HEAD_NUM]
    for a, b in pairs:
        tables += [f[a], f[b], K_SIZE]  # type: ignore[list-item]
    tables.append(REPEAT)
    for a, b in [(7, 8), (8, 9), (9, 9)]:
        tables += [f[a], f[b], K_SIZE]  # type: ignore[list-item]
    return tuple(tables)


@register_space
class MobileNetV1Space(PaddleSlimSpace):
    """PaddleSlim's ``MobileNetV1Space``: 29 tokens over the original MobileNetV1.

    Token 0 picks the stem conv's width from ``HEAD_NUM``. Then each depthwise-separable layer has three tokens
    ``(f1, f2, kernel)``: the depthwise conv multiplies its input channels by ``max(1, f1 // c_in)`` (PaddleSlim
    rounds ``f1`` down to a multiple of the input channels, never below them), the pointwise conv outputs ``f2``,
    the depthwise kernel is 3 or 5. Token 19 repeats the 512-wide layer 1–6 times (5 in MobileNetV1). Strides:
    2 at the stem and the 2nd, 4th, 6th and the one after the repeated layers.

    Every conv is followed by BatchNorm and ReLU, as in MobileNetV1. (PaddleSlim's space calls its conv–BN helper
    without an activation, which makes its network linear; that is not repeated here.)

    >>> space = MobileNetV1Space()
    >>> space.count_params(space.init_tokens())  # MobileNetV1 with a 10-class head
    3217226
    """

    TABLES = _v1_tables()
    INIT_TOKENS = (6, 6, 6, 0, 6, 7, 0, 7, 6, 0, 6, 10, 0, 10, 8, 0, 8, 11, 0, 4, 11, 8, 0, 8, 10, 0, 10, 10, 0)
    STRUCTURE = (3, 6, 9, 12, 15, 18, 19, 22, 25, 28)

    def layers(self, tokens: Sequence[int]) -> list[tuple[int, int, int, int]]:
        """``(f1, f2, stride, kernel)`` of every depthwise-separable layer (PaddleSlim's
        ``bottleneck_param_list``)."""
        v = self.values(tokens)
        out = [(v[1], v[2], 1, v[3]), (v[4], v[5], 2, v[6]), (v[7], v[8], 1, v[9]), (v[10], v[11], 2, v[12]),
               (v[13], v[14], 1, v[15]), (v[16], v[17], 2, v[18])]
        out += [(v[20], v[21], 1, v[22])] * v[19]
        out += [(v[23], v[24], 2, v[25]), (v[26], v[27], 1, v[28])]
        return out

    def multipliers(self, tokens: Sequence[int]) -> list[int]:
        """How many output channels each depthwise conv makes per input channel."""
        c_in, out = self.values(tokens)[0], []
        for f1, f2, _, _ in self.layers(tokens):
            out.append(max(1, f1 // c_in))
            c_in = f2
        return out

    def structure(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """Depth and kernel sizes, and the depthwise multipliers: a multiplying depthwise conv fixes the widths
        around it, so :meth:`inherit` needs every multiplier at 1."""
        multipliers = self.multipliers(tokens)
        if any(m > 1 for m in multipliers):
            layer = next(i for i, m in enumerate(multipliers) if m > 1)
            raise ValueError(f"{self.name} inherits only networks whose depthwise convs keep their channels "
                             f"(f1 <= input channels), but layer {layer}'s multiplies them by {multipliers[layer]}; "
                             f"evaluate such candidates from scratch")
        return super().structure(tokens)

    def units(self, tokens: Sequence[int]) -> list[Unit]:
        head = self.values(tokens)[0]
        units = [Unit((ConvSpec(self.in_channels, head, 3, 2),))]
        c_in = head
        for f1, f2, stride, kernel in self.layers(tokens):
            dw = c_in * max(1, f1 // c_in)
            units.append(Unit((ConvSpec(c_in, dw, kernel, stride, groups=c_in), ConvSpec(dw, f2, 1))))
            c_in = f2
        return units
