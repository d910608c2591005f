"""Compress a user's trained CNN to a parameter budget: Torch-Pruning one-shot vs sanas' search (issue 19).

Three networks defined here — a CIFAR-style ResNet-20, a MobileNetV2-style network (inverted residuals,
depthwise convs) and VGG-11 with BatchNorm at half width (its parameters in the late layers, its MACs in the
early ones) — are trained on Fashion-MNIST to a plateau (the *parent*, what a user arrives with: seed 0, trained
once by ``--parents-only`` or on first use, its epochs reported but not charged). Then for each budget
(``--budget-ratio``, × the parent's parameters) and seed the parent is compressed three ways, each followed by
**the same final fine-tune**: sanas' ``train_final`` from the compressed network with the product's defaults
(``Recipe(evaluation="inherit")``: BatchNorm re-estimated, :func:`final_epochs` epochs — a quarter of the parent's,
the default then — at the default fine-tuning rate, distillation from the parent as the product does by default;
each record names the cutout its fine-tune ran with — 16 in the committed runs, none since fine-tunes from the
parent stopped using it, which ``no_cutout.py`` measures on these searches):

* **(a1) Torch-Pruning 1.6.1, one-shot** (``BasePruner``, group L2 magnitude importance, the classifier ignored),
  the pruning ratio bisected to the largest that fits the budget: the same ratio in every layer;
  **(a2)** the same with its global magnitude ranking (``global_pruning=True``).
* **(b) sanas with its defaults**: ``ModelSpace`` over the parent (default granularity and ratio grid), SA with the
  default budget-filling moves starting from the parent's widths repaired into the budget band, every candidate
  inherited and scored as the default recipe says, the default finalists fine-tuned, the chosen one fine-tuned
  like (a). The one stated knob: ``--candidates`` evaluations per search instead of the 300 default (a CPU).
* **(c), where ``--variants`` asks**: (b) with another channel criterion (``importance``) in its search and its
  fine-tune — how ``ModelSpace``'s default (filter L1 norms, once BatchNorm |γ|) was chosen. A run's record names
  the criterion each sanas method ran with; (b)'s records from before they did ran with |γ|.
* **(d), where ``--variants sanas_stage`` asks**: sanas with the defaults of when it runs, but one token per stage
  (``ModelSpace(granularity="stage")``: groups of the same trained width, feature-map size and kind share one)
  instead of one per channel group — issue 19's item 6. Each sanas record names its criterion, granularity and
  whether the search's start was among its finalists (``finalist_start``, the default since (b) and (c) ran).
* **Where ``--variants sanas_quarter`` asks**: the schedule before the multi-fidelity one, at equal epochs
  (issue 19's item 4): every candidate fine-tuned ¼ epoch with the SA-aware early stop and the best reward chosen
  (no finalists), SA going on until its search has spent what today's search (``sanas_group_l2``, run first) spent
  on the same seed (:data:`EQUAL_EPOCHS`). The same final fine-tune as every method.

Rewards and every choice come from a held-out split of the training set (``--val-subset`` images, never trained
on); the test set (10,000 images) is evaluated once per final model. Every pass is charged (:mod:`harness`'s
PassMeter): training images, and forward-only images — BatchNorm re-estimation, every held-out and test
evaluation, distillation's teacher — at a third of a training image; epochs are those passes over the training
subset. Wall-clock seconds beside.

    .venv/bin/pip install torch-pruning==1.6.1                  # the baseline (a) only
    nice .venv/bin/python benchmarks/compress_models.py --models resnet20 --budget-ratio 0.5   # resumable
    nice .venv/bin/python benchmarks/compress_models.py --models resnet20 --control          # the (p) row
    .venv/bin/python benchmarks/compress_models.py --summary --budget-ratio 0.5               # the table

Results: ``benchmarks/data/compress_models_<ratio>.md`` / ``.json`` (committed), and every finished run's record
in ``benchmarks/data/compress_models_runs/`` (committed as they finish, so the 27 runs span sessions); parents,
studies and checkpoints in ``benchmarks/results/compress_v2/`` (not committed; a parent is retrained, seed 0,
where it is missing, and its weights' digest is checked against the committed one).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import harness
from harness import (
    PassMeter,
    Record,
    beats,
    criterion,
    done,
    mean_std,
    method_row,
    provenance,
    relative,
    within_one_std,
)
from sanas.atomic import atomic_write_text
from sanas.spaces import ModelSpace, SearchSpace
from sanas.spaces.model import weights_digest
from sanas.training import Recipe, train_final
from sanas.training.data import TrainingData
from sanas.training.final import EARLIER_FINAL_FRACTION
from sanas.training.final import final_epochs as product_final_epochs
from sanas.training.recipe import CUTOUT_BEFORE

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "results" / "compress_v2"
RUNS_DIR = HERE / "data" / "compress_models_runs"
OUT = HERE / "data" / "compress_models"
METHODS = {"tp_uniform": "(a1) Torch-Pruning, uniform ratio", "tp_global": "(a2) Torch-Pruning, global ranking",
           "sanas": "(b) sanas, defaults"}
# sanas with its defaults but one setting changed, run beside (b) where ``--variants`` asks, to choose a default from
# the numbers: the method's key -> the settings it changes (``importance``: the channel criterion, in the search and
# the fine-tune; ``granularity``: ModelSpace's tokens).
VARIANTS: dict[str, dict[str, str]] = {"sanas_l1": {"importance": "l1"}, "sanas_bn": {"importance": "bn"},
                                       "sanas_stage": {"granularity": "stage"},
                                       "sanas_group_l2": {"importance": "group_l2"},
                                       "sanas_quarter": {"retain_epoch": "0.25", "finalists": "0"}}
# Variants that change the schedule run at equal epochs (issue 19's item 4): their SA goes on, candidate after
# candidate, until its search has spent the epochs the search of the method named here spent on the same seed (so
# that method runs first: ``--variants sanas_group_l2,sanas_quarter``). ``sanas_quarter`` is the schedule before
# the multi-fidelity one: every candidate fine-tuned ¼ epoch (with the SA-aware early stop) and the best reward
# chosen, no finalists; against today's — every candidate scored right after BatchNorm re-estimation, the best four
# and the start fine-tuned one epoch as finalists.
EQUAL_EPOCHS = {"sanas_quarter": "sanas_group_l2"}
# A control where ``--control`` asks: the parent itself, uncompressed, given the same final fine-tune as every
# compressed network (the same recipe, seeds and teacher). It separates what the fine-tune costs a converged
# network from what compression costs: a method within reach of this row is as close to the parent as the
# fine-tune lets any network end. Budget-free, so its records live in ``<net>/control/``.
CONTROL = "parent_finetuned"
CONTROL_LABEL = "(p) the parent itself, given the same final fine-tune (control)"
PARENT_KEYS = ("epochs", "lr", "batch_size", "params", "macs", "val_curve", "test_top1", "seconds")  # parent.json


# --- the two networks ---------------------------------------------------------------------------------------------
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


class ResNet20(nn.Module):
    """He et al.'s CIFAR ResNet-20: three stages of three basic blocks, 16/32/64 channels."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, c = [], 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(3):
                layers.append(BasicBlock(c, width, 2 if i > 0 and j == 0 else 1))
                c = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = [] if expand == 1 else [
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """A MobileNetV2 for 32×32 images: stride-1 stem, inverted residuals (expansion 6) over four resolutions."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 2, 1))  # (t, c, n, s)

    def __init__(self, in_channels: int = 1, num_classes: int = 10, last: int = 384) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
                                   nn.ReLU6(inplace=True)]
        c = 32
        for t, width, n, s in self.STAGES:
            for i in range(n):
                layers.append(InvertedResidual(c, width, s if i == 0 else 1, t))
                c = width
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class VGG11(nn.Module):
    """VGG-11 with BatchNorm (Simonyan & Zisserman's configuration A) at half width for 32×32 images: eight 3×3
    convs, 32-64-128-128-256-256-256-256 channels, five max-pools, one linear classifier. Its parameters sit in
    the late layers and its MACs in the early ones: the classic case of very uneven redundancy."""

    CONFIG = (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M")

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in self.CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)),
                           nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


MODELS = {"resnet20": ResNet20, "mobilenetv2": MobileNetV2, "vgg11": VGG11}



# --- helpers --------------------------------------------------------------------------------------------------------
class FixedNet(SearchSpace):
    """One architecture: a pruned network, so that sanas' trainer fine-tunes it from the parent exactly like (b)'s
    child (the same recipe, the same teacher)."""

    name = "FixedNet"

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def init_tokens(self) -> list[int]:
        return [0]

    def range_table(self) -> list[int]:
        return [1]

    def token2arch(self, tokens: Sequence[int]) -> nn.Module:
        return copy.deepcopy(self.net)

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str | None = None) -> nn.Module:
        # The pruned network whatever the parent: the parent given to the fine-tune is the original one, so that
        # a distilling fine-tune learns from it, as sanas' child does.
        return copy.deepcopy(self.net)

    def count_params(self, tokens: Sequence[int]) -> int:
        return params(self.net)

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return macs(self.net)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


def final_epochs(parent_epochs: float) -> int:
    """The final fine-tune's epochs in every table here and in its companions (``no_cutout.py``,
    ``criterion_widths.py``, ``finalist_start.py``): a quarter of the parent's (``EARLIER_FINAL_FRACTION``), the
    product's default when they were measured, so that a resumed run pairs with the committed ones. The product's
    default is half now (``DEFAULT_FINAL_FRACTION``, chosen on ``inherit_e2e.py``'s row L and ``final_curve.py``)."""
    return product_final_epochs(parent_epochs, EARLIER_FINAL_FRACTION)


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def macs(net: nn.Module) -> int:
    was_training = net.training
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(torch.zeros(1, 1, 32, 32))
    net.train(was_training)
    return counter.get_total_flops() // 2


def classifier(net: nn.Module) -> nn.Module:
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


def tp_prune(parent: nn.Module, budget: int, global_pruning: bool) -> tuple[nn.Module, float]:
    """Torch-Pruning one-shot at the largest pruning ratio (bisected) whose network fits ``budget``."""
    import torch_pruning as tp

    lo, hi, best = 0.0, 0.95, None
    for _ in range(14):
        ratio = (lo + hi) / 2
        net = copy.deepcopy(parent)
        pruner = tp.pruner.BasePruner(net, torch.zeros(1, 1, 32, 32),
                                      importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                      global_pruning=global_pruning, ignored_layers=[classifier(net)])
        pruner.step()
        if params(net) <= budget:
            best, hi = (net, ratio), ratio
        else:
            lo = ratio
    assert best is not None, "no pruning ratio fits the budget"
    return best


def tp_finetuned(parent: nn.Module, budget: int, global_pruning: bool, data: TrainingData, seed: int, epochs: float,
                 work: Path, committed_params: int | None = None, label: str = "") -> dict[str, Any]:
    """Torch-Pruning's child at ``budget`` (:func:`tp_prune`) through the final fine-tune of ``epochs`` in ``work``.
    A run that pairs with a committed one passes that one's ``committed_params``: a pruning that does not reproduce
    them stops it (``RuntimeError`` naming ``label``)."""
    t0 = time.perf_counter()
    pruned, prune_ratio = tp_prune(parent, budget, global_pruning)
    prune_seconds = time.perf_counter() - t0
    if committed_params is not None and params(pruned) != committed_params:
        raise RuntimeError(f"{label}: pruned to {params(pruned):,} params, committed {committed_params:,}: this "
                           f"machine does not reproduce the pruning; stopping")
    out = finetune(FixedNet(pruned), [0], parent, data, seed, epochs, work)
    out.update(ratio=prune_ratio, prune_seconds=round(prune_seconds, 1), search=PassMeter().to_dict(1))
    return out


def final_recipe(seed: int, epochs: float, importance: str | None = None) -> Recipe:
    """The final fine-tune of every method: the product's defaults for a fine-tune from the parent (``importance``:
    which channels a sanas child keeps; Torch-Pruning's children are already pruned)."""
    return Recipe(evaluation="inherit", retain_epoch=epochs, seed=seed, device="cpu", importance=importance)


def finetune(space: SearchSpace, tokens: list[int], parent: nn.Module, data: TrainingData, seed: int, epochs: float,
             out: Path, importance: str | None = None, committed_params: int | None = None,
             label: str = "") -> dict[str, Any]:
    """``train_final`` from the parent (resumable in ``out``); the test set is evaluated once, at its end. A run
    that pairs with a committed one passes that one's ``committed_params``: a child that does not have them stops it
    before the fine-tune (``RuntimeError`` naming ``label``), as :func:`tp_finetuned` checks its pruning."""
    net = space.inherit(parent, tokens, importance)
    if committed_params is not None and params(net) != committed_params:
        raise RuntimeError(f"{label}: the child has {params(net):,} params, committed {committed_params:,}; stopping")
    recipe = final_recipe(seed, epochs, importance)
    meter = PassMeter()
    with meter.active():
        result = train_final(tokens, space, data, recipe, out, resume=True, progress="none", onnx=False,
                             parent=parent)
    return {"test_top1": result.test_top1, "val_top1": result.metrics[-1].val_top1, "params": params(net),
            "macs": macs(net), "final": meter.to_dict(len(data.train_indices)), "cutout": recipe.cutout}


def cutouts(states: Sequence[dict[str, Any]], methods: Iterable[str]) -> str:
    """The final fine-tunes' cutouts of ``methods`` across ``states``, in words."""
    seen = sorted({s[m].get("cutout", CUTOUT_BEFORE) for s in states for m in methods if m in s})
    return " and ".join(map(str, seen)) if seen else "—"


def parent_recipe(args: argparse.Namespace) -> Recipe:
    """How every parent is trained from scratch (seed 0); a ``ValueError`` names a setting the recipe refuses."""
    return Recipe(retain_epoch=args.parent_epochs, batch_size=args.parent_batch, learning_rate=args.parent_lr,
                  cutout=0, drop_path_prob=0.0, aux_weight=0.0, seed=0, device="cpu")


class ParentMismatch(RuntimeError):
    """The parent in the work folder is not the one the committed records were made from."""


def train_parent(name: str, data: TrainingData, args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    """The parent: the network trained from scratch (seed 0, checkpointed every epoch, resumable), so every run
    compresses the same one; its record (committed) holds the weights' digest. Raises :class:`ParentMismatch`,
    before any run, where the weights here are not the committed parent's (trained on another machine: CPU
    training is deterministic on one machine, not across them), so that no record mixes two parents."""
    work = args.work_dir / name
    record_path = args.runs_dir / name / "parent.json"
    committed = json.loads(record_path.read_text()) if record_path.exists() else None
    torch.manual_seed(0)  # the same untrained network in every process
    net = MODELS[name]()
    space = ModelSpace(net, example_input=[1, 32, 32])
    recipe = parent_recipe(args)

    def mismatch(here: str, there: str) -> ParentMismatch:
        return ParentMismatch(
            f"the {name} parent trained in {relative(work / 'parent')} ({here}) is not the one the records in "
            f"{relative(record_path.parent)} were made from ({there}): another machine's floating point trains "
            f"another parent, and records from it would mix two; keep them apart with --runs-dir, or bring back the "
            f"weights that machine trained")

    def on_epoch(m: Any) -> None:
        print(f"  parent {name} epoch {m.epoch + 1}: val top-1 {100 * m.val_top1:.2f}%", flush=True)
        curve = committed["val_curve"] if committed else []
        if m.epoch < len(curve) and m.val_top1 != curve[m.epoch]:  # the same computation gives the same float
            raise mismatch(f"held-out top-1 {100 * m.val_top1:.2f}% after epoch {m.epoch + 1}",
                           f"{100 * curve[m.epoch]:.2f}%")

    if not (work / "parent" / "model.safetensors").exists():
        trained = harness.train_parent(space, data, recipe, work / "parent", on_epoch=on_epoch)
        atomic_write_text(work / "parent.json", json.dumps({k: trained[k] for k in PARENT_KEYS}, indent=1) + "\n")
    net.load_state_dict(load_file(work / "parent" / "model.safetensors"))
    info = json.loads((work / "parent.json").read_text())
    info["digest"] = weights_digest(net)
    if committed is None:
        atomic_write_text(record_path, json.dumps(info, indent=1) + "\n")
    elif committed["digest"] != info["digest"]:
        raise mismatch(f"digest {info['digest']}", f"digest {committed['digest']}")
    return net.eval(), info


def sanas_search(parent: nn.Module, data: TrainingData, budget: int, seed: int, args: argparse.Namespace,
                 work: Path, label: str = "sanas", changes: dict[str, str] | None = None,
                 epochs: float | None = None) -> tuple[ModelSpace, list[int], dict[str, Any]]:
    """sanas with its defaults but ``changes`` (a :data:`VARIANTS` entry: ``importance``, ``granularity``,
    ``retain_epoch``, ``finalists``): the search, then its finalists; returns the space, the chosen tokens, the log.
    ``epochs``: the search's epochs (:data:`EQUAL_EPOCHS`), its candidates as many as fit, up to the product's
    default ``search_steps``, instead of ``args.candidates``."""
    from sanas.search.api import DEFAULT_SEARCH_STEPS

    changes = changes or {}
    space = ModelSpace(parent, example_input=[1, 32, 32], granularity=changes.get("granularity", "group"))
    retain = changes.get("retain_epoch")
    recipe = Recipe(evaluation="inherit", seed=seed, device="cpu", importance=changes.get("importance"),
                    retain_epoch=None if retain is None else float(retain))
    finalists = int(changes["finalists"]) if "finalists" in changes else None
    meter = PassMeter()
    with meter.active():
        tokens, log = harness.sanas_search(label, space, data, recipe, parent, budget, seed,
                                           args.candidates if epochs is None else DEFAULT_SEARCH_STEPS,
                                           work / "study", finalists, None if epochs is None else (meter, epochs))
    return space, tokens, {**log, "search": meter.to_dict(len(data.train_indices)),
                           **({} if epochs is None else {"epochs_target": epochs})}


def run(name: str, ratio: float, seed: int, parent: nn.Module, parent_info: dict[str, Any], data: TrainingData,
        args: argparse.Namespace) -> dict[str, Any]:
    """One (network, budget, seed): each method's record, committed under RUNS_DIR as it finishes."""
    work = args.work_dir / name / f"{ratio:g}x" / f"seed-{seed}"
    state = Record(args.runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json", seed)
    budget = int(ratio * parent_info["params"])
    epochs = final_epochs(parent_info["epochs"])
    state.update(budget=budget, final_epochs=epochs)
    for method, global_pruning in (("tp_uniform", False), ("tp_global", True)):
        if done(state, method):
            continue
        harness.start_fresh(work / method)
        out = tp_finetuned(parent, budget, global_pruning, data, seed, epochs, work / method)
        state[method] = out
        state.save()
        print(f"  {name} {ratio:g}x seed {seed} {method}: {out['params']:,} params, test "
              f"{100 * out['test_top1']:.2f}%", flush=True)
    runs = [("sanas", {}, work)] + [(key, VARIANTS[key], work / key) for key in args.variants]
    for method, changes, where in runs:
        if done(state, method):
            continue
        target = None
        if method in EQUAL_EPOCHS:
            if not done(state, EQUAL_EPOCHS[method]):
                print(f"  {name} {ratio:g}x seed {seed} {method}: skipped, it runs at the epochs of "
                      f"{EQUAL_EPOCHS[method]}'s search, not run yet (--variants {EQUAL_EPOCHS[method]},{method})",
                      flush=True)
                continue
            target = state[EQUAL_EPOCHS[method]]["search"]["epochs"]
        harness.start_fresh(where / "study", where / "sanas_final")
        space, tokens, search = sanas_search(parent, data, budget, seed, args, where, method, changes, target)
        importance = changes.get("importance")
        out = finetune(space, tokens, parent, data, seed, epochs, where / "sanas_final", importance)
        out.update(tokens=tokens, importance=space.resolve_importance(importance), granularity=space.granularity,
                   **search)
        state[method] = out
        state.save()
        print(f"  {name} {ratio:g}x seed {seed} {method}: {out['params']:,} params, test "
              f"{100 * out['test_top1']:.2f}%", flush=True)
    return state


def control(name: str, seed: int, parent: nn.Module, parent_info: dict[str, Any], data: TrainingData,
            args: argparse.Namespace, epochs: int | None = None) -> dict[str, Any]:
    """The control (:data:`CONTROL`) for one seed: the parent, uncompressed, through the final fine-tune
    (``epochs``, by default this table's :func:`final_epochs`)."""
    state = Record(args.runs_dir / name / "control" / f"seed-{seed}.json", seed)
    if done(state, CONTROL):
        return state
    work = args.work_dir / name / "control" / f"seed-{seed}"
    harness.start_fresh(work)
    epochs = final_epochs(parent_info["epochs"]) if epochs is None else epochs
    out = finetune(FixedNet(parent), [0], parent, data, seed, epochs, work)  # FixedNet trains a copy
    out.update(search=PassMeter().to_dict(1))
    state.update(final_epochs=epochs)
    state[CONTROL] = out
    state.save()
    print(f"  {name} seed {seed} {CONTROL}: test {100 * out['test_top1']:.2f}% (parent "
          f"{100 * parent_info['test_top1']:.2f}%)", flush=True)
    return state


# --- the tables -----------------------------------------------------------------------------------------------------
def sanas_labels(states: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The table's methods and labels: the baselines, (b), and each variant every seed holds; sanas' rows name
    their channel criterion and which is the product's default today."""
    labels = dict(METHODS)
    variants = [k for k in VARIANTS if all(done(s, k) for s in states)]
    for letter, method in zip("bcdefghijk", ["sanas", *variants], strict=False):
        crit = criterion(states, method)
        today = " (today's default)" if crit == ModelSpace.default_importance else ""
        if method == "sanas" or "importance" in VARIANTS[method]:
            kind = "defaults when run: importance" if method == "sanas" else "those defaults with importance"
            labels[method] = f"({letter}) sanas, {kind} = {crit}{today}"
            continue
        changed = dict_text(VARIANTS[method])
        start = {s[method].get("finalist_start", False) for s in states}
        equal = f", at the epochs of {labels[EQUAL_EPOCHS[method]].split()[0]}'s search" \
            if EQUAL_EPOCHS.get(method) in labels else ""
        labels[method] = (f"({letter}) sanas, the defaults when run with {changed} (importance = {crit}"
                          f"{', the start among the finalists' if start == {True} else ''}{equal})")
    return labels


def total_epochs(result: dict[str, Any]) -> float:
    return result["search"]["epochs"] + result["final"]["epochs"]


def total_seconds(result: dict[str, Any]) -> float:
    return result["search"]["seconds"] + result["final"]["seconds"] + result.get("prune_seconds", 0.0)


def table_path(out: Path, ratio: float) -> Path:
    """``OUT_<ratio>.md`` (its .json beside it). Not ``with_suffix`` on ``OUT_0.5``: that reads ".5" as the suffix
    and wrote every budget's table to ``OUT_0.md``."""
    return out.with_name(f"{out.name}_{ratio:g}.md")


def summarise(args: argparse.Namespace, ratio: float) -> int:
    lines = [f"# Compress a trained CNN to ≤ {ratio:g}× its parameters (benchmarks/compress_models.py)", "",
             f"Fashion-MNIST: {args.train_subset:,} training images (class-balanced subset), {args.val_subset:,} held "
             f"out from the training set for every choice (split seed 0), test = the 10,000 test images, evaluated "
             f"once per final model. Parents trained {args.parent_epochs} epochs from scratch (lr {args.parent_lr}, "
             f"batch {args.parent_batch}, seed 0). Every compressed network gets the same final fine-tune: sanas' "
             f"`train_final` from the parent with the product's defaults ({final_recipe(0, 1).to_dict()['distill']:g} "
             f"distillation weight). (b) is sanas with its defaults and {args.candidates} candidates per search; a "
             f"variant (`--variants`) is (b) with one setting changed: the channel criterion in its search and its "
             f"fine-tune, or the granularity of its tokens. (p), where measured (`--control`): the parent itself "
             f"through the same final fine-tune, seed by seed — how close to the parent the fine-tune lets any "
             f"network end.", "",
             "Epochs charge every pass over the training subset: training images, and forward-only images (BatchNorm "
             "re-estimation, held-out and test evaluations, the distillation teacher) at a third. Seconds are "
             "wall-clock on a shared 2-core machine (one process per network).", ""]
    payload: dict[str, Any] = {}
    for name in MODELS:
        parent_path = args.runs_dir / name / "parent.json"
        states = harness.finished(args.runs_dir / name / f"{ratio:g}x", METHODS)
        if not states or not parent_path.exists():
            continue
        parent = json.loads(parent_path.read_text())
        payload[name] = {"parent": parent, "seeds": states}
        curve = parent["val_curve"]
        labels = sanas_labels(states)
        lines += [f"## {name}", "",
                  f"Parent: {parent['params']:,} params, {parent['macs']:,} MACs, test top-1 "
                  f"{100 * parent['test_top1']:.2f} %; held-out top-1 over its last three epochs "
                  f"{', '.join(f'{100 * v:.2f}' for v in curve[-3:])} %. Seeds "
                  f"{', '.join(str(s['seed']) for s in states)}; final fine-tune {states[0]['final_epochs']:g} epochs "
                  f"with cutout {cutouts(states, labels)} (0 since fine-tunes from the parent train without it: "
                  f"`no_cutout.py` finishes these searches that way).",
                  "", "| method | test top-1 (%) | params | MACs | total epochs | seconds |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| parent | {100 * parent['test_top1']:.2f} | {parent['params']:,} | {parent['macs']:,} | — | — |"]
        acc = {m: [s[m]["test_top1"] for s in states] for m in labels}
        controls = control_states(args.runs_dir / name, states)
        if controls:
            payload[name]["control"] = controls
            rs = [c[CONTROL] for c in controls]
            lines.append(method_row(CONTROL_LABEL, rs, [total_epochs(r) for r in rs],
                                    f"{statistics.mean(total_seconds(r) for r in rs):,.0f}"))
        for method, label in labels.items():
            rs = [s[method] for s in states]
            lines.append(method_row(label, rs, [total_epochs(r) for r in rs],
                                    f"{statistics.mean(total_seconds(r) for r in rs):,.0f}"))
        lines.append("")
        if controls:
            ctl = [c[CONTROL]["test_top1"] for c in controls]
            gap, sd, within = within_one_std(ctl, [parent["test_top1"]] * len(ctl))
            verdict = "keeps the parent within one std" if within else "costs more than one std"
            lines.append(f"* (p) − parent: {mean_std(gap, 100, signed=True)} points; (p)'s std {100 * sd:.2f} — "
                         f"the fine-tune alone {verdict}.")
        for ours in [m for m in labels if m.startswith("sanas")]:
            tag = labels[ours].split()[0]
            bases = ("tp_uniform", "tp_global") + (("sanas",) if ours != "sanas" else ()) + \
                ((EQUAL_EPOCHS[ours],) if EQUAL_EPOCHS.get(ours) in labels else ())
            for base in bases:
                diff, sd, wins = beats(acc[ours], acc[base])
                ratio_epochs = [total_epochs(s[ours]) / total_epochs(s[base]) for s in states]
                verdict = "beats it by more than one std" if wins else "does NOT beat it by one std"
                them = labels[base].split()[0]
                lines.append(f"* {tag} − {them}: {mean_std(diff, 100, signed=True)} points (paired); the largest std "
                             f"({them}, {tag}, the difference) {100 * sd:.2f} — {tag} {verdict}; {tag} "
                             f"used {statistics.mean(ratio_epochs):.1f}× its epochs (target ≤ 3×).")
            gap, sd, within = within_one_std(acc[ours], [parent["test_top1"]] * len(states))
            lines.append(f"* {tag} − parent: {mean_std(gap, 100, signed=True)} points; {tag}'s std {100 * sd:.2f} — "
                         f"{'within' if within else 'NOT within'} one std of the parent.")
            if controls:
                gap, sd, within = within_one_std(acc[ours], ctl)
                lines.append(f"* {tag} − (p): {mean_std(gap, 100, signed=True)} points (paired by seed); {tag}'s std "
                             f"{100 * sd:.2f} — {'within' if within else 'NOT within'} one std of the parent "
                             f"fine-tuned the same way.")
        lines += ["", "| seed | (a1) | (a2) | (b) | (a1) params | (a2) params | (b) params | (b) tokens |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s in states:
            lines.append(f"| {s['seed']} | {100 * s['tp_uniform']['test_top1']:.2f} | "
                         f"{100 * s['tp_global']['test_top1']:.2f} | {100 * s['sanas']['test_top1']:.2f} | "
                         f"{s['tp_uniform']['params']:,} | {s['tp_global']['params']:,} | {s['sanas']['params']:,} | "
                         f"{s['sanas']['tokens']} |")
        for method in [m for m in labels if m in VARIANTS]:
            lines += ["", f"| seed | {labels[method].split()[0]} | params | MACs | tokens |",
                      "|---:|---:|---:|---:|---|"]
            lines += [f"| {s['seed']} | {100 * s[method]['test_top1']:.2f} | {s[method]['params']:,} | "
                      f"{s[method]['macs']:,} | {s[method]['tokens']} |" for s in states]
        lines.append("")
    if not payload:
        print(f"nothing finished yet at {ratio:g}x", file=sys.stderr)
        return 1
    try:
        tp_version = importlib.metadata.version("torch-pruning")
    except importlib.metadata.PackageNotFoundError:
        tp_version = None
    settings = {**{k: v for k, v in vars(args).items() if k != "budget_ratio"}, "budget_ratio": ratio}
    record = {**provenance("benchmarks/compress_models.py", settings), "torch_pruning": tp_version,
              "models": payload}
    harness.publish(table_path(args.out, ratio), "\n".join(lines), record)
    return 0


def control_states(folder: Path, states: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The control's records for the seeds of ``states``, in their order; none unless every seed has one (so that
    the differences pair seed by seed)."""
    by_seed = {c["seed"]: c for c in harness.finished(folder / "control", [CONTROL])}
    found = [by_seed.get(s["seed"]) for s in states]
    return [c for c in found if c is not None] if all(found) else []


def with_parents(models: str, work_dir: Path, error: Callable[[str], Any], runs_dir: Path = RUNS_DIR,
                 ) -> Iterator[tuple[str, nn.Module, dict[str, Any], TrainingData]]:
    """For a benchmark built on this one's records (those in ``runs_dir``): the data and each of ``models``'
    parents (comma-separated) as this benchmark's defaults make them, so that its records apply; ``error`` refuses
    unknown names first, and a parent that is not the one of ``runs_dir``'s records (:class:`ParentMismatch`)."""
    unknown = sorted(set(models.split(",")) - set(MODELS))
    if unknown:
        error(f"--models {','.join(unknown)}: expected names among {','.join(MODELS)}")
    protocol = build_parser().parse_args(["--work-dir", str(work_dir), "--runs-dir", str(runs_dir)])
    data = harness.fashion_mnist(protocol.train_subset, protocol.val_subset)
    for name in models.split(","):
        try:
            parent, info = train_parent(name, data, protocol)
        except ParentMismatch as e:
            error(str(e))
        yield name, parent, info, data


def dict_text(changes: dict[str, str]) -> str:
    """``{"importance": "l1"}`` as ``importance = l1``."""
    return ", ".join(f"{k} = {v}" for k, v in changes.items())


def variants(text: str) -> list[str]:
    keys = [k for k in text.split(",") if k]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{','.join(unknown)}: expected one of {', '.join(VARIANTS)}")
    return keys


def build_parser() -> argparse.ArgumentParser:
    """The command line (its defaults are the protocol: the data, the parents, the search)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--budget-ratio", default="0.7,0.5,0.3", help="budgets as ratios of the parent's parameters")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary", action="store_true", help="only print/write the tables from finished runs")
    p.add_argument("--parents-only", action="store_true", help="train the parents, nothing else")
    p.add_argument("--control", action="store_true",
                   help="fine-tune the uncompressed parent the same way as every compressed network (the control "
                        "row of every table), nothing else")
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--val-subset", type=int, default=5000)
    p.add_argument("--parent-epochs", type=int, default=24)
    p.add_argument("--parent-lr", type=float, default=0.05)
    p.add_argument("--parent-batch", type=int, default=64)
    p.add_argument("--candidates", type=int, default=30, help="evaluations per search (sanas' default is 300)")
    p.add_argument("--variants", type=variants, default=[],
                   help=f"comma-separated sanas variants to run beside (b): "
                        f"{'; '.join(f'{k} ({dict_text(v)})' for k, v in VARIANTS.items())}")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="the finished runs' records (committed)")
    p.add_argument("--out", type=Path, default=OUT, help="tables as OUT_<ratio>.md and .json")
    return p


def checked(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[float]:
    """The budget ratios, once every setting is known good: a bad one ends the run with one line naming it (exit 2)
    before anything is trained or written."""
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        p.error(f"--models {','.join(unknown)}: expected networks among {','.join(MODELS)}")
    try:
        ratios = harness.floats(str(args.budget_ratio), "--budget-ratio", lambda v: 0 < v <= 1, "in (0, 1]")
    except ValueError as e:
        p.error(str(e))
    if args.candidates < 1:
        p.error(f"--candidates {args.candidates}: expected at least one")
    try:
        parent_recipe(args)
    except ValueError as e:
        p.error(f"the parents' recipe (--parent-epochs, --parent-lr, --parent-batch): {e}")
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    ratios = checked(p, args)
    harness.setup(args.threads)
    if not args.summary:
        try:
            import torch_pruning  # noqa: F401
        except ImportError:
            print("compress_models.py: the baseline needs Torch-Pruning: .venv/bin/pip install torch-pruning==1.6.1",
                  file=sys.stderr)
            return 2
        data = harness.fashion_mnist(args.train_subset, args.val_subset)
        for name in args.models.split(","):
            print(f"{name}: parent", flush=True)
            try:
                parent, info = train_parent(name, data, args)
            except ParentMismatch as e:
                print(f"compress_models.py: {e}", file=sys.stderr)
                return 2
            print(f"{name}: parent test top-1 {100 * info['test_top1']:.2f}%, {info['params']:,} params", flush=True)
            if args.parents_only:
                continue
            if args.control:
                for seed in harness.seeds(args.seeds):
                    control(name, seed, parent, info, data, args)
                continue
            for ratio in ratios:
                for seed in harness.seeds(args.seeds):
                    run(name, ratio, seed, parent, info, data, args)
    return max(summarise(args, ratio) for ratio in ratios) if not args.parents_only else 0


if __name__ == "__main__":
    sys.exit(main())
