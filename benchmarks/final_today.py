"""``compress_models.py``'s comparison with today's final fine-tune: half the parent's epochs (issue 19, target a).

``compress_models.py`` and its companions gave every compressed network the final fine-tune of when they ran, a
quarter of the parent's epochs. The product's default is half now (``DEFAULT_FINAL_FRACTION``, chosen on
``inherit_e2e.py``'s row L and ``final_curve.py``). A search does not depend on the final fine-tune's length, so
this takes each committed search of :data:`SEARCH` — today's defaults: group_l2 channels, every fine-tune from the
parent without cutout — and gives its chosen child today's final fine-tune, and the same to Torch-Pruning's two
children (pruned again, deterministic; their parameters must match the committed ones) and to the parent itself,
the control (p). The test set is evaluated once per final model. A method's cost is its committed search (epochs,
every pass charged, and seconds) plus the new fine-tune; 'before' is the same child's committed quarter-length
fine-tune without cutout (``compress_models.py`` for sanas, ``no_cutout.py`` for the others).

    nice .venv/bin/python benchmarks/final_today.py --models resnet20 --budget-ratio 0.7   # resumable
    .venv/bin/python benchmarks/final_today.py --summary

``--methods`` picks and orders the work (by default every method; (p) runs once, with the first budget). Needs
``compress_models.py``'s parents (trained again when missing, checked against the committed digest) and its
committed records. Results: ``benchmarks/data/final_today.md`` / ``.json`` (compress_models' layout per budget:
``budgets.<ratio>.models.<net>.seeds[i].<method>.test_top1``), each finished run in
``benchmarks/data/final_today_runs/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import compress_models as cm
import harness
import no_cutout as nc
from harness import Record, beats_text, done, mean_std, provenance, within_text
from sanas.spaces import ModelSpace
from sanas.training.final import final_epochs as product_final_epochs

HERE = Path(__file__).resolve().parent
RUNS_DIR = HERE / "data" / "final_today_runs"
OUT = HERE / "data" / "final_today"
# The same runs on a parent retrained on another machine (the committed one's weights gone, CPU training not the same
# across machines): compress_models' and these records of it, kept apart; its rows are named with RETRAINED.
RETRAINED_DIR = HERE / "data" / "second_parent"
RETRAINED = " (retrained parent)"
SEARCH = "sanas_group_l2"  # compress_models' search with today's defaults
TODAY_IMPORTANCE = ModelSpace.default_importance  # its channel criterion
METHODS = {SEARCH: "(g) sanas, defaults", cm.CONTROL: "(p) the parent", "tp_uniform": "(a1) TP uniform",
           "tp_global": "(a2) TP global"}


def today_epochs(info: dict[str, Any]) -> int:
    """Today's final fine-tune for a parent trained ``info["epochs"]`` epochs (the product's default fraction)."""
    return product_final_epochs(info["epochs"])


def search_key(base: Record) -> str | None:
    """The key of ``base``'s search with today's defaults without cutout: :data:`SEARCH`, or (b) where its record
    names those same settings (a run since they became the defaults, where (b) is that search: ``--variants
    sanas_group_l2`` would only run it twice); ``None`` where there is neither."""
    if done(base, SEARCH) and base[SEARCH].get("cutout") == 0:
        return SEARCH
    today = {"cutout": 0, "importance": TODAY_IMPORTANCE, "granularity": "group", "finalist_start": True}
    if done(base, "sanas") and all(base["sanas"].get(k) == v for k, v in today.items()):
        return "sanas"
    return None


def run(name: str, ratio: float, seed: int, method: str, parent: Any, info: dict[str, Any], data: Any,
        args: argparse.Namespace) -> None:
    """``method`` (not the control) for one (network, budget, seed), its record saved as it ends."""
    base_path = args.base_runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json"
    base = Record(base_path, seed)
    key = search_key(base)
    if key is None or not all(done(base, k) for k in ("tp_uniform", "tp_global")):
        print(f"  {name} {ratio:g}x seed {seed}: no finished search of {SEARCH} without cutout in "
              f"{harness.relative(base_path)}; skipped", flush=True)
        return
    epochs = today_epochs(info)
    record = Record(args.runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json", seed)
    record.update(budget=base["budget"], final_epochs=epochs)
    if done(record, method):
        return
    work = args.work_dir / name / f"{ratio:g}x" / f"seed-{seed}" / method
    harness.start_fresh(work)
    label = f"{name} {ratio:g}x seed {seed} {method}"
    if method == SEARCH:
        search = base[key]
        space = ModelSpace(parent, example_input=[1, 32, 32], granularity=search["granularity"])
        out = cm.finetune(space, search["tokens"], parent, data, seed, epochs, work, search["importance"],
                          search["params"], label)
        out.update({k: search[k] for k in ("tokens", "importance", "granularity", "candidates", "search")},
                   before=search["test_top1"])
    else:
        out = cm.tp_finetuned(parent, base["budget"], method == "tp_global", data, seed, epochs, work,
                              base[method]["params"], label)
        earlier = Record(args.before_runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json", seed)
        if done(earlier, method):
            out.update(before=earlier[method]["test_top1"])
    record[method] = out
    record.save()
    print(f"  {label}: test {100 * out['test_top1']:.2f}% after {epochs} epochs"
          + (f" ({100 * out['before']:.2f}% after {cm.final_epochs(info['epochs'])})" if "before" in out else ""),
          flush=True)


def control(name: str, seed: int, parent: Any, info: dict[str, Any], data: Any, args: argparse.Namespace) -> None:
    """(p): the parent through today's final fine-tune; 'before' from ``no_cutout.py``'s control."""
    record = cm.control(name, seed, parent, info, data, SimpleNamespace(runs_dir=args.runs_dir,
                                                                        work_dir=args.work_dir), today_epochs(info))
    earlier = Record(args.before_runs_dir / name / "control" / f"seed-{seed}.json", seed)
    if done(earlier, cm.CONTROL) and "before" not in record[cm.CONTROL]:
        record[cm.CONTROL]["before"] = earlier[cm.CONTROL]["test_top1"]
        record.save()


# --- the table ------------------------------------------------------------------------------------------------------
def summarise(args: argparse.Namespace) -> int:
    lines = ["# Compression with today's final fine-tune (benchmarks/final_today.py)", "",
             f"`compress_models.py`'s committed searches with today's defaults ((g): `{SEARCH}`) and its "
             "Torch-Pruning children, each fine-tuned as the product does today: half the parent's epochs (they "
             "ran with a quarter), distillation from the parent, no cutout; (p) the parent itself through the same "
             "fine-tune. Test top-1 (%), mean ± std over the seeds where (g) has finished (a column where a seed "
             "lacks it: —); differences paired by seed; 'beats' = the mean difference above the largest std "
             "(either side's, or the differences'). Cost: epochs charge every pass (the committed search's and the "
             f"new fine-tune's). A network named '{RETRAINED.strip()}' ran all of it — parent, searches, Torch-Pruning "
             "— on a parent retrained from the same recipe on another machine (another parent: CPU training differs "
             "across machines), its records apart; it counts for the targets where the committed parent's runs have "
             "no three seeds.", "",
             "| budget | network | seeds | fine-tune epochs | parent | (p) | (a1) TP uniform | (a2) TP global | "
             "(g) sanas | (g) − (a1) | (g) − (a2) | (g) − parent | (g) − (p) | epochs (g) / (a1) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    budgets: dict[str, Any] = {}
    second = args.retrained / "final_today_runs", args.retrained / "compress_models_runs", RETRAINED
    own = second[0].resolve() == args.runs_dir.resolve()  # the retrained parent's own table: no rows beside
    for ratio in args.ratios:
        for name in cm.MODELS:
            committed = row(ratio, name, args.runs_dir, args.base_runs_dir)
            retrained = None if own else row(ratio, name, *second)
            lines += [found[0] for found in (committed, retrained) if found]
            # the targets judge each network once: on the committed parent, or on the retrained one where only
            # that one has three seeds
            if retrained and len(retrained[1]["seeds"]) >= 3 and (not committed or len(committed[1]["seeds"]) < 3):
                chosen = name + RETRAINED, retrained[1]
            elif committed:
                chosen = name, committed[1]
            else:
                continue
            budgets.setdefault(f"{ratio:g}", {"settings": {"budget_ratio": ratio}, "models": {}})["models"].update(
                [chosen])
    if not budgets:
        print("nothing finished yet", file=sys.stderr)
        return 1
    lines += nc.target_lines(budgets, len(cm.MODELS), SEARCH, "(g)")
    lines += gain_lines(budgets)
    harness.publish(args.out.with_name(f"{args.out.name}.md"), "\n".join(lines),
                    {**provenance("benchmarks/final_today.py", vars(args)), "budgets": budgets})
    return 0


def row(ratio: float, name: str, runs_dir: Path, base_runs_dir: Path, label: str = "",
        ) -> tuple[str, dict[str, Any]] | None:
    """One (budget, network)'s table line (the network named with ``label``) and its record, from the runs of
    ``runs_dir`` and the parent of ``base_runs_dir``; ``None`` where (g) has no finished seed."""
    folder = runs_dir / name / f"{ratio:g}x"
    runs = {r["seed"]: r for r in harness.finished(folder, [SEARCH])} if folder.is_dir() else {}
    if not runs:
        return None
    seeds = sorted(runs)
    controls = {r["seed"]: r for r in harness.finished(runs_dir / name / "control", [cm.CONTROL])} \
        if (runs_dir / name / "control").is_dir() else {}
    for s in seeds:
        if s in controls:
            runs[s][cm.CONTROL] = controls[s][cm.CONTROL]
    parent = Record(base_runs_dir / name / "parent.json", 0)["test_top1"]
    acc = {m: [runs[s][m]["test_top1"] for s in seeds] if all(done(runs[s], m) for s in seeds) else []
           for m in METHODS}
    g = acc[SEARCH]
    cells = [mean_std(acc[m], 100) if acc[m] else "—" for m in (cm.CONTROL, "tp_uniform", "tp_global", SEARCH)]
    versus = [beats_text(g, acc[m]) if acc[m] else "—" for m in ("tp_uniform", "tp_global")]
    ratios = [cm.total_epochs(runs[s][SEARCH]) / cm.total_epochs(runs[s]["tp_uniform"]) for s in seeds
              if done(runs[s], "tp_uniform")]
    cost = f"{statistics.mean(ratios):.1f}×" if acc["tp_uniform"] else "—"
    line = (f"| {ratio:g}× | {name}{label} | {','.join(map(str, seeds))} | {runs[seeds[0]]['final_epochs']} | "
            f"{100 * parent:.2f} | {' | '.join(cells)} | {' | '.join(versus)} | "
            f"{within_text(g, [parent] * len(g))} | {within_text(g, acc[cm.CONTROL]) if acc[cm.CONTROL] else '—'} | "
            f"{cost} |")
    return line, {"parent_top1": parent, "seeds": [runs[s] for s in seeds]}


def gain_lines(budgets: dict[str, Any]) -> list[str]:
    """Each method's gain from the longer fine-tune: today's minus its 'before', paired by seed."""
    rows = []
    for ratio, budget in budgets.items():
        for name, model in budget["models"].items():
            cells = []
            for method in METHODS:
                pairs = [(s[method]["test_top1"], s[method]["before"]) for s in model["seeds"]
                         if "before" in s.get(method, {})]
                cells.append(mean_std([a - b for a, b in pairs], 100, signed=True)
                             if pairs and len(pairs) == len(model["seeds"]) else "—")
            rows.append(f"| {ratio}× | {name} | " + " | ".join(cells) + " |")
    return ["", "Each method's gain from the longer fine-tune: today's minus the same child after the quarter-length "
            "fine-tune without cutout (points, paired by seed):", "",
            "| budget | network | " + " | ".join(METHODS.values()) + " |", "|---|---|---:|---:|---:|---:|", *rows]


def methods(text: str) -> list[str]:
    """``--methods``: the keys of :data:`METHODS`, in the order given."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: expected methods among {', '.join(METHODS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(cm.MODELS))
    p.add_argument("--budget-ratio", default="0.7,0.5,0.3", help="budgets as ratios of the parent's parameters")
    p.add_argument("--methods", type=methods, default=list(METHODS),
                   help=f"what to run, in this order (comma-separated, of {', '.join(METHODS)})")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary", action="store_true", help="only print/write the table from finished runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=cm.WORK_DIR / "final_today")
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    p.add_argument("--base-runs-dir", type=Path, default=cm.RUNS_DIR, help="compress_models' committed records")
    p.add_argument("--before-runs-dir", type=Path, default=nc.RUNS_DIR,
                   help="no_cutout's committed records: the baselines' and (p)'s quarter-length fine-tunes")
    p.add_argument("--retrained", type=Path, default=RETRAINED_DIR,
                   help="for the table: a parent retrained on another machine, compress_models_runs/ and "
                        "final_today_runs/ of it (their rows beside; they judge a network only the committed "
                        "parent's runs lack)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    try:
        args.ratios = harness.floats(args.budget_ratio, "--budget-ratio", lambda v: 0 < v <= 1, "in (0, 1]")
        seeds = harness.seeds(args.seeds)
    except ValueError as e:
        p.error(str(e))
    harness.setup(args.threads)
    if not args.summary:
        for name, parent, info, data in cm.with_parents(args.models, cm.WORK_DIR, p.error, args.base_runs_dir):
            for i, ratio in enumerate(args.ratios):
                for method in args.methods:
                    for seed in seeds:
                        if method != cm.CONTROL:
                            run(name, ratio, seed, method, parent, info, data, args)
                        elif i == 0:
                            control(name, seed, parent, info, data, args)
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
