"""The search's start among its finalists (``[search] finalist_start``): what it changes in the compression benchmark.

sanas screens its candidates with BatchNorm re-estimation alone, fine-tunes the best few (the *finalists*) one
epoch each and chooses the best of them. At aggressive budgets the screening reward is close to chance (0.15–0.26
top-1 at 0.3× on ResNet-20) and can lead the chain to candidates that fine-tune worse than where it started: the
parent's widths narrowed evenly into the budget band (the chain's first candidate, trial 0). With
``finalist_start`` the start is always a finalist too, so the search cannot choose a child whose fine-tuned reward is
below its own start's.

The setting changes nothing before the finalists stage — the chain, its screening and its finalists are the same —
so this replays that stage on ``compress_models.py``'s committed searches (``--method``, by default ``sanas_l1``:
today's default criterion) exactly as the product runs it: the start is fine-tuned as a finalist (the same recipe,
seed and data), the choice is the product's :func:`~sanas.runs.finalists.chosen` over the recorded finalists and
the start, and where the start is chosen it gets the same final fine-tune as every method (the test set once).
Elsewhere the recorded final model is the one the product would train (the same tokens, the same deterministic
fine-tune); where the choice changes, the recorded best finalist is fine-tuned again first and must reproduce its
recorded reward, or the run stops. The start's finalist epochs are charged to every run.

Its records ran when fine-tunes from the parent used the recipe's cutout of 16, like the searches they replay; today's
fine-tunes train without it (``no_cutout.py``), so a fresh replay now stops at the check of the recorded reward.

    .venv/bin/python benchmarks/finalist_start.py --models resnet20 --budget-ratio 0.5,0.3,0.7   # resumable per run
    .venv/bin/python benchmarks/finalist_start.py --summary

Needs ``compress_models.py``'s parents (trained again when missing, checked against the committed digest) and its
committed records. Results: ``benchmarks/data/finalist_start.md`` / ``.json``, each finished run in
``benchmarks/data/finalist_start_runs/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import compress_models as cm
import harness
from harness import PassMeter, Record, beats, beats_text, done, mean_std, provenance, within_text
from sanas.runs.config import SEARCH_DEFAULTS
from sanas.runs.finalists import add_start, chosen, recipe_of_finalists
from sanas.spaces import ModelSpace
from sanas.training import Recipe, evaluate_candidate

HERE = Path(__file__).resolve().parent
RUNS_DIR = HERE / "data" / "finalist_start_runs"
OUT = HERE / "data" / "finalist_start"
KEY = "with_start"


def finalists_with_start(search: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The recorded finalists of a search and its start as the product picks them with ``finalist_start``
    (:func:`~sanas.runs.finalists.pick_finalists`): the start (the earliest evaluation) marked among them, or
    appended; ``None`` as the second item when it was among them already (nothing to replay)."""
    finalists = [dict(f) for f in search["finalists"]]
    first = min(search["log"], key=lambda e: e["trial"])
    start = add_start(finalists, {"trial": first["trial"], "tokens": first["tokens"], "screen_reward": first["reward"]})
    return finalists, start


def fine_tune_as_finalist(tokens: list[int], space: ModelSpace, data: Any, recipe: Recipe,
                          parent: Any) -> dict[str, Any]:
    """A finalist's reward as the product's finalists stage computes it, and what it cost."""
    meter = PassMeter()
    finalist = recipe_of_finalists(recipe, SEARCH_DEFAULTS["finalist_epochs"])
    with meter.active():
        result = evaluate_candidate(tokens, space, data, finalist, progress="none", parent=parent)
    if not result.ok:
        raise RuntimeError(f"the finalist {tokens} failed: {result.reason}")
    return {"reward": result.reward, "cost": meter.to_dict(len(data.train_indices))}


