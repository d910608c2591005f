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
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from compress_models import MODELS, WORK_DIR
from harness import PassMeter, floats, provenance
from sanas.atomic import atomic_write_text
from sanas.search.budget import Budget, BudgetFill
from sanas.spaces import ModelSpace
from sanas.training import Recipe, Trainer, prepare_data
from sanas.training.final import final_epochs
from sanas.training.recipe import CUTOUT_BEFORE

HERE = Path(__file__).resolve().parent
OUT = HERE / "data" / "final_curve"


def child_tokens(space: ModelSpace, ratio: float) -> list[int]:
    budget = int(ratio * space.count_params(space.init_tokens()))
    fill = BudgetFill([Budget("params", space.count_params, budget)], space.range_table())
    return list(fill.repair(tuple(space.init_tokens()), None, random.Random("0:start")) or ())


#: What the points measured before an axis existed ran with: the product's defaults of then (rate, cutout) at 0.5×.
DEFAULTS = {"lr": 0.0125, "cutout": CUTOUT_BEFORE}
#: The product's defaults today, for a fine-tune from the parent.
TODAY = {"lr": float(Recipe(evaluation="inherit").finetune_lr),  # type: ignore[arg-type]
         "cutout": Recipe(evaluation="inherit").cutout}
FIRST_RATIO = 0.5
#: The settings a point varies beyond its ratio, length and distillation: the column heads of their sections.
AXES = {"lr": "lr {:g}", "cutout": "cutout {:g}"}


