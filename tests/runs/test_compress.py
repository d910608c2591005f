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
    with pytest.raises(ValueError, match=r"data is a list, expected sanas.prepare_data\(...\)'s TrainingData, a "
                                         r"sanas Dataset, or a torch Dataset of \(image, label\)"):
        sanas.compress(SmallNet(), [], epochs=2, run_dir=tmp_path / "run")
    class Local(SmallNet):
        pass

    with pytest.raises(ValueError, match=r"model: .*Local cannot be imported by name in the processes that train "
                                         r"the candidates .*; define it at the top level of a module"):
        sanas.compress(Local(), TorchImages(), epochs=2, run_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"evaluate: .*<lambda> cannot be imported by name"):
        sanas.compress(SmallNet(), TorchImages(), epochs=2, run_dir=tmp_path / "run", evaluate=lambda m: 1.0)
    assert not (tmp_path / "run").exists()


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.c2, self.b2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.down = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ImageNet's ResNet-18 shape (7×7 stem with stride 2, max pool, four stages of two blocks), narrow."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 24, 32), classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [Block(c, w, 1 if i == 0 else 2), Block(w, w, 1)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


@pytest.mark.slow
def test_an_imagenet_shaped_model_is_counted_exactly_and_compressed_at_224(tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    net = ResNet18()
    data = sanas.prepare_data("synthetic", train_size=48, test_size=16, input_size=(224, 224))
    space = sanas.get_space("ModelSpace", model=net, example_input=[3, 224, 224])
    for tokens in ([0] * len(space.range_table()), space.init_tokens()):
        child = space.inherit(net, tokens).eval()
        assert space.count_params(tokens) == sum(p.numel() for p in child.parameters())
        with FlopCounterMode(display=False) as flops, torch.no_grad():
            child(torch.zeros(1, 3, 224, 224))
        assert space.count_macs(tokens) == flops.get_total_flops() // 2
    out = sanas.compress(net, data, budget="0.5x", epochs=1, run_dir=tmp_path / "run", search_steps=3, batch_size=8,
                         device="cpu", bn_batches=2, progress="none")
    assert type(out.model) is ResNet18 and out.ratio <= 0.5
    program = load_model(out.run_dir / "final")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(program(x), out.model(x), atol=1e-4)


class TorchImages(torch.utils.data.Dataset):
    """A user's own torch Dataset: 1×32×32 float images in [0, 1] whose class is the bright row band."""

    def __len__(self) -> int:
        return 60

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(i)) * 0.3
        image[:, (i % 3) * 10:(i % 3) * 10 + 8] += 0.6
        return image, i % 3


class Three(SmallNet):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 3)


@pytest.mark.slow
def test_compress_takes_a_torch_dataset(tmp_path):
    out = sanas.compress(Three(), TorchImages(), budget="0.7x", epochs=1, run_dir=tmp_path / "run", search_steps=2,
                         batch_size=8, device="cpu", bn_batches=1, progress="none")
    assert type(out.model) is Three and out.ratio <= 0.7 and 0 <= out.test_top1 <= 1
