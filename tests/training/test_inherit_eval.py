"""The inherit evaluation: BatchNorm re-estimation, fractional fine-tuning, checks and the early-stop rule."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sanas import SearchSpace, get_space
from sanas.search.early_stop import StopRule
from sanas.training import Recipe, Trainer, TrainingData, evaluate_candidate, prepare_data, train_final
from sanas.training.candidate import check_points


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return prepare_data("synthetic", train_size=400, test_size=40, channels=1, seed=0)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return get_space("PlainCNNSpace", filter_num=[4, 8, 16], layers=3, stem_channels=8)


@pytest.fixture(scope="module")
def parent(space: SearchSpace, data: TrainingData) -> nn.Module:
    """A parent trained far above chance (10 classes), so that scoring it with wrong statistics shows."""
    trainer = Trainer(space, [2, 2, 2], data, Recipe(retain_epoch=6, batch_size=32, device="cpu", cutout=0,
                                                     learning_rate=0.1))
    for _ in range(6):
        trainer.run_epoch()
    top1 = trainer.evaluate(*trainer.data.val())[1]
    assert top1 >= 0.8, f"the fixture parent reaches only {top1:.2f} held-out top-1"
    return trainer.net.to(memory_format=torch.contiguous_format).eval()


def inherit_recipe(**kw: Any) -> Recipe:
    return Recipe(**{"evaluation": "inherit", "retain_epoch": 0.5, "batch_size": 32, "device": "cpu", "cutout": 0,
                     "bn_batches": 4, **kw})


@pytest.mark.parametrize(("kw", "message"), [
    ({"evaluation": "finetune"}, r"evaluation is 'finetune', expected one of scratch, inherit"),
    ({"evaluation": "inherit", "retain_epoch": -1}, r"retain_epoch is -1, expected a number of fine-tuning epochs"),
    ({"evaluation": "inherit", "retain_epoch": float("nan")}, r"retain_epoch is nan"),
    ({"evaluation": "scratch", "retain_epoch": 2.5}, r"retain_epoch is 2.5, expected an integer >= 2"),
    ({"evaluation": "inherit", "bn_batches": -3}, r"bn_batches is -3, expected an integer >= 0"),
    ({"evaluation": "inherit", "finetune_lr": 0}, r"finetune_lr is 0, expected a positive number"),
    ({"evaluation": "inherit", "importance": "size"}, r"importance is 'size', expected one of bn, l1, group_l2"),
    ({"evaluation": "inherit", "stop_checks": 0}, r"stop_checks is 0, expected an integer >= 1"),
])
def test_recipe_rejects_bad_inherit_settings(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recipe(**kw)


def test_fractional_and_zero_epochs_are_allowed() -> None:
    assert Recipe(evaluation="inherit", retain_epoch=0).total_steps(1000) == 0
    assert Recipe(evaluation="inherit", retain_epoch=0.25, batch_size=100).total_steps(1000) == 2  # 2.5 rounds to 2


def test_same_tokens_without_bn_or_training_score_the_parent(space, data, parent) -> None:
    """An exact copy, scored as is, gets exactly the parent's held-out accuracy."""
    probe = Trainer(space, [2, 2, 2], data, Recipe(retain_epoch=2, batch_size=32, device="cpu"))
    probe.net.load_state_dict(parent.state_dict())
    want = probe.evaluate(*probe.data.val())[1]
    result = evaluate_candidate([2, 2, 2], space, data, inherit_recipe(retain_epoch=0, bn_batches=0),
                                progress="none", parent=parent)
    assert want >= 0.8 and result.ok and result.reward == want
    assert result.curve == [[0.0, want]] and result.epochs == 0 and not result.stopped and result.bn_batches == 0


