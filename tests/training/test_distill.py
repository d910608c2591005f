"""Distillation from the parent while fine-tuning (issue #19, item 3): the recipe's checks, the loss (Hinton et
al.: ``(1 − α)·CE + α·T²·KL(teacher ‖ student)``, the auxiliary head on plain CE, the per-rank share of a
data-parallel job), the frozen teacher, that it pulls a student towards the parent, and an exact resume."""

from __future__ import annotations

import copy
import dataclasses
import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sanas import SearchSpace, get_space
from sanas.runs.config import RunConfig
from sanas.training import EpochMetrics, Recipe, Trainer, TrainingData, evaluate_candidate, prepare_data, train_final
from sanas.training.augment import normalize

TOKENS = [2, 2, 2]  # the parent's


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return prepare_data("synthetic", train_size=400, test_size=200, channels=1, seed=0)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return get_space("PlainCNNSpace", filter_num=[4, 8, 16], layers=3, stem_channels=8)


def _train(space: SearchSpace, data: TrainingData, epochs: int) -> nn.Module:
    trainer = Trainer(space, TOKENS, data, Recipe(retain_epoch=epochs, batch_size=32, device="cpu", cutout=0,
                                                  learning_rate=0.1))
    for _ in range(epochs):
        trainer.run_epoch()
    return trainer.net.to(memory_format=torch.contiguous_format).eval()


@pytest.fixture(scope="module")
def parent(space: SearchSpace, data: TrainingData) -> nn.Module:
    return _train(space, data, 3)


def inherit_recipe(**kw: Any) -> Recipe:
    return Recipe(**{"evaluation": "inherit", "retain_epoch": 1, "batch_size": 32, "device": "cpu", "cutout": 0,
                     "bn_batches": 4, **kw})


# --- the recipe ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "message"), [
    ({"distill": 1.5}, r"^distill is 1.5, expected a weight in \[0, 1\] \(0 = off\)$"),
    ({"distill": -0.1}, r"^distill is -0.1, expected a weight in \[0, 1\]"),
    ({"distill": float("nan")}, r"^distill is nan, expected a weight in \[0, 1\]"),
    ({"distill": True}, r"^distill is True, expected a weight in \[0, 1\]"),
    ({"distill": "0.5"}, r"^distill is '0.5', expected a weight in \[0, 1\]"),
    ({"distill_temperature": 0}, r"^distill_temperature is 0, expected a temperature > 0$"),
    ({"distill_temperature": -2.0}, r"^distill_temperature is -2.0, expected a temperature > 0$"),
    ({"distill_temperature": float("inf")}, r"^distill_temperature is inf, expected a temperature > 0$"),
    ({"distill_temperature": float("nan")}, r"^distill_temperature is nan, expected a temperature > 0$"),
])
def test_recipe_rejects_bad_distillation_settings(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inherit_recipe(**kw)


def test_distillation_is_off_by_default_and_needs_a_parent(space, data, parent) -> None:
    r = Recipe()
    assert (r.distill, r.distill_temperature) == (0.0, 4.0)
    assert inherit_recipe(distill=1, distill_temperature=1).distill == 1  # both ends of the range are weights
    with pytest.raises(ValueError, match=r"^distill is 0.5 but the scratch evaluation has no parent to distil "
                                         r"from: distillation needs --evaluation inherit with a trained parent "
                                         r"\(--parent\)$"):
        Recipe(distill=0.5)
    with pytest.raises(ValueError, match=r"^distill is 0.5 but there is no parent to distil from"):
        Trainer(space, TOKENS, data, inherit_recipe(distill=0.5))
    assert Trainer(space, TOKENS, data, Recipe(batch_size=32, device="cpu")).teacher is None  # scratch: no teacher
    # No fine-tuning step (BatchNorm re-estimation only): nothing to distil, no copy of the parent made.
    assert Trainer(space, TOKENS, data, inherit_recipe(distill=0.5, retain_epoch=0), parent=parent).teacher is None


def test_toml_and_flags_reach_the_recipe(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[data]\ndataset = "synthetic"\n[recipe]\nevaluation = "inherit"\ndistill = 0.5\n'
                    'distill_temperature = 2.0\n')
    recipe = RunConfig.from_sources(toml).build_recipe()
    assert (recipe.distill, recipe.distill_temperature) == (0.5, 2.0)
    from sanas.cli import build_parser, overrides_from_args

    args = build_parser().parse_args(["search", "--evaluation", "inherit", "--distill", "0.3",
                                      "--distill-temperature", "3"])
    assert overrides_from_args(args)["recipe"] == {"evaluation": "inherit", "distill": 0.3, "distill_temperature": 3.0}
    toml.write_text('[data]\ndataset = "synthetic"\n[recipe]\nevaluation = "inherit"\ndistill = 1.5\n')
    with pytest.raises(ValueError, match=r"distill is 1.5"):
        RunConfig.from_sources(toml)


# --- the loss --------------------------------------------------------------------------------------------------
def _hinton(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, alpha: float, t: float) -> torch.Tensor:
    """The reference, written out: per sample Σ_k p_k (log p_k − log q_k), p the teacher's and q the student's
    softened distributions, averaged over the batch."""
    p = torch.softmax(teacher.double() / t, dim=1)
    log_q = torch.log_softmax(student.double() / t, dim=1)
    kl = (p * (p.log() - log_q)).sum(1).mean()
    return (1 - alpha) * F.cross_entropy(student.double(), y) + alpha * t * t * kl


def test_the_objective_is_hintons_loss_and_the_aux_head_stays_on_labels(space, data, parent) -> None:
    t = Trainer(space, TOKENS, data, inherit_recipe(distill=0.3, distill_temperature=2.5), parent=parent)
    g = torch.Generator().manual_seed(0)
    student, aux, teacher = (3 * torch.randn(10, 10, generator=g) for _ in range(3))
    y = torch.randint(0, 10, (10,), generator=g)
    want = _hinton(student, teacher, y, 0.3, 2.5) + t.recipe.aux_weight * F.cross_entropy(aux.double(), y)
    loss, logits = t._objective((student, aux), y, teacher=teacher)
    assert logits is student
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)
    # Same logits, nothing to learn: the distillation term is exactly 0 at α = 1.
    one = Trainer(space, TOKENS, data, inherit_recipe(distill=1.0), parent=parent)
    assert float(one._objective(student, y, teacher=student.clone())[0]) == pytest.approx(0.0, abs=1e-6)


