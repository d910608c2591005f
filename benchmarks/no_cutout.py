"""The fine-tunes from the parent without cutout (``Recipe.cutout``'s inherit default): what it changes in the
compression benchmark.

``compress_models.py``'s parents were trained without cutout, and every fine-tune from them (sanas' finalists, the
final fine-tune of every method, the control) ran with the recipe's cutout of 16 from DARTS. A fine-tune from the
parent now trains without it unless asked. The change touches nothing before sanas' finalists stage — its
candidates are scored after BatchNorm re-estimation, which never augments — so this replays, on the committed
searches of ``--method`` (by default ``sanas_l1``, today's criterion), everything after the screening exactly as the
product runs it today: the finalists (the 4 best screened and the search's start) fine-tuned one epoch each, the
product's choice among them (:func:`~sanas.runs.finalists.chosen`), its final fine-tune; Torch-Pruning's two
children (pruned again, deterministic; their parameters must match the committed ones) and the parent itself (the
control) through the same final fine-tune; and (u), sanas' own uniform-width child (``criterion_widths.py``'s),
the same way, which separates what the searched widths add from what the channels sanas keeps cost
(``--no-uniform`` skips it; ``--uniform-importance`` keeps its channels by other criteria, each its own record). The
summary also reads, beside the replays, ``compress_models.py``'s searches that already ran as the product runs today
(:data:`SEARCHES`: ``--variants sanas_group_l2,sanas_quarter``; every seed without cutout), paired by seed with
the same no-cutout baselines, and judges them against the targets too. The test set is touched once per final model.

Cost: the committed screening's epochs, plus every finalist's fine-tune as metered here (the start's epoch is
new where it was not among the 4 best); seconds: the committed search's less its finalists', plus the new ones'.

    .venv/bin/python benchmarks/no_cutout.py --models resnet20 --budget-ratio 0.7   # resumable per method
    .venv/bin/python benchmarks/no_cutout.py --summary

Needs ``compress_models.py``'s parents (trained again when missing, checked against the committed digest) and its
committed records. Results: ``benchmarks/data/no_cutout.md`` / ``.json`` (per budget, compress_models' layout:
``budgets.<ratio>.models.<net>.seeds[i].<method>.test_top1``), each finished run in
``benchmarks/data/no_cutout_runs/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import compress_models as cm
import criterion_widths as cw
import finalist_start as fs
import harness
from harness import Record, beats_text, done, mean_std, provenance, within_text
from sanas.runs.finalists import chosen
from sanas.spaces import ModelSpace, uniform_tokens
from sanas.spaces.inherit import IMPORTANCE
from sanas.training import Recipe

HERE = Path(__file__).resolve().parent
RUNS_DIR = HERE / "data" / "no_cutout_runs"
OUT = HERE / "data" / "no_cutout"
BASELINES = (("tp_uniform", False), ("tp_global", True))
UNIFORM = "sanas_uniform"
#: compress_models' sanas variants searched after the change, i.e. as the product runs today (no fine-tune with cutout):
#: nothing to replay, so their committed records are read beside the replays, paired by seed with the same
#: no-cutout baselines. Key -> the table's label.
SEARCHES = {"sanas_group_l2": "(g) sanas, group_l2 channels",
            "sanas_quarter": "(q) sanas, (g) with ¼-epoch candidates and no finalists, at (g)'s epochs"}


def baselines(name: str, ratio: float, seed: int, parent: Any, info: dict[str, Any], data: Any, base: Record,
              record: Record, args: argparse.Namespace) -> None:
    """Torch-Pruning's children, pruned as committed, through today's final fine-tune."""
    for method, global_pruning in BASELINES:
        if done(record, method):
            continue
        work = args.work_dir / name / f"{ratio:g}x" / f"seed-{seed}" / "no_cutout" / method
        harness.start_fresh(work)
        out = cm.tp_finetuned(parent, base["budget"], global_pruning, data, seed, cm.final_epochs(info["epochs"]),
                              work, base[method]["params"], f"{name} {ratio:g}x {method}")
        out.update(before=base[method]["test_top1"])
        record[method] = out
        record.save()
        print(f"  {name} {ratio:g}x seed {seed} {method}: test {100 * out['test_top1']:.2f}% (committed "
              f"{100 * out['before']:.2f}%)", flush=True)


def sanas(name: str, ratio: float, seed: int, parent: Any, info: dict[str, Any], data: Any, base: Record,
          record: Record, args: argparse.Namespace) -> None:
    """The committed search's finalists and start fine-tuned again, the product's choice, its final fine-tune."""
    if done(record, "sanas"):
        return
    search = base[args.method]
    space = ModelSpace(parent, example_input=[1, 32, 32])
    recipe = Recipe(evaluation="inherit", seed=seed, device="cpu", importance=search["importance"])
    finalists, appended = fs.finalists_with_start(search)
    spent = {"epochs": 0.0, "seconds": 0.0}
    for finalist in finalists:
        scored = fs.fine_tune_as_finalist(finalist["tokens"], space, data, recipe, parent)
        finalist.update(reward_before=finalist.get("reward"), reward=scored["reward"],
                        seconds=scored["cost"]["seconds"])
        if finalist is appended:
            spent["epochs"] += scored["cost"]["epochs"]
        spent["seconds"] += scored["cost"]["seconds"]
    pick = chosen({"finalists": [{**f, "done": True} for f in finalists]})
    assert pick is not None
    work = args.work_dir / name / f"{ratio:g}x" / f"seed-{seed}" / "no_cutout" / "sanas_final"
    harness.start_fresh(work)
    out = cm.finetune(space, pick["tokens"], parent, data, seed, cm.final_epochs(info["epochs"]), work,
                      search["importance"])
    committed = search["search"]
    seconds = committed["seconds"] - sum(f["seconds"] for f in search["finalists"]) + spent["seconds"]
    cost = {**committed, "epochs": round(committed["epochs"] + spent["epochs"], 4), "seconds": round(seconds, 1)}
    before = with_start(name, ratio, seed, search, args.method)  # with cutout, the start a finalist
    out.update(method=args.method, tokens=pick["tokens"], importance=search["importance"], finalists=finalists,
               switched=pick["tokens"] != before["tokens"], search=cost, before=before["test_top1"])
    record["sanas"] = out
    record.save()
    print(f"  {name} {ratio:g}x seed {seed} sanas: {'another child' if out['switched'] else 'the same child'}, "
          f"test {100 * out['test_top1']:.2f}% (committed {100 * out['before']:.2f}%)", flush=True)


def uniform_key(importance: str, search_importance: str) -> str:
    """The record's key of (u) kept by ``importance``: ``sanas_uniform`` for the search's own criterion,
    ``sanas_uniform_<importance>`` for another (``--uniform-importance``)."""
    return UNIFORM if importance == search_importance else f"{UNIFORM}_{importance}"


def uniform(name: str, ratio: float, seed: int, parent: Any, info: dict[str, Any], data: Any, base: Record,
            record: Record, args: argparse.Namespace) -> None:
    """(u): sanas' own uniform-width child at the same budget (``criterion_widths.py``'s: one ratio on a 1/32 grid,
    the channels of the search's criterion, or of each of ``args.uniform_importance``), through the same final
    fine-tune. Against it, (c+s) − (u) is what the searched widths add, (u) − (a1) what sanas' channel choice does
    against Torch-Pruning's at one ratio."""
    search_importance = base[args.method]["importance"]
    todo = [i for i in getattr(args, "uniform_importance", None) or [search_importance]
            if not done(record, uniform_key(i, search_importance))]
    if not todo:
        return
    space = ModelSpace(parent, example_input=[1, 32, 32], ratio_step=cw.RATIO_STEP)  # one child for every criterion
    tokens = uniform_tokens(space, base["budget"])
    for importance in todo:
        key = uniform_key(importance, search_importance)
        work = args.work_dir / name / f"{ratio:g}x" / f"seed-{seed}" / "no_cutout" / key
        harness.start_fresh(work)
        out = cm.finetune(space, tokens, parent, data, seed, cm.final_epochs(info["epochs"]), work, importance)
        earlier = Record(cw.RUNS_DIR / name / f"{ratio:g}x" / f"seed-{seed}.json", seed).get(cw.key(importance), {})
        before = {"before": earlier["test_top1"]} if earlier.get("tokens") == tokens and "test_top1" in earlier else {}
        record[key] = {**out, "tokens": tokens, "ratio_step": cw.RATIO_STEP, "importance": importance, **before}
        record.save()
        print(f"  {name} {ratio:g}x seed {seed} sanas' uniform child ({importance}): {out['params']:,} params, test "
              f"{100 * out['test_top1']:.2f}%", flush=True)