def test_fine_tuning_runs_the_fraction_and_records_the_curve(space, data, parent) -> None:
    result = evaluate_candidate([0, 1, 2], space, data, inherit_recipe(retain_epoch=1.5, stop_checks=3),
                                progress="none", parent=parent)
    steps = Recipe(batch_size=32).steps_per_epoch(len(data.train()[1]))
    total = round(1.5 * steps)
    assert result.ok and result.epochs == pytest.approx(total / steps)
    assert [round(p[0] * steps) for p in result.curve] == [*check_points(total, 3), total]
    assert result.reward == result.curve[-1][1] and result.bn_batches == 4
    assert result.params == space.count_params([0, 1, 2])


def test_each_check_evaluates_the_held_out_split_once_and_prints_the_epochs_done(
        space, data, parent, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A check right after a pass reads the evaluation that ended the pass: a 1-epoch candidate with 2 checks
    evaluated the held-out split 5 times (3 scores), and printed its half-epoch passes as "epoch 1/1, epoch 2/1"."""
    calls = []
    evaluate = Trainer.evaluate

    def counted(self: Trainer, *args: Any, **kw: Any) -> Any:
        calls.append(len(args[1]))
        return evaluate(self, *args, **kw)

    monkeypatch.setattr(Trainer, "evaluate", counted)
    result = evaluate_candidate([0, 1, 2], space, data, inherit_recipe(retain_epoch=1, stop_checks=2),
                                progress="lines", parent=parent)
    assert result.ok and len(result.curve) == 3
    assert calls == [len(data.val()[1])] * 3  # at 0, after the first half, at the end
    lines = [line for line in capsys.readouterr().err.splitlines() if " epoch " in line]
    assert [line.split(" epoch ")[1].split()[0] for line in lines] == ["0.5/1", "1/1"]


def test_bn_reestimation_replaces_the_parents_statistics(space, data, parent) -> None:
    t = Trainer(space, [0, 1, 2], data, inherit_recipe(), parent=parent)
    before = t.net.cells[0][1].running_mean.clone()
    t.reestimate_bn(3)
    bn = t.net.cells[0][1]
    assert not torch.equal(before, bn.running_mean) and int(bn.num_batches_tracked) == 3
    assert bn.momentum == 0.1  # restored after the cumulative average


def test_zero_bn_batches_keep_the_inherited_statistics(space, data, parent) -> None:
    t = Trainer(space, [2, 2, 2], data, inherit_recipe(), parent=parent)
    before = {k: v.clone() for k, v in t.net.state_dict().items()}
    t.reestimate_bn(0)
    for k, v in t.net.state_dict().items():
        assert torch.equal(before[k], v), k


def test_reestimated_statistics_are_the_average_of_the_batch_moments(space, data, parent) -> None:
    """momentum=None: running mean = mean of the batches' means, running var = mean of their unbiased variances."""
    t = Trainer(space, [0, 1, 2], data, inherit_recipe(), parent=parent)
    bns = [m for m in t.net.modules() if isinstance(m, nn.BatchNorm2d)]
    seen: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in bns}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].detach().float())) for m in bns]
    t.reestimate_bn(3)
    for h in hooks:
        h.remove()
    for m in bns:
        assert len(seen[m]) == 3
        means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen[m]])
        variances = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in seen[m]])
        torch.testing.assert_close(m.running_mean, means.mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, variances.mean(0), rtol=1e-4, atol=1e-5)


def test_stop_rule_stops_at_the_first_hopeless_check(space, data, parent) -> None:
    hopeless = evaluate_candidate([0, 0, 0], space, data, inherit_recipe(retain_epoch=1),
                                  progress="none", parent=parent, stop_rule=StopRule(1.01, (0.0, 0.0)))
    assert hopeless.ok and hopeless.stopped and hopeless.epochs == 0 and len(hopeless.curve) == 1
    assert hopeless.reward == hopeless.curve[0][1] and hopeless.threshold == 1.01
    hopeful = evaluate_candidate([0, 0, 0], space, data, inherit_recipe(retain_epoch=1),
                                 progress="none", parent=parent, stop_rule=StopRule(0.0, (0.0, 0.0)))
    assert hopeful.ok and not hopeful.stopped and hopeful.epochs == 1 and len(hopeful.curve) == 3


