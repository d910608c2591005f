"""Compress a user's trained CNN to ≤ 0.7× its parameters: Torch-Pruning one-shot vs sanas' search (issue 15).

Two networks defined here — a CIFAR-style ResNet-20 and a MobileNetV2-style network (inverted residuals,
depthwise convs) — are trained on Fashion-MNIST to a plateau (the *parent*, what a user arrives with; seed 0,
its epochs reported but not charged). Then, for each seed, the parent is compressed to ≤ ``--budget-ratio`` × its
parameters three ways, each followed by **the same fine-tune** (BatchNorm re-estimated on ``--bn-batches``
batches, ``--final-epochs`` epochs at ``--final-lr``, cosine, sanas' trainer):

* **(a) Torch-Pruning 1.6.1, one-shot** (``BasePruner``, group L2 magnitude importance, the classifier ignored),
  the pruning ratio bisected to the largest that fits the budget: (a1) the same ratio in every layer,
  (a2) its global magnitude ranking (``global_pruning=True``).
* **(b) sanas**: ``ModelSpace`` over the parent (``--granularity``, ratios 0.25..1.0 in ``--ratio-step`` steps),
  SA (``--candidates`` evaluations, starting from the largest uniform ratio that fits, each token then widened
  in turn while the budget allows) with the inherit evaluation — each candidate
  inherits the parent's most important channels (|BN γ|), BatchNorm re-estimated, fine-tuned ``--finetune-epochs``
  with the SA-aware early stop; reward = top-1 on a held-out split of the training set. The best is fine-tuned
  like (a).

The test set (10,000 images) is evaluated once per final model. Epochs count passes over the training subset;
BatchNorm re-estimation batches count as forward passes (a third of a training step).

    .venv/bin/pip install torch-pruning==1.6.1           # the baseline (a) only
    nice -n 10 .venv/bin/python benchmarks/compress_models.py          # resumable; then the tables
    .venv/bin/python benchmarks/compress_models.py --summary           # the tables from what has run

Results: ``benchmarks/data/compress_models.md`` / ``.json`` (committed); work in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sanas import SANAS
from sanas.atomic import atomic_write_bytes
from sanas.runs.worker import stop_rule
from sanas.spaces import ModelSpace, SearchSpace
from sanas.training import Recipe, evaluate_candidate, prepare_data, train_final
from sanas.training.data import TrainingData
from sanas.training.trainer import Trainer
from width_table import git_commit

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "results" / "compress_models"
OUT_MD = HERE / "data" / "compress_models.md"
METHODS = {"tp_uniform": "(a1) Torch-Pruning, uniform ratio", "tp_global": "(a2) Torch-Pruning, global ranking",
           "sanas": "(b) sanas: SA, inherited candidates"}


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


MODELS = {"resnet20": ResNet20, "mobilenetv2": MobileNetV2}


# --- helpers --------------------------------------------------------------------------------------------------------
class FixedNet(SearchSpace):
    """One architecture: a pruned network, so that sanas' trainer fine-tunes it exactly like (b)'s child."""

    name = "FixedNet"

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def init_tokens(self) -> list[int]:
        return [0]

    def range_table(self) -> list[int]:
        return [1]

    def token2arch(self, tokens: Sequence[int]) -> nn.Module:
        return copy.deepcopy(self.net)

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str = "bn") -> nn.Module:
        return copy.deepcopy(parent)

    def count_params(self, tokens: Sequence[int]) -> int:
        return params(self.net)

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return macs(self.net)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


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


def inherit_recipe(epochs: float, lr: float, seed: int, args: argparse.Namespace) -> Recipe:
    return Recipe(evaluation="inherit", retain_epoch=epochs, finetune_lr=lr, bn_batches=args.bn_batches,
                  batch_size=args.batch_size, cutout=0, drop_path_prob=0.0, aux_weight=0.0, seed=seed, device="cpu",
                  stop_checks=args.stop_checks, early_stop=True)


def finetune(space: SearchSpace, tokens: list[int], parent: nn.Module, data: TrainingData, seed: int,
             args: argparse.Namespace) -> dict[str, Any]:
    """The final fine-tune every method gets: BN re-estimation, then epochs at the final lr; test top-1 once."""
    recipe = inherit_recipe(args.final_epochs, args.final_lr, seed, args)
    t0 = time.perf_counter()
    trainer = Trainer(space, tokens, data, recipe, parent=parent)
    trainer.reestimate_bn(recipe.bn_batches)
    while trainer.steps_done < trainer.total_steps:
        trainer.run_epoch()
    test_top1 = trainer.evaluate(*trainer.data.test())[1]
    return {"test_top1": test_top1, "val_top1": trainer.metrics[-1].val_top1, "params": params(trainer.net),
            "macs": macs(trainer.net), "final_epochs": trainer.steps_done / trainer.steps_per_epoch,
            "bn_batches": recipe.bn_batches, "seconds": round(time.perf_counter() - t0, 1)}


def train_parent(name: str, data: TrainingData, args: argparse.Namespace, work: Path) -> tuple[nn.Module, dict]:
    """The parent: the network trained from scratch (seed 0), checkpointed every epoch, saved so every run
    compresses the same one."""
    info_path = work / "parent.json"
    torch.manual_seed(0)  # the same untrained network in every process (its digest is part of the checkpoint)
    net = MODELS[name]()
    if not info_path.exists():
        space = ModelSpace(net, example_input=[1, 32, 32])
        recipe = Recipe(retain_epoch=args.parent_epochs, batch_size=args.batch_size, learning_rate=args.parent_lr,
                        cutout=0, drop_path_prob=0.0, aux_weight=0.0, seed=0, device="cpu")
        t0 = time.perf_counter()
        result = train_final(space.init_tokens(), space, data, recipe, work / "parent", resume=True, onnx=False,
                             progress="none", on_epoch=lambda m: print(
                                 f"  parent {name} epoch {m.epoch + 1}: val top-1 {100 * m.val_top1:.2f}%", flush=True))
        info = {"epochs": recipe.retain_epoch, "lr": recipe.learning_rate, "params": params(net), "macs": macs(net),
                "val_curve": [m.val_top1 for m in result.metrics], "test_top1": result.test_top1,
                "seconds": round(time.perf_counter() - t0, 1)}
        atomic_write_bytes(info_path, (json.dumps(info, indent=1) + "\n").encode())
    net.load_state_dict(load_file(work / "parent" / "model.safetensors"))
    return net.eval(), json.loads(info_path.read_text())


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


def start_tokens(space: ModelSpace, budget: int) -> list[int]:
    """Where the search starts: the largest uniform width ratio (one token index everywhere) that fits the budget,
    then each token in turn one width wider while the budget allows (a uniform ratio on a grid leaves some unused).
    """
    ranges = space.range_table()
    for k in range(max(ranges) - 1, -1, -1):
        tokens = [min(k, r - 1) for r in ranges]
        if space.count_params(tokens) <= budget:
            break
    else:
        raise ValueError("not even the narrowest network fits the budget")
    grown = True
    while grown:
        grown = False
        for i, r in enumerate(ranges):
            wider = [*tokens[:i], tokens[i] + 1, *tokens[i + 1:]]
            if tokens[i] + 1 < r and space.count_params(wider) <= budget:
                tokens, grown = wider, True
    return tokens


def sanas_search(parent: nn.Module, data: TrainingData, budget: int, seed: int, args: argparse.Namespace,
                 work: Path, state: dict[str, Any], save_state: Any) -> tuple[ModelSpace, list[int]]:
    space = ModelSpace(parent, example_input=[1, 32, 32], granularity=args.granularity, ratio_step=args.ratio_step)
    recipe = inherit_recipe(args.finetune_epochs, args.finetune_lr, seed, args)
    search = state.setdefault("search", {"log": []})
    if search.get("done"):
        return space, search["best_tokens"]
    t0 = time.perf_counter()
    sa = SANAS(space, search_steps=args.candidates, max_params=budget, seed=seed, save_checkpoint=work / "study",
               init_tokens=start_tokens(space, budget), init_temperature=args.init_temperature)
    done = {rec["trial"] for rec in search["log"]}
    while (tokens := sa.next_tokens()) is not None:
        number = sa.trial_number
        result = evaluate_candidate(tokens, space, data, recipe, progress="none", parent=parent,
                                    stop_rule=stop_rule(sa, recipe))
        if not result.ok:
            sa.fail(result.reason)
            continue
        accepted = sa.reward(result.reward, curve=result.curve or None, stopped=result.stopped)
        if number not in done:
            search["log"].append({"trial": number, "tokens": tokens, "params": result.params, "reward": result.reward,
                                  "epochs": result.epochs, "bn_batches": result.bn_batches, "stopped": result.stopped,
                                  "threshold": result.threshold, "accepted": accepted})
            save_state()
        print(f"    sanas trial {number}: {result.params:,} params, reward {result.reward:.4f} "
              f"{'STOPPED' if result.stopped else 'accepted' if accepted else 'rejected'} ({result.epochs:.2f} ep)",
              flush=True)
    info = sa.current_info()
    sa.close()
    search.update({"done": True, "best_tokens": info["best_tokens"], "best_reward": info["best_reward"],
                   "seconds": round(search.get("seconds", 0) + time.perf_counter() - t0, 1)})
    save_state()
    return space, info["best_tokens"]


def run(name: str, seed: int, parent: nn.Module, parent_info: dict[str, Any], data: TrainingData,
        args: argparse.Namespace) -> dict[str, Any]:
    work = args.work_dir / name / f"seed-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {"seed": seed}

    def save_state() -> None:
        atomic_write_bytes(state_path, (json.dumps(state, indent=1) + "\n").encode())

    budget = int(args.budget_ratio * parent_info["params"])
    state["budget"] = budget
    for method, global_pruning in (("tp_uniform", False), ("tp_global", True)):
        if method in state:
            continue
        t0 = time.perf_counter()
        pruned, ratio = tp_prune(parent, budget, global_pruning)
        prune_seconds = time.perf_counter() - t0
        out = finetune(FixedNet(pruned), [0], pruned, data, seed, args)
        out.update({"ratio": ratio, "search_epochs": 0.0, "search_bn_batches": 0,
                    "seconds": round(out["seconds"] + prune_seconds, 1)})
        state[method] = out
        save_state()
        print(f"  {name} seed {seed} {method}: {out['params']:,} params, test {100 * out['test_top1']:.2f}%",
              flush=True)
    if "sanas" not in state:
        space, best = sanas_search(parent, data, budget, seed, args, work, state, save_state)
        out = finetune(space, best, parent, data, seed, args)
        log = state["search"]["log"]
        out.update({"tokens": best, "search_epochs": sum(r["epochs"] for r in log),
                    "search_bn_batches": sum(r["bn_batches"] for r in log), "candidates": len(log),
                    "stopped": sum(r["stopped"] for r in log),
                    "seconds": round(out["seconds"] + state["search"]["seconds"], 1)})
        state["sanas"] = out
        save_state()
        print(f"  {name} seed {seed} sanas: {out['params']:,} params, test {100 * out['test_top1']:.2f}%",
              flush=True)
    return state


# --- the tables -----------------------------------------------------------------------------------------------------
def _ms(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def total_epochs(result: dict[str, Any], steps_per_epoch: int) -> float:
    bn = result["search_bn_batches"] + result["bn_batches"]
    return result["search_epochs"] + result["final_epochs"] + bn / (3 * steps_per_epoch)


def summarise(args: argparse.Namespace) -> int:
    data_note = (f"Fashion-MNIST: {args.train_subset:,} training images (class-balanced subset), {args.val_subset:,} "
                 f"held out from the training set for rewards (split seed 0), test = the 10,000 test images.")
    steps = Recipe(batch_size=args.batch_size).steps_per_epoch(args.train_subset)
    lines = [f"# Compress a trained CNN to ≤ {args.budget_ratio}× its parameters (benchmarks/compress_models.py)", "",
             data_note,
             f"Parents trained {args.parent_epochs} epochs from scratch (lr {args.parent_lr}, batch "
             f"{args.batch_size}, seed 0); budget ≤ {args.budget_ratio} × the parent's parameters. Every compressed "
             f"network is fine-tuned the same way: BatchNorm re-estimated on {args.bn_batches} batches, "
             f"{args.final_epochs} epochs at lr {args.final_lr} (cosine). (b) searches {args.candidates} candidates "
             f"(ModelSpace, granularity {args.granularity!r}, ratios 0.25..1 in steps of {args.ratio_step}, SA T0 "
             f"{args.init_temperature}, start = the largest uniform ratio that fits, then tokens widened in turn "
             f"while the budget allows), each inherited, BN re-estimated and fine-tuned {args.finetune_epochs} "
             f"epoch at lr {args.finetune_lr} with the SA-aware early stop ({args.stop_checks} checks).", "",
             "Epochs are passes over the training subset (search + final; BN re-estimation batches count a third of "
             "a step). Seeds change the pruning's fine-tune and the search; the parent is the same.", ""]
    found = False
    payload: dict[str, Any] = {}
    for name in MODELS:
        info_path = args.work_dir / name / "parent.json"
        states = []
        for path in sorted((args.work_dir / name).glob("seed-*/state.json")):
            st = json.loads(path.read_text())
            if all(m in st for m in METHODS):
                states.append(st)
        if not states or not info_path.exists():
            continue
        found = True
        parent = json.loads(info_path.read_text())
        payload[name] = {"parent": parent, "seeds": states}
        curve = parent["val_curve"]
        lines += [f"## {name}", "",
                  f"Parent: {parent['params']:,} params, {parent['macs']:,} MACs, test top-1 "
                  f"{100 * parent['test_top1']:.2f} %; held-out top-1 over its last three epochs "
                  f"{', '.join(f'{100 * v:.2f}' for v in curve[-3:])} % (plateau). Seeds "
                  f"{', '.join(str(s['seed']) for s in states)}.", "",
                  "| method | test top-1 (%) | params | MACs | total epochs |", "|---|---:|---:|---:|---:|"]
        acc = {m: [s[m]["test_top1"] for s in states] for m in METHODS}
        for method, label in METHODS.items():
            rs = [s[method] for s in states]
            lines.append(f"| {label} | {_ms(acc[method], 100)} | {statistics.mean(r['params'] for r in rs):,.0f} | "
                         f"{statistics.mean(r['macs'] for r in rs):,.0f} | "
                         f"{_ms([total_epochs(r, steps) for r in rs], digits=1)} |")
        lines.append("")
        for base in ("tp_uniform", "tp_global"):
            diff = [b - a for a, b in zip(acc[base], acc["sanas"], strict=True)]
            sd = statistics.stdev(acc[base]) if len(states) > 1 else 0.0
            epochs = [total_epochs(s["sanas"], steps) / total_epochs(s[base], steps) for s in states]
            verdict = "beats it by more than one std" if statistics.mean(diff) > sd else "does NOT beat it by one std"
            lines.append(f"* (b) − {METHODS[base][:4]}: {_ms(diff, 100)} points (paired); {METHODS[base][:4]}'s std "
                         f"{100 * sd:.2f} — (b) {verdict}; (b) used {statistics.mean(epochs):.1f}× its epochs "
                         f"(target ≤ 3×).")
        stops = sum(s["sanas"]["stopped"] for s in states)
        cands = sum(s["sanas"]["candidates"] for s in states)
        lines += [f"* (b)'s search stopped {stops} of {cands} candidates early.", "",
                  "| seed | (a1) | (a2) | (b) | (a1) params | (a2) params | (b) params | (b) tokens |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s in states:
            lines.append(f"| {s['seed']} | {100 * s['tp_uniform']['test_top1']:.2f} | "
                         f"{100 * s['tp_global']['test_top1']:.2f} | {100 * s['sanas']['test_top1']:.2f} | "
                         f"{s['tp_uniform']['params']:,} | {s['tp_global']['params']:,} | {s['sanas']['params']:,} | "
                         f"{s['sanas']['tokens']} |")
        lines.append("")
    if not found:
        print("nothing finished yet", file=sys.stderr)
        return 1
    text = "\n".join(lines)
    print(text)
    atomic_write_bytes(Path(f"{args.out}.md"), text.encode())
    try:
        tp_version = importlib.metadata.version("torch-pruning")
    except importlib.metadata.PackageNotFoundError:
        tp_version = None
    provenance = {"script": "benchmarks/compress_models.py", "git_commit": git_commit(),
                  "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "torch": torch.__version__, "torch_pruning": tp_version, "python": platform.python_version(),
                  "threads": torch.get_num_threads(), "generated": time.strftime("%Y-%m-%d", time.gmtime()),
                  "models": payload}
    atomic_write_bytes(Path(f"{args.out}.json"), (json.dumps(provenance, indent=1) + "\n").encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet20,mobilenetv2")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary", action="store_true", help="only print/write the tables from finished runs")
    p.add_argument("--train-subset", type=int, default=4000)
    p.add_argument("--val-subset", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--parent-epochs", type=int, default=15)
    p.add_argument("--parent-lr", type=float, default=0.05)
    p.add_argument("--budget-ratio", type=float, default=0.7)
    p.add_argument("--final-epochs", type=float, default=3)
    p.add_argument("--final-lr", type=float, default=0.02)
    p.add_argument("--bn-batches", type=int, default=20)
    p.add_argument("--candidates", type=int, default=12)
    p.add_argument("--granularity", default="stage")
    p.add_argument("--ratio-step", type=float, default=0.0625)
    p.add_argument("--init-temperature", type=float, default=0.01)
    p.add_argument("--finetune-epochs", type=float, default=0.25)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--stop-checks", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    p.add_argument("--out", type=Path, default=OUT_MD.with_suffix(""),
                   help="results as OUT.md and OUT.json (default: benchmarks/data/compress_models)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.summary:
        try:
            import torch_pruning  # noqa: F401
        except ImportError:
            print("compress_models.py: the baseline needs Torch-Pruning: .venv/bin/pip install torch-pruning==1.6.1",
                  file=sys.stderr)
            return 2
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        data = prepare_data("fashion-mnist", train_subset=args.train_subset, val_subset=args.val_subset, seed=0)
        for name in args.models.split(","):
            print(f"{name}: parent", flush=True)
            parent, info = train_parent(name, data, args, args.work_dir / name)
            print(f"{name}: parent test top-1 {100 * info['test_top1']:.2f}%, {info['params']:,} params", flush=True)
            for seed in (int(s) for s in args.seeds.split(",")):
                run(name, seed, parent, info, data, args)
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
