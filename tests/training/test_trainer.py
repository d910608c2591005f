"""The trainer: recipe checks, metrics and schedule, failures as results, learning on real Fashion-MNIST."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sanas import SearchSpace, get_space
from sanas.training import Recipe, Trainer, TrainingData, evaluate_candidate, prepare_data
from sanas.training.data import FASHION_MNIST_ROOT


def _tiny_space(**kw: object) -> SearchSpace:
    settings = {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4, "auxiliary": True, **kw}
    return get_space("DartsSpace", **settings)


@pytest.fixture(scope="module")
def tiny_data() -> TrainingData:
    return prepare_data("synthetic", train_size=200, test_size=40, seed=0)


def _recipe(**kw: object) -> Recipe:
    settings = {"retain_epoch": 3, "batch_size": 32, "device": "cpu", "learning_rate": 0.05, **kw}
    return Recipe(**settings)  # type: ignore[arg-type]


def test_recipe_defaults_are_the_paddleslim_demo() -> None:
    r = Recipe()
    assert (r.batch_size, r.retain_epoch, r.learning_rate, r.momentum, r.weight_decay, r.grad_clip, r.aux_weight,
            r.drop_path_prob, r.cutout) == (96, 30, 0.025, 0.9, 3e-4, 5.0, 0.4, 0.2, 16)


@pytest.mark.parametrize(("kw", "message"), [
    ({"retain_epoch": 1}, r"retain_epoch is 1, expected an integer >= 2"),
    ({"batch_size": 1}, r"batch_size is 1, expected an integer >= 2"),
    ({"learning_rate": 0.0}, r"learning_rate is 0.0, expected a positive number"),
    ({"finetune_lr": 0.0}, r"finetune_lr is 0.0, expected a positive number"),
    ({"drop_path_prob": 1.0}, r"drop_path_prob is 1.0, expected a number in \[0, 1\)"),
    ({"device": "gpu"}, r"gpu"),
])
def test_recipe_rejects_bad_settings(kw: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, RuntimeError), match=message):
        Recipe(**kw)  # type: ignore[arg-type]


def test_metrics_schedule_and_reward(tiny_data: TrainingData) -> None:
    space = _tiny_space()
    result = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(), progress="none")
    assert result.ok and result.reason == ""
    assert [m.epoch for m in result.metrics] == [0, 1, 2]
    assert result.reward == pytest.approx((result.metrics[-1].val_top1 + result.metrics[-2].val_top1) / 2)
    # Cosine from 0.05 to 0 over all steps, stepped per batch: the lr at the start of each epoch.
    steps = 180 // 32 + 1
    for m in result.metrics:
        expected = 0.05 * (1 + math.cos(math.pi * m.epoch * steps / (3 * steps))) / 2
        assert m.lr == pytest.approx(expected, rel=1e-6)
    assert [m.drop_path_prob for m in result.metrics] == pytest.approx([0.0, 0.2 / 3, 0.4 / 3])
    for m in result.metrics:
        assert 0 <= m.val_top1 <= m.val_top5 <= 1 and 0 <= m.train_top1 <= 1 and m.train_loss > 0
    assert result.params == space.count_params(space.init_tokens()) and result.device == "cpu"
    assert result.to_dict()["metrics"][0]["epoch"] == 0


def test_lr_reaches_zero_at_the_end(tiny_data: TrainingData) -> None:
    space = _tiny_space()
    trainer = Trainer(space, space.init_tokens(), tiny_data, _recipe(retain_epoch=2))
    trainer.run_epoch()
    trainer.run_epoch()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_result(tiny_data: TrainingData) -> None:
    space = _tiny_space()
    a = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(retain_epoch=2), progress="none")
    b = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(retain_epoch=2), progress="none")
    assert [m.train_loss for m in a.metrics] == [m.train_loss for m in b.metrics]
    assert a.reward == b.reward


def test_nan_loss_gives_a_failed_result_and_the_process_carries_on(tiny_data: TrainingData,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    space = _tiny_space()
    bad = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(learning_rate=1e12, grad_clip=1e30),
                             progress="lines")
    assert bad.status == "failed" and bad.reward is None and not bad.ok
    assert "non-finite training loss" in bad.reason
    assert "candidate failed: non-finite" in capsys.readouterr().err
    good = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(retain_epoch=2), progress="none")
    assert good.ok and good.reward is not None


def test_out_of_memory_gives_a_failed_result(tiny_data: TrainingData, monkeypatch: pytest.MonkeyPatch) -> None:
    space = _tiny_space()

    def oom(self: Trainer, *args: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Trainer, "train_epoch", oom)
    result = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(), progress="none")
    assert result.status == "failed" and result.reason.startswith("out of memory on cpu: CUDA out of memory")

    def bug(self: Trainer, *args: object) -> None:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(Trainer, "train_epoch", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug is not a candidate failure
        evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(), progress="none")


def test_invalid_tokens_and_channel_mismatch_raise(tiny_data: TrainingData) -> None:
    space = _tiny_space()
    with pytest.raises(ValueError, match="token at position 0 is 9"):
        evaluate_candidate([9, 0, 0], space, tiny_data, _recipe(), progress="none")
    grey = _tiny_space(in_channels=1)
    with pytest.raises(ValueError, match="the space expects 1 input channels, the synthetic images have 3"):
        evaluate_candidate(grey.init_tokens(), grey, tiny_data, _recipe(), progress="none")
    five = _tiny_space(num_classes=5)
    with pytest.raises(ValueError, match="the space has 5 classes, the synthetic labels have 10"):
        evaluate_candidate(five.init_tokens(), five, tiny_data, _recipe(), progress="none")


def test_progress_lines_and_quiet(tiny_data: TrainingData, capsys: pytest.CaptureFixture[str]) -> None:
    space = _tiny_space()
    evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(retain_epoch=2), progress="lines")
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "val loss" in err
    evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(retain_epoch=2), progress="none")
    assert capsys.readouterr().err == ""
    result = evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(retain_epoch=2), progress="bar")
    assert result.ok and "epoch 2/2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress is 'loud', expected 'auto', 'bar', 'lines' or 'none'"):
        evaluate_candidate(space.init_tokens(), space, tiny_data, _recipe(), progress="loud")  # type: ignore[arg-type]


def test_bf16_on_cpu_trains_contiguous_with_a_note(tiny_data: TrainingData,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    space = _tiny_space()
    trainer = Trainer(space, space.init_tokens(), tiny_data, _recipe(bf16=True, channels_last=True))
    assert "bf16 on CPU trains with contiguous tensors" in capsys.readouterr().err
    assert trainer.bf16 and not trainer.channels_last
    assert trainer.memory_format == torch.contiguous_format
    assert all(p.is_contiguous() for p in trainer.net.parameters())
    m = trainer.run_epoch()
    assert math.isfinite(m.train_loss)
    # Without bf16 the CPU keeps channels_last, and prints nothing about it.
    trainer = Trainer(space, space.init_tokens(), tiny_data, _recipe(channels_last=True))
    assert trainer.channels_last and not trainer.bf16
    assert "bf16" not in capsys.readouterr().err


@pytest.mark.slow
def test_five_cell_network_learns_fashion_mnist() -> None:
    # ~1 min on 2 idle cores: 2,000 training images, 4 epochs. Cutout and drop path are off because they slow
    # down a run this short; batch 32 and lr 0.1 give it enough steps. Seen: 78 % after 3 epochs (2 seeds).
    if not (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed in {FASHION_MNIST_ROOT}: apt-get install dataset-fashion-mnist")
    space = get_space("DartsSpace", layers=5, filter_num=[4, 8, 12, 16, 24, 32, 48, 64], init_channels=8,
                      in_channels=1, num_classes=10, auxiliary=True)
    data = prepare_data("fashion-mnist", train_subset=2000, val_subset=1000, seed=0)
    recipe = Recipe(retain_epoch=4, batch_size=32, learning_rate=0.1, cutout=0, drop_path_prob=0.0, device="cpu")
    result = evaluate_candidate(space.init_tokens(), space, data, recipe, progress="none")
    assert result.ok, result.reason
    assert result.metrics[-1].val_top1 >= 0.70, [m.val_top1 for m in result.metrics]
    assert result.reward >= 0.65


def test_four_wide_reduction_cell_trains_channels_last_on_cpu(tmp_path: Path) -> None:
    # torch's oneDNN backward of a stride-2 conv with < 8 input channels corrupts the heap when channels_last
    # (FactorizedReduce of a 4-wide reduction cell); the trainer must keep those convs contiguous. A crash
    # would kill pytest, so the training runs in a child process.
    script = tmp_path / "child.py"
    script.write_text(
        "from sanas import get_space\n"
        "from sanas.training import Recipe, evaluate_candidate, prepare_data\n"
        "space = get_space('DartsSpace', layers=3, filter_num=[4, 8, 16], init_channels=4)\n"
        "data = prepare_data('synthetic', train_size=300, test_size=20)\n"
        "r = evaluate_candidate([2, 0, 0], space, data, Recipe(retain_epoch=2, batch_size=32, device='cpu',\n"
        "                       channels_last=True), progress='none')\n"
        "print(r.status)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("batch", [25, 27])
def test_strided_convs_with_few_input_channels_get_exact_gradients_in_channels_last(batch: int) -> None:
    """torch 2.13's oneDNN 1x1 strided backward-weights kernel, channels_last on CPU, gives wrong weight gradients
    (or corrupts the heap) below one input-channel block (8 with AVX2, 16 with AVX-512): on an AVX2 machine,
    5-7 input channels at these batch sizes. The trainer runs such convs contiguous."""
    from torch import nn

    from sanas.training.trainer import CPU_CHANNELS_LAST_MIN_STRIDED_IN_CHANNELS, _avoid_cpu_channels_last_crash

    torch.manual_seed(0)
    for cin in range(2, CPU_CHANNELS_LAST_MIN_STRIDED_IN_CHANNELS + 2):
        conv = nn.Conv2d(cin, 8, 1, stride=2, bias=False)
        x = torch.randn(batch, cin, 16, 16)
        conv(x).square().sum().backward()
        net = nn.Sequential(nn.Conv2d(cin, 8, 1, stride=2, bias=False)).to(memory_format=torch.channels_last)
        net[0].weight.data.copy_(conv.weight.data)
        _avoid_cpu_channels_last_crash(net)
        net(x.to(memory_format=torch.channels_last)).square().sum().backward()
        assert torch.allclose(net[0].weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-3), cin
