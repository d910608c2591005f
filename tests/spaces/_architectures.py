"""Common CNN architectures, written small for the tracer table: ResNet, pre-activation and wide ResNets, DenseNet,
squeeze-excite, MobileNetV2/V3, EfficientNet-style "same" padding, ShuffleNetV2 and GhostNet.

Each is written the way its published definitions usually are (functional in-place activations, ``x[:, :oup]``
slices, a channel shuffle as view/transpose/view, ``chunk``) but with few blocks and few channels, so that tracing
at 224×224 stays fast. Every model takes 3 input channels and returns 10 logits at any input size from 32 up.
:data:`ARCHITECTURES` maps a name to a function building the model (random weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


# --- ResNet family ------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, se: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv_bn(c_in, c_out, 3, stride), conv_bn(c_out, c_out, 3, act=False)
        self.se = SqueezeExciteLinear(c_out) if se else None
        self.shortcut = conv_bn(c_in, c_out, 1, stride, act=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)), inplace=True)


class SqueezeExciteLinear(nn.Module):
    """SE-ResNet's squeeze-excite: pooled features through two linear layers, a sigmoid gate per channel."""

    def __init__(self, c: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, max(2, c // reduction)), nn.Linear(max(2, c // reduction), c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1).view(b, c)))))
        return x * y.view(b, c, 1, 1)


class ResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 16), blocks: int = 2, se: bool = False) -> None:
        super().__init__()
        self.stem = conv_bn(3, widths[0], 3, 2)
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1, se))
                c = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut conv reads the pre-activated input; dropout between the convs (WRN)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(out)))))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 16), blocks: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0] if dropout == 0 else 8, 3, 2, 1, bias=False)
        layers, c = [], self.stem.out_channels
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(PreActBlock(c, w, 2 if i > 0 and j == 0 else 1, dropout))
                c = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wide_resnet() -> nn.Module:
    """WRN-10-2 in miniature: three groups of one pre-activation block, widths 4·k, 8·k, 16·k for k = 2."""
    return PreActResNet(widths=(8, 16, 32), blocks=1, dropout=0.3)


# --- DenseNet -----------------------------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, out], 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 4, layers: tuple[int, ...] = (2, 2)) -> None:
        super().__init__()
        c = 2 * growth
        blocks: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False)]
        for i, n in enumerate(layers):
            for _ in range(n):
                blocks.append(DenseLayer(c, growth))
                c += growth
            if i < len(layers) - 1:
                blocks += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        self.features = nn.Sequential(*blocks, nn.BatchNorm2d(c), nn.ReLU())
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


