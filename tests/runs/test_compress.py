"""sanas.compress: a user's model and data in, the compressed model of the user's own class out, in one call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sanas
from sanas.training import load_model


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.slow
def test_compress_returns_the_users_class_under_budget_and_resumes(tmp_path):
    torch.manual_seed(0)
    net = SmallNet()
    data = sanas.prepare_data("synthetic", train_size=96, test_size=32, channels=1)
    budget = int(0.6 * sum(p.numel() for p in net.parameters()))
    kwargs = dict(budget=budget, epochs=1, run_dir=tmp_path / "run", search_steps=4, batch_size=16, device="cpu",
                  bn_batches=2, progress="none")
    out = sanas.compress(net, data, **kwargs)
    assert type(out.model) is SmallNet and not out.model.training
    assert out.params == sum(p.numel() for p in out.model.parameters()) <= budget
    assert out.parent_params == sum(p.numel() for p in net.parameters()) and out.ratio <= 0.6
    assert out.model.c1.out_channels < 16 or out.model.c2.out_channels < 32
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_model(out.run_dir / "final")(x), out.model(x), atol=1e-5)  # the program
    again = sanas.compress(net, data, **kwargs)  # the same call resumes: nothing is searched or trained again
    assert again.tokens == out.tokens and again.test_top1 == out.test_top1


def test_compress_refuses_a_missing_epochs_and_foreign_data(tmp_path):
    with pytest.raises(ValueError, match=r"epochs is None, expected the final fine-tune's epochs"):
        sanas.compress(SmallNet(), None, run_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"data is a list, expected the TrainingData of sanas.prepare_data"):
        sanas.compress(SmallNet(), [], epochs=2, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