def test_the_distillation_term_of_a_rank_is_its_share_of_the_global_batch(space, data, parent) -> None:
    """Data-parallel: DistributedDataParallel averages the ranks' gradients, so the mean of the ranks' losses
    must be the one-process loss of the global batch, even on uneven slices (6 + 4 here)."""
    t = Trainer(space, TOKENS, data, inherit_recipe(distill=0.6), parent=parent)
    g = torch.Generator().manual_seed(1)
    student = torch.randn(10, 10, generator=g, requires_grad=True)
    teacher, y = 2 * torch.randn(10, 10, generator=g), torch.randint(0, 10, (10,), generator=g)
    whole = t._objective(student, y, teacher=teacher)[0]
    (grad_whole,) = torch.autograd.grad(whole, student)
    t.launch, t.world_size, t._global_batch = types.SimpleNamespace(), 2, 10  # what _objective reads of a launch
    ranks = [t._objective(student[s], y[s], teacher=teacher[s])[0] for s in (slice(0, 6), slice(6, 10))]
    mean = (ranks[0] + ranks[1]) / 2
    (grad_ranks,) = torch.autograd.grad(mean, student)
    torch.testing.assert_close(mean, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_ranks, grad_whole, rtol=1e-6, atol=1e-7)


def test_without_distillation_a_step_is_the_plain_cross_entropy_step(space, data, parent) -> None:
    """α = 0 is today's training, bit for bit: no teacher, and the weights after a step are those of a plain
    cross-entropy SGD step written out here."""
    t = Trainer(space, [1, 2, 0], data, inherit_recipe(distill=0.0, augment=False), parent=parent)
    assert t.teacher is None
    ref = copy.deepcopy(t.net).train()
    r = t.recipe
    optimizer = torch.optim.SGD(ref.parameters(), lr=r.finetune_lr, momentum=r.momentum, weight_decay=r.weight_decay)
    order = torch.randperm(len(t.train_labels), generator=torch.Generator().set_state(t.generator.get_state()))
    idx = order[:r.batch_size]
    t.train_epoch(steps=1)
    x = normalize(t.train_images[idx], data.dataset.mean, data.dataset.std).contiguous(memory_format=t.memory_format)
    out = ref(x)
    logits = out[0] if isinstance(out, tuple) else out
    F.cross_entropy(logits.float(), t.train_labels[idx]).backward()
    nn.utils.clip_grad_norm_(ref.parameters(), r.grad_clip)
    optimizer.step()
    a, b = t.net.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- the teacher -----------------------------------------------------------------------------------------------
