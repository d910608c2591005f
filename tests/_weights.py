"""Weights as a trained network has them, for tests that compare networks in eval mode."""

from __future__ import annotations

import torch
from torch import nn


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and scales (a fresh network's are identities); returned in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return net.eval()
