"""PaddleSlim's ResNetSpace: widths and depths of a bottleneck ResNet's four stages, in PyTorch."""

from __future__ import annotations

from collections.abc import Sequence

from sanas.spaces.base import register_space
from sanas.spaces.convnet import ConvSpec, Unit
from sanas.spaces.mobilenet import PaddleSlimSpace

__all__ = ["ResNetSpace"]

RESNET_FILTER_NUM = (
    (48, 64, 96, 128, 160, 192, 224),
    (64, 96, 128, 160, 192, 256, 320),
    (128, 160, 192, 256, 320, 384),
    (192, 256, 384, 512, 640),
)
RESNET_REPEAT = (
    (2, 3, 4, 5, 6),
    (2, 3, 4, 5, 6, 7),
    (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24),
    (2, 3, 4, 5, 6, 7),
)


@register_space
class ResNetSpace(PaddleSlimSpace):
    """PaddleSlim's ``ResNetSpace``: 8 tokens, ``(width, depth)`` of each of the four stages.

    The init tokens ``[1, 1, 2, 2, 3, 4, 3, 1]`` are ResNet-50: widths 64, 128, 256, 512, depths 3, 4, 6, 3.
    A stage of width ``w`` stacks bottleneck blocks (1×1 conv to ``w``, 3×3 conv, 1×1 conv to ``4w``) whose first
    block has stride 2 (except in the first stage) and a 1×1 conv shortcut. The stem is a 5×5 stride-2 conv to
    the first stage's width. The blocks end in ReLU after the residual add, as every ResNet does (PaddleSlim's
    latest space leaves it out).

    >>> space = ResNetSpace()
    >>> [space.values(space.init_tokens())[i] for i in (0, 2, 4, 6)], space.count_params(space.init_tokens())
    ([64, 128, 256, 512], 23523914)
    """

    TABLES = tuple(t for f, r in zip(RESNET_FILTER_NUM, RESNET_REPEAT, strict=True) for t in (f, r))
    INIT_TOKENS = (1, 1, 2, 2, 3, 4, 3, 1)
    STRUCTURE = (1, 3, 5, 7)

    def units(self, tokens: Sequence[int]) -> list[Unit]:
        v = self.values(tokens)
        units = [Unit((ConvSpec(self.in_channels, v[0], 5, 2),))]
        c_in = v[0]
        for stage in range(4):
            width, depth = v[2 * stage], v[2 * stage + 1]
            for i in range(depth):
                stride = 2 if i == 0 and stage > 0 else 1
                shortcut = ConvSpec(c_in, 4 * width, 1, stride, act=None) if stride != 1 or c_in != 4 * width \
                    else None
                units.append(Unit((ConvSpec(c_in, width, 1), ConvSpec(width, width, 3, stride),
                                   ConvSpec(width, 4 * width, 1, act=None)), residual=True, shortcut=shortcut,
                                  act="relu"))
                c_in = 4 * width
        return units