def key(p: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a point: model, ratio, E, distill, then each of :data:`AXES` (older points lack the ratio and
    the axes: they ran at 0.5× and the defaults)."""
    return (p["model"], p.get("budget_ratio", FIRST_RATIO), p["epochs"], p["distill"],
            *(p.get(axis, DEFAULTS[axis]) for axis in AXES))


def point(name: str, ratio: float, epochs: int, distill: float, lr: float, cutout: int, data: Any,
          args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    parent = MODELS[name]()
    parent.load_state_dict(load_file(args.work_dir / name / "parent" / "model.safetensors"))
    parent.eval()
    space = ModelSpace(parent, example_input=[1, 32, 32])
    tokens = child_tokens(space, ratio)
    recipe = Recipe(evaluation="inherit", retain_epoch=epochs, distill=distill, finetune_lr=lr, cutout=cutout,
                    seed=0, device="cpu")
    meter = PassMeter()
    with meter.active():
        trainer = Trainer(space, tokens, data, recipe, parent=parent)
        trainer.reestimate_bn(recipe.bn_batches)
        while trainer.steps_done < trainer.total_steps:
            trainer.run_epoch()
    return {"model": name, "budget_ratio": ratio, "epochs": epochs, "distill": distill, "lr": lr, "cutout": cutout,
            "tokens": tokens,
            "params": space.count_params(tokens), "val_top1": trainer.metrics[-1].val_top1,
            "curve": [m.val_top1 for m in trainer.metrics], "cost": meter.to_dict(len(data.train_indices))}


def points_path(model: str) -> Path:
    return HERE / "data" / f"final_curve_{model}.json"


def at_defaults(p: dict[str, Any], *but: str) -> bool:
    """Whether ``p`` ran every axis (but those named) at its default."""
    return all(p.get(axis, DEFAULTS[axis]) == DEFAULTS[axis] for axis in AXES if axis not in but)


def length_section(pts: list[dict[str, Any]], parent: dict[str, Any]) -> list[str]:
    """Held-out top-1 vs the fine-tune's length E, one column per distillation weight (0.5×, the defaults)."""
    pts = [p for p in pts if key(p)[1] == FIRST_RATIO and at_defaults(p)]
    weights = sorted({p["distill"] for p in pts})
    lines = [f"Child {pts[0]['params']:,} params (0.5×); cutout {DEFAULTS['cutout']}.", "", "| E | E / P | "
             + " | ".join(f"distill {w:g}" for w in weights) + " |", "|---:|---:|" + "---:|" * len(weights)]
    for e in sorted({p["epochs"] for p in pts}):
        cells = [next((f"{100 * p['val_top1']:.2f}" for p in pts if p["epochs"] == e and p["distill"] == w), "—")
                 for w in weights]
        lines.append(f"| {e} | {e / parent['epochs']:.3f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def compared(hits: dict[Any, dict[str, Any]], columns: list[Any], base: Any) -> tuple[list[str], dict[Any, float]]:
    """One child's row: each column's held-out top-1 (%), "—" where not measured, and in parentheses its difference
    to column ``base`` where both were measured; and those differences (points) by column."""
    cells, diffs = [], {}
    for c in columns:
        if c not in hits:
            cells.append("—")
            continue
        cell = f"{100 * hits[c]['val_top1']:.2f}"
        if base in hits and c != base:
            diffs[c] = 100 * (hits[c]["val_top1"] - hits[base]["val_top1"])
            cell += f" ({diffs[c]:+.2f})"
        cells.append(cell)
    return cells, diffs


def axis_section(pts: list[dict[str, Any]], axis: str) -> list[str]:
    """Held-out top-1 vs one axis (the others at their defaults), one row per (ratio, E, distill) measured off the
    default (the value of the points before the axis); the differences are against it on the same child."""
    default = DEFAULTS[axis]
    pts = [p for p in pts if at_defaults(p, axis)]
    value = {id(p): p.get(axis, default) for p in pts}
    measured = {key(p)[1:4] for p in pts if value[id(p)] == default}  # a row is read against the default of then
    rows = sorted({key(p)[1:4] for p in pts if value[id(p)] != default} & measured, key=lambda r: (-r[0], r[1], r[2]))
    if not rows:
        return []
    values = sorted({value[id(p)] for p in pts if key(p)[1:4] in rows}, reverse=True)
    def head(v: Any) -> str:
        return AXES[axis].format(v) + (" (default)" if v == TODAY[axis] else " (before)" if v == default else "")

    lines = ["| ratio | params | E | distill | " + " | ".join(head(v) for v in values) + " |",
             "|---:|---:|---:|---:|" + "---:|" * len(values)]
    for ratio, e, w in rows:
        hits = {value[id(p)]: p for p in pts if key(p)[1:4] == (ratio, e, w)}
        cells, _ = compared(hits, values, default)
        params = next(iter(hits.values()))["params"]
        lines.append(f"| {ratio:g}× | {params:,} | {e} | {w:g} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def today_length_section(pts: list[dict[str, Any]], parent: dict[str, Any]) -> list[str]:
    """Held-out top-1 vs the fine-tune's length E with every other setting at today's default (rate, cutout,
    distillation weight): one row per ratio measured at two lengths or more, each length against the shortest on the
    same child, and the mean of those differences."""
    distill = Recipe(evaluation="inherit").distill
    pts = [p for p in pts if p["distill"] == distill and all(p.get(a, DEFAULTS[a]) == TODAY[a] for a in AXES)]
    lengths_at = {r: sorted({p["epochs"] for p in pts if key(p)[1] == r}) for r in {key(p)[1] for p in pts}}
    ratios = sorted((r for r, es in lengths_at.items() if len(es) > 1), reverse=True)
    if not ratios:
        return []
    lengths = sorted({e for r in ratios for e in lengths_at[r]})
    default = final_epochs(parent["epochs"])
    lines = [f"The fine-tune's length E with today's other defaults (rate {TODAY['lr']:g}, cutout {TODAY['cutout']}, "
             f"distillation {distill:g}); in parentheses: the difference to the shortest on the same child, points; "
             f"'(default)': today's length ({default} epochs for this parent):", "",
             "| ratio | params | " + " | ".join(f"E = {e} ({e / parent['epochs']:g} P)"
                                                 + (" (default)" if e == default else "") for e in lengths) + " |",
             "|---:|---:|" + "---:|" * len(lengths)]
    gains: dict[int, list[float]] = {e: [] for e in lengths}
    for r in ratios:
        hits = {p["epochs"]: p for p in pts if key(p)[1] == r}
        cells, diffs = compared(hits, lengths, min(hits))
        for e, diff in diffs.items():
            gains[e].append(diff)
        lines.append(f"| {r:g}× | {hits[min(hits)]['params']:,} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"* E = {e} against the shortest: {sum(g) / len(g):+.2f} points on average over {len(g)} children, "
              f"from {min(g):+.2f} to {max(g):+.2f}." for e, g in gains.items() if g]
    return [*lines, ""]


#: What each axis' section says it measures.
AXIS_TEXT = {"lr": "The fine-tune's peak rate (`finetune_lr`; cutout 16, the default then)",
             "cutout": "The fine-tune's cutout (`cutout`, the side of the square erased from each training image; "
                       "the parents were trained with none)"}


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
        if any(key(p)[1] == FIRST_RATIO and at_defaults(p) for p in pts):
            lines += length_section(pts, parent)
        lines += today_length_section(pts, parent)
        for axis in AXES:
            rows = axis_section(pts, axis)
            if rows:
                lines += [f"{AXIS_TEXT[axis]}; in parentheses: the difference to {AXES[axis].format(DEFAULTS[axis])} "
                          "on the same child, points; '(default)': today's for a fine-tune from the parent:", "", *rows]
    text = "\n".join(lines)
    print(text)
    atomic_write_text(OUT.with_suffix(".md"), text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", choices=list(MODELS))
    p.add_argument("--budget-ratio", default="0.5", help="budget ratios to measure (1: the parent itself)")
    p.add_argument("--epochs", default="1,2,4,8", help="fine-tune lengths E to measure")
    p.add_argument("--distill", default="0,0.5", help="distillation weights to measure")
    p.add_argument("--lr", default=f"{DEFAULTS['lr']:g}", help="peak fine-tune rates to measure (finetune_lr)")
    p.add_argument("--cutout", default=f"{DEFAULTS['cutout']}", help="fine-tune cutouts to measure (0: none)")
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--val-subset", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    p.add_argument("--summary", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.summary:
        try:
            grid = [(ratio, int(epochs), distill, lr, int(cutout))
                    for ratio in floats(args.budget_ratio, "--budget-ratio", lambda v: 0 < v <= 1, "in (0, 1]")
                    for lr in floats(args.lr, "--lr", lambda v: v > 0, "> 0")
                    for cutout in floats(args.cutout, "--cutout", lambda v: v >= 0 and v == int(v),
                                         "that are whole numbers >= 0")
                    for distill in floats(args.distill, "--distill", lambda v: 0 <= v <= 1, "in [0, 1]")
                    for epochs in floats(args.epochs, "--epochs", lambda v: v >= 1 and v == int(v),
                                         "that are whole numbers >= 1")]
        except ValueError as e:
            p.error(str(e))
        data = prepare_data("fashion-mnist", train_subset=args.train_subset, val_subset=args.val_subset, seed=0)
        path = points_path(args.model)
        for ratio, epochs, distill, lr, cutout in grid:
            record = json.loads(path.read_text()) if path.exists() else {"points": []}
            if any(key(q) == (args.model, ratio, epochs, distill, lr, cutout) for q in record["points"]):
                continue
            t0 = time.perf_counter()
            result = point(args.model, ratio, epochs, distill, lr, cutout, data, args)
            print(f"{args.model} {ratio:g}x E={epochs} distill={distill:g} lr={lr:g} cutout={cutout}: held-out top-1 "
                  f"{100 * result['val_top1']:.2f}% ({time.perf_counter() - t0:.0f} s)", flush=True)
            run = provenance("benchmarks/final_curve.py", {k: v for k, v in vars(args).items() if k != "model"})
            record["points"].append({**result, "git_commit": run["git_commit"], "dirty": run["dirty"]})
            record.update(run)
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
