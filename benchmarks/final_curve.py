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


def point(name: str, epochs: int, distill: float, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    parent = MODELS[name]()
    parent.load_state_dict(load_file(args.work_dir / name / "parent" / "model.safetensors"))
    parent.eval()
    space = ModelSpace(parent, example_input=[1, 32, 32])
    tokens = child_tokens(space, args.budget_ratio)
    recipe = Recipe(evaluation="inherit", retain_epoch=epochs, distill=distill, seed=0, device="cpu")
    meter = PassMeter()
    with meter.active():
        trainer = Trainer(space, tokens, data, recipe, parent=parent)
        trainer.reestimate_bn(recipe.bn_batches)
        while trainer.steps_done < trainer.total_steps:
            trainer.run_epoch()
    return {"model": name, "epochs": epochs, "distill": distill, "tokens": tokens,
            "params": space.count_params(tokens), "val_top1": trainer.metrics[-1].val_top1,
            "curve": [m.val_top1 for m in trainer.metrics], "cost": meter.to_dict(len(data.train_indices))}


def points_path(model: str) -> Path:
    return HERE / "data" / f"final_curve_{model}.json"


def summarise(args: argparse.Namespace) -> int:
    records = [json.loads(points_path(m).read_text()) for m in MODELS if points_path(m).exists()]
    if not records:
        print("nothing measured yet", file=sys.stderr)
        return 1
    record = {"points": [p for r in records for p in r["points"]]}
    lines = ["# The final fine-tune from the parent: held-out top-1 vs its length (benchmarks/final_curve.py)", "",
             f"Child: the parent's widths narrowed evenly into [0.95, 1] × {args.budget_ratio:g} × its parameters "
             "(where sanas' search starts); fine-tuned E epochs from the parent (a cosine schedule of its own for "
             "each E), the product's defaults otherwise; held-out top-1 on 5,000 training images never trained on "
             "(the test set is not used). E / P: the fraction of the parent's own training.", ""]
    for name in sorted({p["model"] for p in record["points"]}):
        parent = json.loads((args.work_dir / name / "parent.json").read_text())
        pts = [p for p in record["points"] if p["model"] == name]
        weights = sorted({p["distill"] for p in pts})
        lengths = sorted({p["epochs"] for p in pts})
        lines += [f"## {name} (parent: {parent['epochs']} epochs, held-out top-1 {100 * parent['val_curve'][-1]:.2f} "
                  f"%; child {pts[0]['params']:,} params)", "",
                  "| E | E / P | " + " | ".join(f"distill {w:g}" for w in weights) + " |",
                  "|---:|---:|" + "---:|" * len(weights)]
        for e in lengths:
            cells = []
            for w in weights:
                hit = [p for p in pts if p["epochs"] == e and p["distill"] == w]
                cells.append(f"{100 * hit[0]['val_top1']:.2f}" if hit else "—")
            lines.append(f"| {e} | {e / parent['epochs']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(OUT.with_suffix(".md"), text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", choices=list(MODELS))
    p.add_argument("--budget-ratio", type=float, default=0.5)
    p.add_argument("--epochs", default="1,2,4,8", help="fine-tune lengths E to measure")
    p.add_argument("--distill", default="0,0.5", help="distillation weights to measure")
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--val-subset", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    p.add_argument("--summary", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.summary:
        data = prepare_data("fashion-mnist", train_subset=args.train_subset, val_subset=args.val_subset, seed=0)
        for distill in (float(w) for w in args.distill.split(",")):
            for epochs in (int(e) for e in args.epochs.split(",")):
                path = points_path(args.model)
                record = json.loads(path.read_text()) if path.exists() else {"points": []}
                if any(q["model"] == args.model and q["epochs"] == epochs and q["distill"] == distill
                       for q in record["points"]):
                    continue
                t0 = time.perf_counter()
                result = point(args.model, epochs, distill, args, data)
                print(f"{args.model} E={epochs} distill={distill:g}: held-out top-1 {100 * result['val_top1']:.2f}% "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                record["points"].append(result)
                record.update(provenance("benchmarks/final_curve.py", {k: v for k, v in vars(args).items()
                                                                       if k != "model"}))
                atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
