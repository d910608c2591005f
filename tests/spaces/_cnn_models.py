"""Small networks of the shapes users bring: residual stages, inverted residuals, concatenations, squeeze-excite,
and the forwards sanas must refuse. Also the entry points the ModelSpace tests load by name."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from _weights import randomise


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """CIFAR-style ResNet (``blocks`` per stage; ResNet-20 has 3)."""

    def __init__(self, blocks: int = 1, widths: tuple[int, ...] = (8, 16, 32), in_channels: int = 1,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True), nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        cfg = [(8, 1, 1), (12, 2, 2), (16, 2, 2)]  # (width, units, stride)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()]
        c = 8
        for width, units, stride in cfg:
            for i in range(units):
                layers.append(InvertedResidual(c, width, stride if i == 0 else 1, 3))
                c = width
        layers += [nn.Conv2d(c, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class ConcatFlatten(nn.Module):
    """Two convs concatenated, pooled and flattened into a hidden linear layer (LeNet/VGG-style head)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.left = nn.Conv2d(8, 6, 3, padding=1)
        self.right = nn.Conv2d(8, 4, 1)
        self.fc1 = nn.Linear(10 * 8 * 8, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        y = F.max_pool2d(torch.cat([self.left(x), self.right(x)], 1), 4)
        return self.fc2(F.relu(self.fc1(torch.flatten(y, 1))))


class SqueezeExcite(nn.Module):
    """A conv whose channels are rescaled by a squeeze-excite branch (``x * sigmoid(...)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.squeeze = nn.Conv2d(16, 4, 1)
        self.excite = nn.Conv2d(4, 16, 1)
        self.conv2 = nn.Conv2d(16, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        s = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        return self.fc(F.relu(self.conv2(x * s)).mean((2, 3)))


class SplitChannels(nn.Module):
    """A conv whose output is split along channels by fixed sizes: whether the sizes follow the width cannot be told
    from the graph, so the group stays frozen (equal ``chunk`` pieces are followed, coupled)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = torch.split(self.conv(x), [3, 5], dim=1)
        return self.fc(self.conv2(a).mean((2, 3)))


class DataDependent(nn.Module):
    """A forward whose control flow depends on the input's values: no single trace describes it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.extra = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.mean() > 0:
            x = self.extra(x)
        return self.fc(x.mean((2, 3)))


class HardCodedWidth(nn.Module):
    """A forward that hard-codes a width in a view: shrinking the conv breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(F.relu(self.conv(x))).mean((2, 3))
        return self.fc(x.view(-1, 16))


class SpatialSoftmax(nn.Module):
    """A softmax over each channel's positions, through ``reshape(-1, h * w)``: the reshape merges the batch with
    the channels, which a batch of 1 hides (issue #20: its first conv was searchable at batch 1, frozen at 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, c, h, w = y.shape
        y = torch.softmax(y.reshape(-1, h * w), 1).view(n, c, h, w)
        return self.fc(F.relu(self.conv2(y)).mean((2, 3)))


class OneExampleOnly(nn.Module):
    """A forward that flattens the batch too (``x.flatten()``): it runs on a batch of 1 only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=4, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten()).unsqueeze(0)


class Chain(nn.Module):
    """Three convs in a chain, no residual."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(F.relu(self.conv0(x))))
        return self.fc(F.relu(self.conv2(y)).mean((2, 3)))


class ChainWithResidual(Chain):
    """The same layers and weights as :class:`Chain`; the forward adds a residual around ``conv1``, which couples
    ``conv0`` and ``conv1`` into one group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv0(x))
        y = F.relu(y + self.conv1(y))
        return self.fc(F.relu(self.conv2(y)).mean((2, 3)))


class OnlyLinear(nn.Module):
    """Nothing to search: the only layer produces the classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def trained_resnet() -> nn.Module:
    """Entry point: a deterministic "trained" ResNet."""
    torch.manual_seed(0)
    return randomise(ResNet())


def not_a_model() -> int:
    return 3