# --- MobileNets ---------------------------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)]
        c = 8
        for width, units, stride, expand in [(8, 1, 1, 1), (12, 2, 2, 3), (16, 2, 2, 3)]:
            for i in range(units):
                layers.append(InvertedResidual(c, width, stride if i == 0 else 1, expand))
                c = width
        layers += [nn.Conv2d(c, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class HardSigmoid(nn.Module):
    """As many MobileNetV3 definitions write it: an in-place functional ReLU6 (ATen ``relu6_``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0, inplace=True) / 6.0


class HardSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0, inplace=True) / 6.0


class SqueezeExciteConv(nn.Module):
    """Squeeze-excite with 1×1 convs and a configurable gate (hard sigmoid in MobileNetV3, sigmoid in EfficientNet)."""

    def __init__(self, c: int, squeeze: int, act: nn.Module, gate: nn.Module) -> None:
        super().__init__()
        self.reduce, self.act = nn.Conv2d(c, squeeze, 1), act
        self.expand, self.gate = nn.Conv2d(squeeze, c, 1), gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


class Bneck(nn.Module):
    def __init__(self, c_in: int, hidden: int, c_out: int, k: int, stride: int, se: bool, hswish: bool) -> None:
        super().__init__()
        act: Callable[[], nn.Module] = HardSwish if hswish else (lambda: nn.ReLU(inplace=True))
        self.expand = nn.Sequential(nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act())
        self.dw = nn.Sequential(nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
                                nn.BatchNorm2d(hidden), act())
        self.se = SqueezeExciteConv(hidden, max(4, hidden // 4), nn.ReLU(inplace=True), HardSigmoid()) if se else None
        self.project = nn.Sequential(nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dw(self.expand(x))
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return x + out if self.residual else out


class MobileNetV3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), HardSwish())
        cfg = [(3, 8, 8, False, False, 2), (3, 24, 12, False, False, 2), (3, 36, 12, False, False, 1),
               (5, 36, 16, True, True, 2), (5, 48, 16, True, True, 1)]  # (k, hidden, out, se, hswish, stride)
        blocks, c = [], 8
        for k, hidden, out, se, hs, stride in cfg:
            blocks.append(Bneck(c, hidden, out, k, stride, se, hs))
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c, 48, 1, bias=False), nn.BatchNorm2d(48), HardSwish())
        self.classifier = nn.Sequential(nn.Linear(48, 64), HardSwish(), nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.blocks(self.stem(x))).mean((2, 3)))


# --- EfficientNet-style "same" padding ----------------------------------------------------------------------------
class Conv2dSame(nn.Conv2d):
    """TensorFlow's "same" padding, computed from the input's size at every call (as EfficientNet ports do)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = None if expand == 1 else nn.Sequential(Conv2dSame(c_in, hidden, 1, bias=False),
                                                             nn.BatchNorm2d(hidden), nn.SiLU(inplace=True))
        self.dw = nn.Sequential(Conv2dSame(hidden, hidden, k, stride, groups=hidden, bias=False),
                                nn.BatchNorm2d(hidden), nn.SiLU(inplace=True))
        self.se = SqueezeExciteConv(hidden, max(2, c_in // 4), nn.SiLU(inplace=True), nn.Sigmoid())
        self.project = nn.Sequential(Conv2dSame(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.se(self.dw(out)))
        return x + out if self.residual else out


class EfficientNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(Conv2dSame(3, 8, 3, 2, bias=False), nn.BatchNorm2d(8), nn.SiLU(inplace=True))
        cfg = [(8, 1, 3, 1), (12, 4, 3, 2), (12, 4, 3, 1), (16, 4, 5, 2)]  # (out, expand, k, stride)
        blocks, c = [], 8
        for out, expand, k, stride in cfg:
            blocks.append(MBConv(c, out, expand, k, stride))
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(Conv2dSame(c, 48, 1, bias=False), nn.BatchNorm2d(48), nn.SiLU(inplace=True))
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.dropout(self.head(self.blocks(self.stem(x))).mean((2, 3)), 0.2, self.training))


# --- ShuffleNetV2 -------------------------------------------------------------------------------------------------
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = c_out // 2
        self.branch1 = nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in, act=False),
                                     conv_bn(c_in, half, 1)) if stride > 1 else nn.Sequential()
        self.branch2 = nn.Sequential(conv_bn(c_in if stride > 1 else half, half, 1),
                                     conv_bn(half, half, 3, stride, groups=half, act=False), conv_bn(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32), units: tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        self.conv1 = conv_bn(3, 8, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c = [], 8
        for w, n in zip(widths, units, strict=True):
            stages.append(nn.Sequential(*[ShuffleUnit(c if i == 0 else w, w, 2 if i == 0 else 1) for i in range(n)]))
            c = w
        self.stages = nn.Sequential(*stages)
        self.conv5 = conv_bn(c, 64, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.maxpool(self.conv1(x))))
        return self.fc(x.mean([2, 3]))


# --- GhostNet -----------------------------------------------------------------------------------------------------
def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0, inplace=True) / 6.0


class GhostModule(nn.Module):
    """Half the channels from a conv, the other half from a cheap depthwise conv of those; sliced to ``oup``."""

    def __init__(self, inp: int, oup: int, relu: bool = True) -> None:
        super().__init__()
        self.oup = oup
        init = math.ceil(oup / 2)
        act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.primary_conv = nn.Sequential(nn.Conv2d(inp, init, 1, 1, 0, bias=False), nn.BatchNorm2d(init), act)
        self.cheap_operation = nn.Sequential(nn.Conv2d(init, init, 3, 1, 1, groups=init, bias=False),
                                             nn.BatchNorm2d(init), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        return out[:, :self.oup, :, :]


class GhostSqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(c, max(4, c // 4), 1, bias=True)
        self.conv_expand = nn.Conv2d(max(4, c // 4), c, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = self.conv_expand(F.relu(self.conv_reduce(F.adaptive_avg_pool2d(x, 1)), inplace=True))
        return x * hard_sigmoid(x_se)


class GhostBottleneck(nn.Module):
    def __init__(self, c_in: int, mid: int, c_out: int, k: int, stride: int, se: bool) -> None:
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(c_in, mid, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid)
        self.se = GhostSqueezeExcite(mid) if se else None
        self.ghost2 = GhostModule(mid, c_out, relu=False)
        self.shortcut = nn.Sequential() if c_in == c_out and stride == 1 else nn.Sequential(
            nn.Conv2d(c_in, c_in, k, stride, k // 2, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        return self.ghost2(x) + self.shortcut(residual)


class GhostNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        cfg = [(3, 8, 8, False, 1), (3, 24, 12, False, 2), (3, 24, 12, False, 1), (5, 24, 16, True, 2),
               (5, 32, 16, True, 1)]  # (k, mid, out, se, stride)
        blocks, c = [], 8
        for k, mid, out, se, stride in cfg:
            blocks.append(GhostBottleneck(c, mid, out, k, stride, se))
            c = out
        self.blocks = nn.Sequential(*blocks, conv_bn(c, 32, 1))
        self.conv_head = nn.Conv2d(32, 64, 1, bias=True)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv_stem(x)), inplace=True))
        x = F.relu(self.conv_head(F.adaptive_avg_pool2d(x, 1)), inplace=True)
        return self.classifier(F.dropout(x.flatten(1), 0.2, self.training))


#: Name -> a function building the model with random weights.
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "ResNet": ResNet,
    "PreActResNet": PreActResNet,
    "WideResNet": wide_resnet,
    "DenseNet": DenseNet,
    "SE-ResNet": lambda: ResNet(se=True),
    "MobileNetV2": MobileNetV2,
    "MobileNetV3": MobileNetV3,
    "EfficientNet": EfficientNet,
    "ShuffleNetV2": ShuffleNetV2,
    "GhostNet": GhostNet,
}