def with_start(name: str, ratio: float, seed: int, search: dict[str, Any], method: str) -> dict[str, Any]:
    """The committed search as today's product would have finished it with cutout: ``finalist_start.py``'s replay
    where there is one (the start among the finalists), else the search as run (the start was among them, or it
    ran with the setting)."""
    path = fs.RUNS_DIR / name / f"{ratio:g}x" / f"seed-{seed}.json"
    replay = Record(path, seed)
    return replay[fs.KEY] if done(replay, fs.KEY) and replay[fs.KEY]["method"] == method else search


def with_before(record: dict[str, Any], committed: Path) -> dict[str, Any]:
    """A control record (``compress_models.control``'s, which names no earlier result) with the committed control's
    test top-1 as its ``before``: the parent through the final fine-tune with cutout 16."""
    before = Record(committed, record["seed"])
    if done(before, cm.CONTROL):
        record[cm.CONTROL] = {**record[cm.CONTROL], "before": before[cm.CONTROL]["test_top1"]}
    return record


def run(name: str, ratio: float, seed: int, parent: Any, info: dict[str, Any], data: Any,
        args: argparse.Namespace) -> None:
    base_path = args.base_runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json"
    base = Record(base_path, seed)
    if not all(done(base, k) for k in ("tp_uniform", "tp_global", args.method)):
        print(f"  {name} {ratio:g}x seed {seed}: no finished run in {harness.relative(base_path)}; skipped", flush=True)
        return
    record = Record(args.runs_dir / name / f"{ratio:g}x" / f"seed-{seed}.json", seed)
    record.update(budget=base["budget"], final_epochs=cm.final_epochs(info["epochs"]))
    baselines(name, ratio, seed, parent, info, data, base, record, args)
    sanas(name, ratio, seed, parent, info, data, base, record, args)
    if not args.no_uniform:
        uniform(name, ratio, seed, parent, info, data, base, record, args)


