"""Why sanas only ties Torch-Pruning's uniform ratio on some networks: the widths it searches, or the channels it keeps?

``compress_models.py`` compares whole methods: (a1) Torch-Pruning's uniform ratio keeps each layer's channels of
largest L2 norm, (b) sanas searches per-group widths and keeps the channels of largest BatchNorm γ. This adds one
child per (network, seed) at ``--budget-ratio``, (u): sanas' own uniform-width child — ``ModelSpace`` on a fine
ratio grid (``--ratio-step``, 1/32 by default, so that one ratio fills the budget as Torch-Pruning's bisection
does), :func:`sanas.spaces.uniform_tokens` at the same budget, channels chosen and weights inherited as sanas does
— fine-tuned exactly like every ``compress_models`` method (``finetune``: the product's defaults, distilled from
the parent, the test set once). Read beside the committed records of the same parents and seeds:

* (u) − (a1): the same profile (one ratio everywhere), sanas' channel choice against Torch-Pruning's → the criterion;
* (b) − (u): the same channel choice, the searched widths against one ratio → the widths.

    .venv/bin/python benchmarks/criterion_widths.py --models vgg11,resnet20,mobilenetv2   # resumable per run
    .venv/bin/python benchmarks/criterion_widths.py --summary

Needs ``compress_models.py``'s parents (``benchmarks/results/compress_v2/<net>/parent``, trained again when missing,
checked against the committed digest) and its records at the same budget. Results:
``benchmarks/data/criterion_widths.md`` / ``.json``, each finished run in ``benchmarks/data/criterion_widths_runs/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import compress_models as cm
import harness
from harness import Record, beats_text, done, mean_std, provenance
from sanas.spaces import ModelSpace, uniform_tokens
from sanas.spaces.inherit import IMPORTANCE

HERE = Path(__file__).resolve().parent
RUNS_DIR = HERE / "data" / "criterion_widths_runs"
OUT = HERE / "data" / "criterion_widths"
#: ModelSpace's ratio grid for the uniform child: fine enough that one ratio fills the budget as Torch-Pruning's
#: bisection does.
RATIO_STEP = 1 / 32


def key(importance: str) -> str:
    """The record's key of the uniform child kept by ``importance``: ``u`` (BatchNorm γ, sanas' default), ``u_l1``."""
    return "u" if importance == "bn" else f"u_{importance}"


def run(name: str, seed: int, space: ModelSpace, budget: int, parent: Any, info: dict[str, Any], data: Any,
        args: argparse.Namespace) -> None:
    record = Record(args.runs_dir / name / f"{args.budget_ratio:g}x" / f"seed-{seed}.json", seed)
    k = key(args.importance)
    if done(record, k):
        return
    work = args.work_dir / name / f"{args.budget_ratio:g}x" / f"seed-{seed}" / f"sanas_uniform_{args.importance}"
    harness.start_fresh(work)
    tokens = uniform_tokens(space, budget)
    record[k] = {"tokens": tokens, "ratio_step": args.ratio_step, "budget": budget, "importance": args.importance,
                 **cm.finetune(space, tokens, parent, data, seed, cm.final_epochs(info["epochs"]), work,
                               args.importance)}
    record.save()
    print(f"  {name} {args.budget_ratio:g}x seed {seed} sanas-uniform ({args.importance}): {record[k]['params']:,} "
          f"params, test {100 * record[k]['test_top1']:.2f}%", flush=True)


def summarise(args: argparse.Namespace) -> int:
    lines = [f"# Criterion or widths? sanas' uniform child at ≤ {args.budget_ratio:g}× the parameters "
             f"(benchmarks/criterion_widths.py)", "",
             "Test top-1 (%), mean ± std over seeds; (a1) and (b) from compress_models' records of the same parents "
             "and seeds; every child fine-tuned by the same recipe. Paired differences by seed; 'beats' = the mean "
             "difference above the largest std (either side's, or the differences').", "",
             "| network | seeds | (a1) TP uniform | (u) sanas uniform | (b) sanas search | params (a1) / (u) / (b) | "
             "(u) − (a1): criterion | (b) − (u): widths | (u, l1) | (u, l1) − (a1) |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    payload: dict[str, Any] = {}
    for name in args.models.split(","):
        folder = args.runs_dir / name / f"{args.budget_ratio:g}x"
        ours = {r["seed"]: r for r in harness.finished(folder, ["u"])} if folder.is_dir() else {}
        theirs = {r["seed"]: r for r in harness.finished(cm.RUNS_DIR / name / f"{args.budget_ratio:g}x",
                                                          ["tp_uniform", "sanas"])}
        seeds = sorted(set(ours) & set(theirs))
        if not seeds:
            continue
        a1 = [theirs[s]["tp_uniform"]["test_top1"] for s in seeds]
        u = [ours[s]["u"]["test_top1"] for s in seeds]
        b = [theirs[s]["sanas"]["test_top1"] for s in seeds]

        params = " / ".join(f"{statistics.mean(r[k]['params'] for r in rs):,.0f}" for k, rs in (
            ("tp_uniform", [theirs[s] for s in seeds]), ("u", [ours[s] for s in seeds]),
            ("sanas", [theirs[s] for s in seeds])))
        l1 = [ours[s]["u_l1"]["test_top1"] for s in seeds if done(ours[s], "u_l1")]
        l1_cells = (f"{mean_std(l1, 100)} | {beats_text(l1, a1)}" if len(l1) == len(seeds) else "– | –")
        lines.append(f"| {name} | {','.join(map(str, seeds))} | {mean_std(a1, 100)} | {mean_std(u, 100)} | "
                     f"{mean_std(b, 100)} | {params} | {beats_text(u, a1)} | {beats_text(b, u)} | {l1_cells} |")
        payload[name] = {"seeds": [{"seed": s, "tp_uniform": theirs[s]["tp_uniform"]["test_top1"],
                                    **{k: ours[s][k] for k in ("u", "u_l1") if k in ours[s]},
                                    "sanas": theirs[s]["sanas"]["test_top1"]} for s in seeds]}
    if not payload:
        print("nothing finished yet", file=sys.stderr)
        return 1
    record = {**provenance("benchmarks/criterion_widths.py", vars(args)), "models": payload}
    harness.publish(args.out.with_name(f"{args.out.name}.md"), "\n".join(lines), record)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(cm.MODELS))
    p.add_argument("--budget-ratio", type=float, default=0.5)
    p.add_argument("--ratio-step", type=float, default=RATIO_STEP, help="ModelSpace's ratio grid for the uniform child")
    p.add_argument("--importance", choices=IMPORTANCE, default="bn",
                   help="which channels the uniform child keeps (bn: sanas' default; l1: conv weights' L1 norm)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary", action="store_true", help="only print/write the table from finished runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=cm.WORK_DIR)
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    harness.setup(args.threads)
    if not args.summary:
        for name, parent, info, data in cm.with_parents(args.models, args.work_dir, p.error):
            space = ModelSpace(parent, example_input=[1, 32, 32], ratio_step=args.ratio_step)  # one trace a network
            budget = int(args.budget_ratio * info["params"])
            for seed in harness.seeds(args.seeds):
                run(name, seed, space, budget, parent, info, data, args)
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