def test_the_teacher_is_a_frozen_copy_of_the_parent(space, data, parent) -> None:
    """Even of a parent handed over in training mode: the teacher is in eval mode, the caller's module untouched."""
    parent = copy.deepcopy(parent).train()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    grads = [p.requires_grad for p in parent.parameters()]
    assert all(grads)
    t = Trainer(space, [1, 1, 1], data, inherit_recipe(distill=0.5), parent=parent)
    assert t.teacher is not None and t.teacher is not parent and not t.teacher.training
    assert not any(p.requires_grad for p in t.teacher.parameters())
    conv = next(m for m in t.teacher.modules() if isinstance(m, nn.Conv2d) and m.in_channels >= 16)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == t.channels_last
    t.run_epoch()
    # Neither the teacher (BatchNorm statistics included) nor the caller's parent moved.
    for k, v in t.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in parent.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in parent.parameters()] == grads and parent.training


def test_a_copy_of_the_parent_starts_with_almost_no_distillation_loss(space, data, parent) -> None:
    """α = 1, the parent's own tokens and statistics (bn_batches=0): the first step's loss is T²·KL between the
    parent in eval mode and the student in train mode (batch statistics) on the same augmented batch: ~0."""
    t = Trainer(space, TOKENS, data, inherit_recipe(distill=1.0, bn_batches=0), parent=parent)
    seen: dict[str, torch.Tensor] = {}
    t.net.register_forward_hook(lambda _m, args, out: seen.update(x=args[0], student=out[0].detach()))
    t.teacher.register_forward_hook(lambda _m, args, out: seen.update(teacher_x=args[0], teacher=out))  # type: ignore[union-attr]
    loss, _ = t.train_epoch(steps=1)
    assert seen["teacher_x"] is seen["x"]  # the batch the student sees, augmentation and all
    with torch.no_grad():
        # The parent in eval mode (channels_last kernels round differently from contiguous ones).
        torch.testing.assert_close(seen["teacher"], parent(seen["x"].contiguous()), rtol=1e-4, atol=1e-5)
    p = torch.softmax(seen["teacher"].double() / 4, dim=1)
    want = float(16 * (p * (p.log() - torch.log_softmax(seen["student"].double() / 4, dim=1))).sum(1).mean())
    assert loss == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert 0 <= loss < 0.01
    # A cut child is far from the parent at its first step.
    cut = Trainer(space, [0, 0, 0], data, inherit_recipe(distill=1.0, bn_batches=0), parent=parent)
    assert cut.train_epoch(steps=1)[0] > max(0.05, 20 * loss)


def test_distillation_pulls_the_student_towards_the_parents_predictions(space, data) -> None:
    """A parent trained on shifted labels (class c called c + 1) disagrees with every label: a cut child fine-tuned
    on the true labels agrees with it more when distilled from it, which learning the labels cannot explain."""
    ds = data.dataset
    shifted = TrainingData(dataclasses.replace(ds, train_labels=(ds.train_labels + 1) % 10,
                                               test_labels=(ds.test_labels + 1) % 10),
                           data.train_indices, data.val_indices)
    parent = _train(space, shifted, 6)
    images, labels = data.test()  # never trained on
    x = normalize(images, ds.mean, ds.std)
    with torch.no_grad():
        wanted = parent(x).argmax(1)
    assert (wanted == (labels + 1) % 10).float().mean() > 0.9

    def agreement(alpha: float) -> float:
        t = Trainer(space, [1, 1, 1], data, inherit_recipe(distill=alpha), parent=parent)
        t.run_epoch()
        t.net.eval()
        with torch.no_grad():
            return float((t.net(x.contiguous(memory_format=t.memory_format)).argmax(1) == wanted).float().mean())

    plain, distilled = agreement(0.0), agreement(0.7)
    assert distilled > plain + 0.1, (plain, distilled)