def run(name: str, ratio: float, seed: int, parent: Any, info: dict[str, Any], data: Any,
        args: argparse.Namespace) -> None:
    record = Record(args.runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json", seed)
    if done(record, KEY):
        return
    base_path = cm.RUNS_DIR / name / f"{ratio:g}x" / f"seed-{seed}.json"
    base = Record(base_path, seed)
    if not done(base, args.method):
        print(f"  {name} {ratio:g}x seed {seed}: no {args.method} record in {harness.relative(base_path)}; skipped",
              flush=True)
        return
    search = base[args.method]
    space = ModelSpace(parent, example_input=[1, 32, 32])
    recipe = Recipe(evaluation="inherit", seed=seed, device="cpu", importance=search["importance"])
    finalists, start = finalists_with_start(search)
    out: dict[str, Any] = {"method": args.method, "start_trial": (start or next(f for f in finalists if
                                                                                 f.get("start")))["trial"]}
    extra = PassMeter().to_dict(1)
    if start is not None:
        scored = fine_tune_as_finalist(start["tokens"], space, data, recipe, parent)
        start["reward"], extra = scored["reward"], scored["cost"]
    pick = chosen({"finalists": [{**f, "done": True} for f in finalists]})
    assert pick is not None
    out.update(finalists=finalists, switched=pick["tokens"] != search["tokens"], tokens=pick["tokens"],
               start_finalist=extra)
    if out["switched"]:
        best = max(search["finalists"], key=lambda f: f["reward"])
        again = fine_tune_as_finalist(best["tokens"], space, data, recipe, parent)["reward"]
        if again != best["reward"]:
            raise RuntimeError(f"{name} {ratio:g}x seed {seed}: the recorded best finalist fine-tuned to {again}, "
                               f"recorded {best['reward']}: this machine does not reproduce the search; stopping")
        out["replayed_best_finalist"] = again
        work = args.work_dir / name / f"{ratio:g}x" / f"seed-{seed}" / "finalist_start_final"
        harness.start_fresh(work)
        out.update(cm.finetune(space, pick["tokens"], parent, data, seed, cm.final_epochs(info["epochs"]), work,
                               search["importance"]))
    else:
        out.update({k: search[k] for k in ("test_top1", "val_top1", "params", "macs", "final")})
    search_cost = dict(search["search"])
    for k in ("epochs", "seconds"):
        search_cost[k] = round(search_cost[k] + extra[k], 4)
    out["search"] = search_cost
    record[KEY] = out
    record.save()
    print(f"  {name} {ratio:g}x seed {seed}: start reward {start['reward'] if start else 'among them'}, "
          f"{'switched to the start' if out['switched'] else 'same choice'}; test {100 * out['test_top1']:.2f}% "
          f"({args.method}: {100 * search['test_top1']:.2f}%)", flush=True)


def summarise(args: argparse.Namespace) -> int:
    lines = ["# The search's start among its finalists (benchmarks/finalist_start.py)", "",
             f"Replayed on `compress_models.py`'s committed searches of `{args.method}`: "
             "(c) as it ran (the 4 best screened candidates fine-tuned one epoch each, the best chosen) and (c+s) "
             "with the search's start a finalist too, today's default. Test top-1 (%), mean ± std over seeds; "
             "(p): the parent given the same final fine-tune (`compress_models.py --control`). Differences paired "
             "by seed; 'beats' = the mean difference above the largest std (either side's, or the differences').", "",
             "| budget | network | parent | (p) | (a1) TP uniform | (a2) TP global | (c) as run | (c+s) | "
             "switched | (c+s) − (a1) | (c+s) − (a2) | (c+s) − parent | (c+s) − (p) | epochs (c+s) / (a1) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    payload: dict[str, Any] = {}
    for ratio in args.ratios:
        for name in cm.MODELS:
            folder = args.runs_dir / name / f"{ratio:g}x"
            ours = {r["seed"]: r for r in harness.finished(folder, [KEY])} if folder.is_dir() else {}
            theirs = {r["seed"]: r for r in harness.finished(cm.RUNS_DIR / name / f"{ratio:g}x",
                                                              ["tp_uniform", "tp_global", args.method])}
            seeds = sorted(set(ours) & set(theirs))
            if not seeds:
                continue
            parent = json.loads((cm.RUNS_DIR / name / "parent.json").read_text())
            controls = cm.control_states(cm.RUNS_DIR / name, [theirs[s] for s in seeds])
            a1, a2, c = ([theirs[s][k]["test_top1"] for s in seeds] for k in ("tp_uniform", "tp_global", args.method))
            cs = [ours[s][KEY]["test_top1"] for s in seeds]

            ctl = [r[cm.CONTROL]["test_top1"] for r in controls]
            epochs = [cm.total_epochs(ours[s][KEY]) / cm.total_epochs(theirs[s]["tp_uniform"]) for s in seeds]
            switched = [str(s) for s in seeds if ours[s][KEY]["switched"]]
            lines.append(f"| {ratio:g}× | {name} | {100 * parent['test_top1']:.2f} | "
                         f"{mean_std(ctl, 100) if ctl else '—'} | {mean_std(a1, 100)} | {mean_std(a2, 100)} | "
                         f"{mean_std(c, 100)} | {mean_std(cs, 100)} | {','.join(switched) or 'none'} | "
                         f"{beats_text(cs, a1)} | {beats_text(cs, a2)} | "
                         f"{within_text(cs, [parent['test_top1']] * len(cs))} | "
                         f"{within_text(cs, ctl) if ctl else '—'} | {statistics.mean(epochs):.1f}× |")
            payload.setdefault(f"{ratio:g}", {})[name] = {"seeds": [ours[s] for s in seeds]}
    if not payload:
        print("nothing finished yet", file=sys.stderr)
        return 1
    lines += ["", "Seeds 0, 1, 2 where every row has them; 'switched': the seeds whose choice the start changed."]
    lines += granularity_lines(args, payload)
    record = {**provenance("benchmarks/finalist_start.py", vars(args)), "results": payload}
    harness.publish(args.out.with_name(f"{args.out.name}.md"), "\n".join(lines), record)
    return 0


def granularity_lines(args: argparse.Namespace, payload: dict[str, Any]) -> list[str]:
    """Issue 19's item 6 beside (c+s): (d) ``compress_models.py --variants sanas_stage`` — today's defaults with one
    token per stage — against (c+s), today's defaults with one token per channel group, seed by seed."""
    rows = []
    for ratio in args.ratios:
        for name in cm.MODELS:
            folder = args.runs_dir / name / f"{ratio:g}x"
            ours = {r["seed"]: r for r in harness.finished(folder, [KEY])} if folder.is_dir() else {}
            stage = {r["seed"]: r for r in harness.finished(cm.RUNS_DIR / name / f"{ratio:g}x", ["sanas_stage"])}
            seeds = sorted(set(ours) & set(stage))
            if not seeds:
                continue
            d = [stage[s]["sanas_stage"] for s in seeds]
            cs = [ours[s][KEY] for s in seeds]
            diff, _, win = beats([r["test_top1"] for r in d], [r["test_top1"] for r in cs])
            lose = beats([r["test_top1"] for r in cs], [r["test_top1"] for r in d])[2]
            ratio_of = {k: statistics.mean(a[k] / b[k] for a, b in zip(d, cs, strict=True)) for k in ("params", "macs")}
            epochs = statistics.mean(cm.total_epochs(a) / cm.total_epochs(b) for a, b in zip(d, cs, strict=True))
            rows.append(f"| {ratio:g}× | {name} | {len(cs[0]['tokens'])} / {len(d[0]['tokens'])} | "
                        f"{','.join(map(str, seeds))} | {mean_std([r['test_top1'] for r in cs], 100)} | "
                        f"{mean_std([r['test_top1'] for r in d], 100)} | {mean_std(diff, 100, signed=True)}"
                        f"{' (beats)' if win else ' (loses)' if lose else ''} | {ratio_of['params']:.2f} / "
                        f"{ratio_of['macs']:.2f} | {epochs:.2f}× |")
            payload.setdefault(f"{ratio:g}", {}).setdefault(name, {})["sanas_stage"] = [stage[s]["sanas_stage"]
                                                                                       for s in seeds]
    if not rows:
        return []
    return ["", "## Per-stage or per-group tokens (issue 19, item 6)", "",
            "(d): `compress_models.py --variants sanas_stage` — today's defaults (filter-L1 channels, the start among "
            "the finalists) with one token per stage (`ModelSpace(granularity=\"stage\")`: groups of the same "
            "trained width, feature-map size and kind share one) — against (c+s), the same with one token per "
            "channel group (the default). VGG-11's stages are its groups (8 tokens either way): not run.", "",
            "| budget | network | tokens (c+s) / (d) | seeds | (c+s) per group | (d) per stage | (d) − (c+s) | "
            "params / MACs (d) ÷ (c+s) | epochs (d) ÷ (c+s) |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|", *rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(cm.MODELS))
    p.add_argument("--budget-ratio", default="0.5,0.3,0.7", help="budgets as ratios of the parent's parameters")
    p.add_argument("--method", default="sanas_l1", choices=["sanas", *cm.VARIANTS],
                   help="which of compress_models' sanas records to replay (sanas_l1: today's default criterion)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary", action="store_true", help="only print/write the table from finished runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=cm.WORK_DIR)
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.ratios = [float(r) for r in args.budget_ratio.split(",")]
    harness.setup(args.threads)
    if not args.summary:
        for name, parent, info, data in cm.with_parents(args.models, args.work_dir, p.error):
            for ratio in args.ratios:
                for seed in harness.seeds(args.seeds):
                    run(name, ratio, seed, parent, info, data, args)
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
