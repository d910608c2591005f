"""How long the final fine-tune from the parent should be, with and without distillation (issue 19, item 5).

A compressed child of a parent trained to a plateau (``compress_models.py``'s parents: trained ``P`` epochs on
10,000 Fashion-MNIST images) is fine-tuned from the parent for ``E`` epochs — a schedule of its own for each
``E`` (cosine over ``E`` epochs), the product's defaults otherwise — with distillation weights ``--distill``
(0 = plain cross-entropy). The child is where sanas' search starts at ``--budget-ratio``: the parent's widths
narrowed evenly into the budget band (``BudgetFill``). Scored on the 5,000 held-out training images (the test set
is not touched: this chooses a default). The curve says at which fraction ``E / P`` the accuracy stops rising.

    .venv/bin/python benchmarks/final_curve.py --model resnet20        # after compress_models.py --parents-only
    .venv/bin/python benchmarks/final_curve.py --summary

Results: ``benchmarks/data/final_curve.md`` and ``final_curve_<model>.json`` (committed; resumable point by point).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from compress_models import MODELS, WORK_DIR
from harness import PassMeter, provenance
from sanas.atomic import atomic_write_text
from sanas.search.budget import Budget, BudgetFill
from sanas.spaces import ModelSpace
from sanas.training import Recipe, Trainer, prepare_data

HERE = Path(__file__).resolve().parent
OUT = HERE / "data" / "final_curve"


def child_tokens(space: ModelSpace, ratio: float) -> list[int]:
    budget = int(ratio * space.count_params(space.init_tokens()))
    fill = BudgetFill([Budget("params", space.count_params, budget)], space.range_table())
    return list(fill.repair(tuple(space.init_tokens()), None, random.Random("0:start")) or ())


#: The product's fine-tune rate: what the points measured before the ``lr`` axis existed ran with.
DEFAULT_LR = float(Recipe(evaluation="inherit").finetune_lr)  # type: ignore[arg-type]
#: The budget ratio of the points measured before the ``budget_ratio`` axis existed.
FIRST_RATIO = 0.5


def key(p: dict[str, Any]) -> tuple[str, float, int, float, float]:
    """What identifies a point (older points lack the ratio and the rate: they ran at 0.5× and the default)."""
    return (p["model"], p.get("budget_ratio", FIRST_RATIO), p["epochs"], p["distill"], p.get("lr", DEFAULT_LR))


def point(name: str, ratio: float, epochs: int, distill: float, lr: float, data: Any,
          args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    parent = MODELS[name]()
    parent.load_state_dict(load_file(args.work_dir / name / "parent" / "model.safetensors"))
    parent.eval()
    space = ModelSpace(parent, example_input=[1, 32, 32])
    tokens = child_tokens(space, ratio)
    recipe = Recipe(evaluation="inherit", retain_epoch=epochs, distill=distill, finetune_lr=lr, seed=0,
                    device="cpu")
    meter = PassMeter()
    with meter.active():
        trainer = Trainer(space, tokens, data, recipe, parent=parent)
        trainer.reestimate_bn(recipe.bn_batches)
        while trainer.steps_done < trainer.total_steps:
            trainer.run_epoch()
    return {"model": name, "budget_ratio": ratio, "epochs": epochs, "distill": distill, "lr": lr, "tokens": tokens,
            "params": space.count_params(tokens), "val_top1": trainer.metrics[-1].val_top1,
            "curve": [m.val_top1 for m in trainer.metrics], "cost": meter.to_dict(len(data.train_indices))}


def points_path(model: str) -> Path:
    return HERE / "data" / f"final_curve_{model}.json"


def length_section(name: str, pts: list[dict[str, Any]], parent: dict[str, Any]) -> list[str]:
    """Held-out top-1 vs the fine-tune's length E, one column per distillation weight (0.5×, the default rate)."""
    pts = [p for p in pts if key(p)[1] == FIRST_RATIO and key(p)[4] == DEFAULT_LR]
    weights = sorted({p["distill"] for p in pts})
    lines = [f"Child {pts[0]['params']:,} params (0.5×).", "", "| E | E / P | "
             + " | ".join(f"distill {w:g}" for w in weights) + " |", "|---:|---:|" + "---:|" * len(weights)]
    for e in sorted({p["epochs"] for p in pts}):
        cells = [next((f"{100 * p['val_top1']:.2f}" for p in pts if p["epochs"] == e and p["distill"] == w), "—")
                 for w in weights]
        lines.append(f"| {e} | {e / parent['epochs']:.3f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def rate_section(pts: list[dict[str, Any]]) -> list[str]:
    """Held-out top-1 vs the fine-tune's peak rate, one row per (ratio, E, distill) measured at more than one rate;
    the differences are against the product's default rate on the same child."""
    rows = sorted({key(p)[1:4] for p in pts if key(p)[4] != DEFAULT_LR}, key=lambda r: (-r[0], r[1], r[2]))
    if not rows:
        return []
    rates = sorted({key(p)[4] for p in pts if key(p)[1:4] in rows}, reverse=True)
    lines = ["| ratio | params | E | distill | " + " | ".join(f"lr {r:g}" + (" (default)" if r == DEFAULT_LR else "")
                                                         for r in rates) + " |",
             "|---:|---:|---:|---:|" + "---:|" * len(rates)]
    for ratio, e, w in rows:
        hits = {key(p)[4]: p for p in pts if key(p)[1:4] == (ratio, e, w)}
        base = hits.get(DEFAULT_LR)
        cells = []
        for r in rates:
            if r not in hits:
                cells.append("—")
                continue
            cell = f"{100 * hits[r]['val_top1']:.2f}"
            if base is not None and r != DEFAULT_LR:
                cell += f" ({100 * (hits[r]['val_top1'] - base['val_top1']):+.2f})"
            cells.append(cell)
        params = next(iter(hits.values()))["params"]
        lines.append(f"| {ratio:g}× | {params:,} | {e} | {w:g} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def summarise(args: argparse.Namespace) -> int:
    records = [json.loads(points_path(m).read_text()) for m in MODELS if points_path(m).exists()]
    if not records:
        print("nothing measured yet", file=sys.stderr)
        return 1
    points = [p for r in records for p in r["points"]]
    lines = ["# The final fine-tune from the parent: held-out top-1 vs its length and rate (benchmarks/final_curve.py)",
             "", "Child: the parent's widths narrowed evenly into [0.95, 1] × ratio × its parameters (where sanas' "
             "search starts; at 1× the parent itself); fine-tuned E epochs from the parent (a cosine schedule of its "
             "own for each E), the product's defaults otherwise; held-out top-1 on 5,000 training images never "
             "trained on (the test set is not used). E / P: the fraction of the parent's own training.", ""]
    for name in sorted({p["model"] for p in points}):
        parent = json.loads((args.work_dir / name / "parent.json").read_text())
        pts = [p for p in points if p["model"] == name]
        lines += [f"## {name} (parent: {parent['epochs']} epochs, held-out top-1 "
                  f"{100 * parent['val_curve'][-1]:.2f} %)", ""]
        if any(key(p)[1] == FIRST_RATIO and key(p)[4] == DEFAULT_LR for p in pts):
            lines += length_section(name, pts, parent)
        rates = rate_section(pts)
        if rates:
            lines += ["The fine-tune's peak rate (`finetune_lr`; in parentheses: the difference to the default rate "
                      "on the same child, points):", "", *rates]
    text = "\n".join(lines)
    print(text)
    atomic_write_text(OUT.with_suffix(".md"), text + "\n")
    return 0


def floats(text: str, flag: str, ok: Callable[[float], bool], expected: str) -> list[float]:
    """A comma-separated list of numbers that each pass ``ok``; a ``ValueError`` naming the bad value otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(ok(v) for v in values):
        raise ValueError(f"{flag} is {text!r}, expected comma-separated numbers {expected}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", choices=list(MODELS))
    p.add_argument("--budget-ratio", default="0.5", help="budget ratios to measure (1: the parent itself)")
    p.add_argument("--epochs", default="1,2,4,8", help="fine-tune lengths E to measure")
    p.add_argument("--distill", default="0,0.5", help="distillation weights to measure")
    p.add_argument("--lr", default=f"{DEFAULT_LR:g}", help="peak fine-tune rates to measure (finetune_lr)")
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--val-subset", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    p.add_argument("--summary", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.summary:
        try:
            grid = [(ratio, epochs, distill, lr)
                    for ratio in floats(args.budget_ratio, "--budget-ratio", lambda v: 0 < v <= 1, "in (0, 1]")
                    for lr in floats(args.lr, "--lr", lambda v: v > 0, "> 0")
                    for distill in floats(args.distill, "--distill", lambda v: 0 <= v <= 1, "in [0, 1]")
                    for epochs in floats(args.epochs, "--epochs", lambda v: v >= 1 and v == int(v),
                                         "that are whole numbers >= 1")]
        except ValueError as e:
            p.error(str(e))
        data = prepare_data("fashion-mnist", train_subset=args.train_subset, val_subset=args.val_subset, seed=0)
        path = points_path(args.model)
        for ratio, epochs, distill, lr in grid:
            record = json.loads(path.read_text()) if path.exists() else {"points": []}
            if any(key(q) == (args.model, ratio, epochs, distill, lr) for q in record["points"]):
                continue
            t0 = time.perf_counter()
            result = point(args.model, ratio, int(epochs), distill, lr, data, args)
            print(f"{args.model} {ratio:g}x E={epochs} distill={distill:g} lr={lr:g}: held-out top-1 "
                  f"{100 * result['val_top1']:.2f}% ({time.perf_counter() - t0:.0f} s)", flush=True)
            run = provenance("benchmarks/final_curve.py", {k: v for k, v in vars(args).items() if k != "model"})
            record["points"].append({**result, "git_commit": run["git_commit"], "dirty": run["dirty"]})
            record.update(run)
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