def test_evaluate_candidate_distils(space, data, parent) -> None:
    plain = evaluate_candidate([1, 1, 1], space, data, inherit_recipe(distill=0.0, early_stop=False), progress="none",
                               parent=parent)
    distilled = evaluate_candidate([1, 1, 1], space, data, inherit_recipe(distill=0.5), progress="none",
                                   parent=parent)
    assert plain.ok and distilled.ok
    assert distilled.metrics[0].train_loss != plain.metrics[0].train_loss


# --- final training: resume ------------------------------------------------------------------------------------
DARTS = {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4, "auxiliary": True}
FINAL_DATA = {"train_size": 128, "test_size": 40, "seed": 0}


class _Crash(Exception):
    pass


def _final(tmp_path: Path, name: str, recipe: Recipe, parent: nn.Module, **kw: Any) -> Any:
    space = get_space("DartsSpace", **DARTS)
    data = prepare_data("synthetic", **FINAL_DATA)
    return train_final([2, 1, 2], space, data, recipe, tmp_path / name, progress="none", onnx=False, parent=parent,
                       **kw)


@pytest.fixture(scope="module")
def darts_parent() -> nn.Module:
    space = get_space("DartsSpace", **DARTS)
    trainer = Trainer(space, space.init_tokens(), prepare_data("synthetic", **FINAL_DATA),
                      Recipe(retain_epoch=2, batch_size=32, learning_rate=0.05, device="cpu"))
    trainer.run_epoch()
    return trainer.net.eval()


def _final_recipe(**kw: Any) -> Recipe:
    return Recipe(**{"evaluation": "inherit", "retain_epoch": 2, "batch_size": 32, "bn_batches": 2,
                     "device": "cpu", **kw})


def _crash_after(epoch: int) -> Any:
    def crash(m: EpochMetrics) -> None:
        if m.epoch == epoch:
            raise _Crash

    return crash


def test_a_resumed_distilled_final_training_equals_an_uninterrupted_one(tmp_path: Path, darts_parent) -> None:
    """The DARTS network has an auxiliary head; the teacher is rebuilt from the parent when the run resumes (a
    teacher taken from anything that moves during the run, the student say, would not resume exactly)."""
    recipe = _final_recipe(distill=0.5)
    straight = _final(tmp_path, "straight", recipe, darts_parent)
    with pytest.raises(_Crash):
        _final(tmp_path, "resumed", recipe, darts_parent, on_epoch=_crash_after(0))
    resumed = _final(tmp_path, "resumed", recipe, darts_parent, resume=True)
    assert resumed.resumed_from_epoch == 1
    strip = [{k: v for k, v in m.to_dict().items() if k != "seconds"} for m in straight.metrics]
    assert [{k: v for k, v in m.to_dict().items() if k != "seconds"} for m in resumed.metrics] == strip
    assert resumed.test_top1 == straight.test_top1
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((tmp_path / "straight" / "model.json").read_text())
    assert (info["recipe"]["distill"], info["recipe"]["distill_temperature"]) == (0.5, 4.0)
    # Distilled or not, and how, is part of what a checkpoint computes: another weight is another run.
    for other in (_final_recipe(distill=0.2), _final_recipe(distill=0.5, distill_temperature=2.0)):
        with pytest.raises(ValueError, match=r"belongs to a different run \(differs in: recipe\)"):
            _final(tmp_path, "straight", other, darts_parent, resume=True)


def test_a_checkpoint_from_before_distillation_resumes_without_it(tmp_path: Path, darts_parent) -> None:
    """A checkpoint written before the distill settings existed meant no distillation: it resumes with distill 0,
    and not with today's default for a fine-tune from the parent (0.5)."""
    recipe = _final_recipe(distill=0.0)
    with pytest.raises(_Crash):
        _final(tmp_path, "old", recipe, darts_parent, on_epoch=_crash_after(0))
    path = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    identity = json.loads(state["identity"])
    del identity["recipe"]["distill"], identity["recipe"]["distill_temperature"]
    state["identity"] = json.dumps(identity)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"differs in: recipe"):
        _final(tmp_path, "old", _final_recipe(), darts_parent, resume=True)
    assert _final(tmp_path, "old", recipe, darts_parent, resume=True).resumed_from_epoch == 1