def test_parent_from_a_sanas_train_folder(tmp_path: Path, space, data) -> None:
    train_final([2, 2, 2], space, data, Recipe(retain_epoch=2, batch_size=32, device="cpu"), tmp_path,
                progress="none", onnx=False)
    result = evaluate_candidate([1, 2, 0], space, data, inherit_recipe(), progress="none", parent=tmp_path)
    assert result.ok and 0 <= result.reward <= 1


def test_inherit_needs_a_parent_and_batchnorm(space, data, parent) -> None:
    with pytest.raises(ValueError, match="the inherit evaluation needs parent="):
        evaluate_candidate([0, 0, 0], space, data, inherit_recipe(), progress="none")
    with pytest.raises(FileNotFoundError, match=r"model\.json is missing"):
        evaluate_candidate([0, 0, 0], space, data, inherit_recipe(), progress="none", parent="/nonexistent")

    class NoBatchNormSpace(SearchSpace):
        name = "NoBatchNormSpace"

        def init_tokens(self) -> list[int]:
            return [0]

        def range_table(self) -> list[int]:
            return [2]

        def token2arch(self, tokens: Sequence[int]) -> nn.Module:
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

        def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str = "bn") -> nn.Module:
            return self.token2arch(tokens)

        def count_params(self, tokens: Sequence[int]) -> int:
            return 0

        def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
            return 0

        def config(self) -> dict[str, Any]:
            return {"name": self.name}

    with pytest.raises(ValueError, match="has no BatchNorm layer: the inherit evaluation re-estimates"):
        evaluate_candidate([0], NoBatchNormSpace(), data, inherit_recipe(), progress="none", parent=parent)


def test_scratch_training_is_unchanged_by_the_batch_stream(space, data) -> None:
    """Epoch-by-epoch training draws one shuffle per epoch, as before the inherit mode existed."""
    recipe = Recipe(retain_epoch=2, batch_size=32, device="cpu")
    a = Trainer(space, [1, 1, 1], data, recipe)
    a.run_epoch()
    a.run_epoch()
    b = Trainer(space, [1, 1, 1], data, recipe)
    b.run_epoch(steps=3)
    b.run_epoch(steps=b.steps_per_epoch - 3)
    b.run_epoch()
    for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_final_fine_tuning_from_the_parent_resumes_and_checks_the_parent(tmp_path: Path, space, data,
                                                                         parent) -> None:
    from sanas import load_model

    recipe = inherit_recipe(retain_epoch=2, finetune_lr=0.02)
    full = train_final([1, 2, 1], space, data, recipe, tmp_path / "a", progress="none", onnx=False, parent=parent)
    assert len(full.metrics) == 2 and load_model(tmp_path / "a").sanas_tokens == [1, 2, 1]
    # Stop after one epoch (the checkpoint is there), then resume: the same model as the uninterrupted run.
    (tmp_path / "b").mkdir()
    epochs = []

    class Stop(Exception):
        pass

    def stop_after_first(m: Any) -> None:
        epochs.append(m.epoch)
        raise Stop

    with pytest.raises(Stop):
        train_final([1, 2, 1], space, data, recipe, tmp_path / "b", progress="none", onnx=False, parent=parent,
                    on_epoch=stop_after_first)
    resumed = train_final([1, 2, 1], space, data, recipe, tmp_path / "b", resume=True, progress="none", onnx=False,
                          parent=parent)
    assert resumed.resumed_from_epoch == 1 and resumed.test_top1 == full.test_top1
    other = Trainer(space, [2, 2, 2], data, Recipe(retain_epoch=2, batch_size=32, device="cpu", seed=5)).net
    with pytest.raises(ValueError, match=r"belongs to a different run \(differs in: parent\)"):
        train_final([1, 2, 1], space, data, recipe, tmp_path / "b", resume=True, progress="none", onnx=False,
                    parent=other)
    with pytest.raises(ValueError, match="needs parent="):
        train_final([1, 2, 1], space, data, recipe, tmp_path / "c", progress="none", onnx=False)