# --- the table ------------------------------------------------------------------------------------------------------
def summarise(args: argparse.Namespace) -> int:
    lines = ["# Fine-tunes from the parent without cutout (benchmarks/no_cutout.py)", "",
             f"`compress_models.py`'s committed searches of `{args.method}` with everything after their screening run "
             "again as the product runs it today — every fine-tune from the parent without cutout (before: 16): "
             "sanas' finalists (the 4 best screened and the search's start) and its choice, Torch-Pruning's two "
             "children and the parent itself (p) through the same final fine-tune. Test top-1 (%), mean ± std over "
             "seeds; differences paired by seed; 'beats' = the mean difference above the largest std (either "
             "side's, or the differences'). 'before': the same row with cutout 16 (`compress_models.py`, "
             "`finalist_start.py`).", "",
             "| budget | network | seeds | parent | (p) | (a1) TP uniform | (a2) TP global | (c+s) sanas | "
             "(c+s) − (a1) | (c+s) − (a2) | (c+s) − parent | (c+s) − (p) | epochs (c+s) / (a1) | (c+s) before | "
             "switched |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    budgets: dict[str, Any] = {}
    for ratio in args.ratios:
        for name in cm.MODELS:
            folder = args.runs_dir / name / f"{ratio:g}x"
            runs = {r["seed"]: r for r in harness.finished(folder, ["tp_uniform", "tp_global", "sanas"])} \
                if folder.is_dir() else {}
            controls = {r["seed"]: with_before(r, args.base_runs_dir / name / "control" / f"seed-{r['seed']}.json")
                        for r in harness.finished(args.runs_dir / name / "control", [cm.CONTROL])} \
                if (args.runs_dir / name / "control").is_dir() else {}
            seeds = sorted(runs)
            if not seeds:
                continue
            for key in SEARCHES:  # only where every seed ran it as today's product
                searched = {s: Record(args.base_runs_dir / name / f"{ratio:g}x" / f"seed-{s}.json", s) for s in seeds}
                if all(done(r, key) and r[key].get("cutout", cm.CUTOUT_BEFORE) == 0 for r in searched.values()):
                    for s in seeds:
                        runs[s][key] = searched[s][key]
            parent = Record(args.base_runs_dir / name / "parent.json", 0)
            a1, a2, cs = ([runs[s][k]["test_top1"] for s in seeds] for k in ("tp_uniform", "tp_global", "sanas"))
            ctl = [controls[s][cm.CONTROL]["test_top1"] for s in seeds if s in controls]
            ctl = ctl if len(ctl) == len(seeds) else []

            epochs = [cm.total_epochs(runs[s]["sanas"]) / cm.total_epochs(runs[s]["tp_uniform"]) for s in seeds]
            switched = [str(s) for s in seeds if runs[s]["sanas"]["switched"]]
            lines.append(f"| {ratio:g}× | {name} | {','.join(map(str, seeds))} | {100 * parent['test_top1']:.2f} | "
                         f"{mean_std(ctl, 100) if ctl else '—'} | {mean_std(a1, 100)} | {mean_std(a2, 100)} | "
                         f"{mean_std(cs, 100)} | {beats_text(cs, a1)} | {beats_text(cs, a2)} | "
                         f"{within_text(cs, [parent['test_top1']] * len(cs))} | "
                         f"{within_text(cs, ctl) if ctl else '—'} | "
                         f"{statistics.mean(epochs):.1f}× | "
                         f"{mean_std([runs[s]['sanas']['before'] for s in seeds], 100)} | "
                         f"{','.join(switched) or 'none'} |")
            models = budgets.setdefault(f"{ratio:g}", {"settings": {"budget_ratio": ratio}, "models": {}})["models"]
            models[name] = {"parent_top1": parent["test_top1"],
                            "seeds": [{**runs[s], **({cm.CONTROL: controls[s][cm.CONTROL]} if ctl else {})}
                                      for s in seeds]}
    if not budgets:
        print("nothing finished yet", file=sys.stderr)
        return 1
    lines += ["", "Seeds: those finished for a network at that budget (0, 1, 2 when complete; (p) only where it has "
              "them all); 'switched': the seeds whose choice differs from the committed search's (its finalists "
              "fine-tuned with cutout)."]
    lines += target_lines(budgets, len(cm.MODELS))
    lines += search_lines(budgets)
    for key, label in SEARCHES.items():
        lines += target_lines(budgets, len(cm.MODELS), key, label.split()[0])
    lines += uniform_lines(budgets)
    lines += before_lines(budgets)
    harness.publish(args.out.with_name(f"{args.out.name}.md"), "\n".join(lines),
                    {**provenance("benchmarks/no_cutout.py", vars(args)), "budgets": budgets})
    return 0


def target_lines(budgets: dict[str, Any], networks: int, method: str = "sanas", tag: str = "(c+s)") -> list[str]:
    """Issue 19's targets for ``method``, per budget, where every network has three seeds of it: below 0.7×, it beats
    both Torch-Pruning methods by more than one std on at least two networks; at 0.7× and above, it is within one
    std of the parent on every network. A budget still missing runs says so and claims nothing."""
    lines = ["", f"{tag} against issue 19's targets (a budget counts once all its networks have three seeds):", ""]
    for ratio, budget in budgets.items():
        models = budget["models"]
        near = budget["settings"]["budget_ratio"] >= 0.7  # judged against the parent alone
        needed = (method,) if near else (method, "tp_uniform", "tp_global")
        complete = {n: m["seeds"] for n, m in models.items()
                    if len(m["seeds"]) >= 3 and all(done(s, k) for s in m["seeds"] for k in needed)}
        if len(complete) < networks:
            lines.append(f"* {ratio}×: not measured yet ({len(complete)} of {networks} networks with three seeds).")
            continue
        acc = {n: {k: [s[k]["test_top1"] for s in seeds] for k in needed} for n, seeds in complete.items()}
        if near:
            hits = [n for n in complete
                    if harness.within_one_std(acc[n][method], [models[n]["parent_top1"]] * len(acc[n][method]))[2]]
            need, rule = networks, "within one std of the parent"
        else:
            hits = [n for n in complete
                    if all(harness.beats(acc[n][method], acc[n][b])[2] for b in ("tp_uniform", "tp_global"))]
            need, rule = 2, "beats both Torch-Pruning methods by more than one std"
        lines.append(f"* {ratio}×: {tag} {rule} on {len(hits)} of {networks} networks "
                     f"({', '.join(hits) or 'none'}; target {need}) — {'met' if len(hits) >= need else 'NOT met'}.")
    return lines


def search_lines(budgets: dict[str, Any]) -> list[str]:
    """The searches of :data:`SEARCHES` beside the replays, where every seed of a network has one: against both
    Torch-Pruning methods, (c+s) and the parent, paired by seed, and their cost against (a1)'s; a search run at the
    epochs of another (``compress_models.EQUAL_EPOCHS``) also against that one."""
    rows, equal = [], []
    for key, label in SEARCHES.items():
        tag = label.split()[0]
        for ratio, budget in budgets.items():
            for name, model in budget["models"].items():
                seeds = model["seeds"]
                if not all(done(s, key) for s in seeds):
                    continue
                a1, a2, cs, g = ([s[k]["test_top1"] for s in seeds] for k in ("tp_uniform", "tp_global", "sanas", key))
                epochs = [cm.total_epochs(s[key]) / cm.total_epochs(s["tp_uniform"]) for s in seeds]
                rows.append(f"| {ratio}× | {name} | {tag} | {','.join(str(s['seed']) for s in seeds)} | "
                            f"{100 * model['parent_top1']:.2f} | {mean_std(a1, 100)} | {mean_std(a2, 100)} | "
                            f"{mean_std(cs, 100)} | {mean_std(g, 100)} | {beats_text(g, a1)} | {beats_text(g, a2)} | "
                            f"{beats_text(g, cs)} | {within_text(g, [model['parent_top1']] * len(g))} | "
                            f"{statistics.mean(s[key]['params'] for s in seeds):,.0f} / "
                            f"{statistics.mean(s['tp_uniform']['params'] for s in seeds):,.0f} | "
                            f"{statistics.mean(epochs):.1f}× |")
                ref = cm.EQUAL_EPOCHS.get(key)
                if ref in SEARCHES and all(done(s, ref) for s in seeds):
                    r = [s[ref]["test_top1"] for s in seeds]
                    cost = [cm.total_epochs(s[key]) / cm.total_epochs(s[ref]) for s in seeds]
                    count = [s[key]["candidates"] / s[ref]["candidates"] for s in seeds]
                    equal.append(f"* {ratio}× {name}: {tag} − {SEARCHES[ref].split()[0]} {beats_text(g, r)} points "
                                 f"(paired by seed) at {statistics.mean(cost):.2f}× its total epochs, with "
                                 f"{statistics.mean(count):.2f}× its candidates.")
    if not rows:
        return []
    if equal:
        equal = ["", "Schedules at equal epochs (issue 19's item 4):", "", *equal]
    labels = "; ".join(f"{label} (`compress_models.py --variants {key}`)" for key, label in SEARCHES.items())
    return ["", f"Searches run as the product runs today (every fine-tune without cutout), read from "
            f"`compress_models.py`'s records beside the same no-cutout baselines: {labels} — today's defaults with "
            "that channel criterion in the search and the fine-tunes, or that schedule.", "",
            "| budget | network | method | seeds | parent | (a1) TP uniform | (a2) TP global | (c+s) sanas | "
            "method | − (a1) | − (a2) | − (c+s) | − parent | params: method / (a1) | epochs: method / (a1) |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|", *rows, *equal]


def uniform_lines(budgets: dict[str, Any]) -> list[str]:
    """Where every seed has sanas' own uniform child (u) by a criterion: what the searched widths add over it, and
    its channel choice against Torch-Pruning's at one ratio (a row per criterion: the search's own first)."""
    rows = []
    for ratio, budget in budgets.items():
        for name, model in budget["models"].items():
            seeds = model["seeds"]
            keys = sorted({k for s in seeds for k in s if k == UNIFORM or k.startswith(f"{UNIFORM}_")})
            for key in [k for k in keys if all(done(s, k) for s in seeds)]:
                a1, u, cs = ([s[k]["test_top1"] for s in seeds] for k in ("tp_uniform", key, "sanas"))
                before = [s[key]["before"] for s in seeds if "before" in s[key]]
                rows.append(f"| {ratio}× | {name} | {seeds[0][key]['importance']} | "
                            f"{','.join(str(s['seed']) for s in seeds)} | {mean_std(a1, 100)} | "
                            f"{mean_std(u, 100)} | {mean_std(cs, 100)} | "
                            f"{statistics.mean(s[key]['params'] for s in seeds):,.0f} / "
                            f"{statistics.mean(s['sanas']['params'] for s in seeds):,.0f} | "
                            f"{beats_text(u, a1)} | {beats_text(cs, u)} | "
                            f"{mean_std(before, 100) if len(before) == len(seeds) else '—'} |")
    if not rows:
        return []
    return ["", "Widths or channels? (u) is sanas' own uniform-width child (one ratio on a 1/32 grid, "
            "`criterion_widths.py`'s) with its channels kept by the criterion named (the search's own, or another "
            "asked by `--uniform-importance`), through the same final fine-tune: (u) − (a1) is that channel choice "
            "against Torch-Pruning's at one ratio, (c+s) − (u) what the searched widths add.", "",
            "| budget | network | (u) criterion | seeds | (a1) TP uniform | (u) sanas uniform | (c+s) sanas | "
            "params (u) / (c+s) | (u) − (a1): channels | (c+s) − (u): widths | (u) with cutout 16 |",
            "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|", *rows]


def before_lines(budgets: dict[str, Any]) -> list[str]:
    """Each method's change from cutout 16 to none, paired by seed."""
    rows = []
    for ratio, budget in budgets.items():
        for name, model in budget["models"].items():
            cells = []
            for method in (cm.CONTROL, "tp_uniform", "tp_global", "sanas"):
                if not all("before" in s.get(method, {}) for s in model["seeds"]):
                    cells.append("—")
                    continue
                diff = [s[method]["test_top1"] - s[method]["before"] for s in model["seeds"]]
                cells.append(mean_std(diff, 100, signed=True))
            rows.append(f"| {ratio}× | {name} | " + " | ".join(cells) + " |")
    return ["", "Each method without cutout minus the same with cutout 16 (points, paired by seed):", "",
            "| budget | network | (p) | (a1) | (a2) | (c+s) |", "|---|---|---:|---:|---:|---:|", *rows]


def importances(text: str) -> list[str]:
    """``--uniform-importance``: criteria by name, each known."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMPORTANCE]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: expected criteria among {', '.join(IMPORTANCE)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(cm.MODELS))
    p.add_argument("--budget-ratio", default="0.7,0.5,0.3", help="budgets as ratios of the parent's parameters")
    p.add_argument("--method", default="sanas_l1", choices=["sanas", *cm.VARIANTS],
                   help="which of compress_models' sanas records to replay (sanas_l1: today's default criterion)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--no-control", action="store_true", help="skip the parent's own final fine-tune")
    p.add_argument("--no-uniform", action="store_true", help="skip sanas' own uniform-width child (u)")
    p.add_argument("--uniform-importance", type=importances, default=None,
                   help=f"(u) with the channels of these criteria (comma-separated, of {', '.join(IMPORTANCE)}) "
                        "instead of the search's own")
    p.add_argument("--summary", action="store_true", help="only print/write the table from finished runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=cm.WORK_DIR)
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    p.add_argument("--base-runs-dir", type=Path, default=cm.RUNS_DIR, help="compress_models' committed records")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    try:
        args.ratios = harness.floats(args.budget_ratio, "--budget-ratio", lambda v: 0 < v <= 1, "in (0, 1]")
    except ValueError as e:
        p.error(str(e))
    harness.setup(args.threads)
    if not args.summary:
        for name, parent, info, data in cm.with_parents(args.models, args.work_dir, p.error, args.base_runs_dir):
            for i, ratio in enumerate(args.ratios):
                for seed in harness.seeds(args.seeds):
                    run(name, ratio, seed, parent, info, data, args)
                if i == 0 and not args.no_control:  # the (p) row, after the first budget's runs
                    for seed in harness.seeds(args.seeds):
                        cm.control(name, seed, parent, info, data, SimpleNamespace(
                            runs_dir=args.runs_dir, work_dir=args.work_dir / "no_cutout"))
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
