"""The seed's story in miniature: compress a trained 5-cell DARTS network to ≤ 0.8× its parameters (issue 19).

The seed's question: does a search over per-cell widths find a model that is smaller and at least as accurate as
the network it compresses — and better than the trivial answer, every cell scaled by one ratio? Per seed, a parent
(the init tokens of a 5-cell DartsSpace: widths 2–32, init 4/8/16, no auxiliary head) is trained from scratch to a
plateau on ``--train-subset`` Fashion-MNIST images (what a user arrives with: its epochs reported, not charged),
then compressed to ``--budget-ratio`` × its parameters:

* **A (PaddleSlim's protocol)**: ``--candidates-a`` candidates trained from scratch for ``--scratch-epochs`` (reward
  = the mean held-out top-1 of the last two epochs), the best trained from scratch again as the final model with
  the parent's own recipe.
* **B (sanas' defaults)**: ``--candidates-b`` candidates inherited from the parent and scored as the default
  recipe says, the default finalists fine-tuned, the chosen one fine-tuned from the parent for
  ``final_epochs(parent epochs)`` epochs with the default distillation.
* **U (the uniform-width child)**: every cell's width scaled by one ratio to the same budget
  (:func:`sanas.spaces.uniform_tokens`), fine-tuned exactly like B's final model.
* Where ``--rows`` names them (:data:`EXTRA`): **G**, B with ``group_l2`` channels in its search and its fine-tune
  (ModelSpace's default; DartsSpace keeps |γ|); **P**, the parent itself through B's final fine-tune; **L**, B's
  choice fine-tuned half the parent's epochs (the most target (b) allows) instead of ``final_epochs``, and **V**, U
  fine-tuned the same way (L's uniform child), and **Q**, the parent itself through L's fine-tune (L's control);
  **C**, B searching ``--candidates-c`` candidates instead of ``--candidates-b``.

Both searches are sanas' SA with its default settings (budget-filling moves, scale-free temperature) and the
run's seed; they differ in how a candidate is evaluated. The users' training recipe (lr ``--lr``, batch
``--batch-size``, no cutout or drop path) is the same everywhere; everything about the inherit evaluation is the
product's default. Rewards and choices come from a held-out split of the training set; the test set is evaluated
once per final model. Every pass is charged (:class:`harness.PassMeter`).

    .venv/bin/python benchmarks/inherit_e2e.py              # 3 seeds as parallel processes (resumable), then the table
    .venv/bin/python benchmarks/inherit_e2e.py --summary    # the table from what has run
    .venv/bin/python benchmarks/inherit_e2e.py --rows G,P   # the extra rows (each seed's parent first)
    .venv/bin/python benchmarks/inherit_e2e.py --seeds 0 --rows L,C  # one process per seed: rows share its record
    .venv/bin/python benchmarks/inherit_e2e.py --rows Q      # L's control: the parent through L's fine-tune

Results: ``benchmarks/data/inherit_e2e.md`` / ``.json`` (committed, with every finished seed's record in
``benchmarks/data/inherit_e2e_runs/``); work in ``benchmarks/results/inherit_e2e_v2/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import harness
from harness import (
    PassMeter,
    Record,
    beats,
    criterion,
    done,
    mean_std,
    method_row,
    paired,
    provenance,
    sanas_search,
    within_one_std,
)
from sanas.runs.config import SEARCH_DEFAULTS
from sanas.spaces import DartsSpace, uniform_tokens
from sanas.training import Recipe, load_model, train_final
from sanas.training.final import EARLIER_FINAL_FRACTION, final_epochs

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "results" / "inherit_e2e_v2"
RUNS_DIR = HERE / "data" / "inherit_e2e_runs"
OUT = HERE / "data" / "inherit_e2e"
FILTER_NUM = [2, 4, 6, 8, 12, 16, 24, 32]
ROWS = {"A": "A: PaddleSlim's protocol, from scratch", "B": "B: sanas' defaults",
        "U": "U: uniform-width child, fine-tuned like B"}
# Rows run only where ``--rows`` names them, to choose a default or read a gap: G, B with another channel criterion
# in its search and its fine-tune (DartsSpace keeps |γ|; ModelSpace's default became group_l2 on compress_models.py's
# networks); P, the parent itself through B's final fine-tune (compress_models.py's control): how close to the
# parent that fine-tune lets any network end.
# L, B's choice through a fine-tune as long as target (b) allows (half the parent's epochs): whether the default
# length (final_epochs, chosen on compress_models.py's networks) is what B lacks, and V, U fine-tuned like L (the
# uniform child at L's fine-tune) and Q, the parent through L's fine-tune (L's control, as P is B's); C, B with more
# candidates.
EXTRA = {"G": "G: B with importance = group_l2", "P": "P: the parent itself, fine-tuned like B (control)",
         "L": "L: B's choice fine-tuned half the parent's epochs",
         "V": "V: the uniform-width child, fine-tuned like L",
         "Q": "Q: the parent itself, fine-tuned like L (control)",
         "C": "C: B searching --candidates-c candidates"}
G_IMPORTANCE = "group_l2"
L_FRACTION = 0.5  # target (b): B's final fine-tune ≤ half the parent's epochs
PARENT_KEYS = ("tokens", "params", "macs", "test_top1", "val_curve", "epochs", "seconds")  # a record's "parent"


def space() -> DartsSpace:
    return DartsSpace(layers=5, filter_num=FILTER_NUM, init_channels=4, in_channels=1, auxiliary=False)


def recipe(args: argparse.Namespace, seed: int, **changes: Any) -> Recipe:
    """The user's training recipe; with ``evaluation="inherit"`` everything else is sanas' default."""
    return Recipe(batch_size=args.batch_size, learning_rate=args.lr, cutout=0, drop_path_prob=0.0, aux_weight=0.0,
                  seed=seed, device="cpu", **changes)


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    state = Record(args.runs_dir / f"seed-{seed}.json", seed)
    rows = args.rows.split(",")
    if "L" in rows and not done(state, "L") and not done(state, "B") and "B" not in rows:
        raise SystemExit(f"row L fine-tunes row B's choice, which seed {seed} does not have yet: add B to --rows")
    if all(done(state, r) for r in rows):  # nothing to run: no parent trained again for it (up to half an hour)
        print(f"seed {seed}: rows {','.join(rows)} are done", flush=True)
        return state
    harness.setup(args.threads)
    data = harness.fashion_mnist(args.train_subset, args.val_subset)
    train_size = len(data.train_indices)
    sp = space()
    work = args.work_dir / f"seed-{seed}"
    if "parent" not in state or not (work / "parent" / "model.safetensors").exists():
        info = harness.train_parent(sp, data, recipe(args, seed, retain_epoch=args.parent_epochs), work / "parent",
                                    progress="lines")
        if "parent" in state:  # retrained where its weights are gone: the committed rows pair with the same parent
            check_parent(state["parent"], info, args.runs_dir / f"seed-{seed}.json", work / "parent")
        else:
            state["parent"] = {k: info[k] for k in PARENT_KEYS}
            state.save()
    parent = load_model(work / "parent")
    budget = int(args.budget_ratio * state["parent"]["params"])
    final = final_epochs(args.parent_epochs, EARLIER_FINAL_FRACTION)  # the default when B, U, G and P ran (B pairs)
    longer = final_epochs(args.parent_epochs, L_FRACTION)  # rows L and V
    state.update(budget=budget, final_epochs=final)

    def finish(name: str, tokens: list[int], rec: Recipe, use_parent: bool, meter: PassMeter) -> None:
        """The final model of row ``name``; its cost is the meter's: the search's passes and these."""
        with meter.active():
            r = train_final(tokens, sp, data, rec, work / f"final-{name}", resume=True, progress="lines", onnx=False,
                            parent=parent if use_parent else None)
        state.setdefault(name, {}).update(tokens=tokens, params=r.params, macs=sp.count_macs(tokens),
                                          test_top1=r.test_top1, cost=meter.to_dict(train_size))

    def inherited_search(name: str, importance: str | None = None, candidates: int = args.candidates_b) -> None:
        """Row ``name``: sanas' defaults (channels by ``importance``, the space's default where None) — the search
        of ``candidates`` and its finalists, the chosen child fine-tuned from the parent — recorded and saved."""
        harness.start_fresh(work / name, work / f"final-{name}")
        meter = PassMeter()
        searched = recipe(args, seed, evaluation="inherit", importance=importance)
        with meter.active():
            tokens, log = sanas_search(f"{name} seed {seed}", sp, data, searched, parent, budget, seed,
                                       candidates, work / name)
        state[name] = {"search": log, "importance": sp.resolve_importance(importance),
                       "finalist_start": log["finalist_start"]}
        finish(name, tokens, recipe(args, seed, evaluation="inherit", retain_epoch=final, importance=importance),
               True, meter)
        state.save()

    def fine_tuned(name: str, tokens: list[int], epochs: int = final) -> None:
        """Row ``name``: ``tokens`` inherited from the parent, no search, given B's final fine-tune (``epochs``
        long); saved."""
        harness.start_fresh(work / f"final-{name}")
        finish(name, tokens, recipe(args, seed, evaluation="inherit", retain_epoch=epochs), True, PassMeter())
        state[name]["final_epochs"] = epochs
        state.save()

    if "A" in rows and not done(state, "A"):
        harness.start_fresh(work / "A", work / "final-A")
        meter = PassMeter()
        with meter.active():
            tokens, log = sanas_search(f"A seed {seed}", sp, data, recipe(args, seed, retain_epoch=args.scratch_epochs),
                                       None, budget, seed, args.candidates_a, work / "A")
        state["A"] = {"search": log}
        finish("A", tokens, recipe(args, seed, retain_epoch=args.parent_epochs), False, meter)
        state.save()
    if "B" in rows and not done(state, "B"):
        inherited_search("B")
    if "U" in rows and not done(state, "U"):
        fine_tuned("U", uniform_tokens(sp, budget))
    if "P" in rows and not done(state, "P"):
        fine_tuned("P", state["parent"]["tokens"])
    if "L" in rows and not done(state, "L"):
        fine_tuned("L", state["B"]["tokens"], longer)
    if "V" in rows and not done(state, "V"):
        fine_tuned("V", uniform_tokens(sp, budget), longer)
    if "Q" in rows and not done(state, "Q"):
        fine_tuned("Q", state["parent"]["tokens"], longer)
    if "G" in rows and not done(state, "G"):
        inherited_search("G", G_IMPORTANCE)
    if "C" in rows and not done(state, "C"):
        inherited_search("C", candidates=args.candidates_c)
    return state


def check_parent(recorded: dict[str, Any], retrained: dict[str, Any], record: Path, folder: Path) -> None:
    """A parent trained again (its weights are not committed) must be the recorded one — the same held-out curve and
    test top-1, as deterministic training on the same machine type gives — or the new rows would not pair with the
    committed ones: refused, naming both."""
    same = all(recorded[k] == retrained[k] for k in ("tokens", "params", "val_curve", "test_top1"))
    if not same:
        raise SystemExit(f"the parent trained again in {harness.relative(folder)} differs from the one "
                         f"{harness.relative(record)} records (test top-1 {retrained['test_top1']:.4f} vs "
                         f"{recorded['test_top1']:.4f}): its rows would not pair with the committed ones")


# --- the table ------------------------------------------------------------------------------------------------------
def start_text(states: list[dict[str, Any]]) -> str:
    """Whether B's searches fine-tuned their start among the finalists (``finalist_start``; records from before the
    setting did not), as words for the table."""
    starts = {s["B"].get("finalist_start", False) for s in states}
    return "" if starts == {False} else " and the search's start" if starts == {True} else (
        " (and the search's start in some seeds' searches)")


def extra_lines(states: list[dict[str, Any]], extra: list[str], parent: list[float], today: int) -> list[str]:
    """What the rows of :data:`EXTRA` every seed has say, paired by seed: G, L and C (each B changed one way)
    against the targets and against B; L against V (both fine-tuned the longer way) and, where B and U ran with an
    earlier default fine-tune and L's is ``today``'s, target (b) read on L and V (B's search and U with today's
    fine-tune); B against P, the parent through the same fine-tune, and L against Q, the parent through L's."""
    acc = {k: [s[k]["test_top1"] for s in states] for k in ("B", "U", *extra)}
    lines = []
    near: dict[str, bool] = {}  # within one std of the parent
    last: list[str] = []  # the targets on today's defaults, after every row's lines
    for key in (k for k in ("G", "L", "C") if k in extra):  # B changed in one way, read as B is
        gap, sd, within = within_one_std(acc[key], parent)
        near[key] = within
        lines.append(f"* {key} − parent: {mean_std(gap, 100, signed=True)} points (paired); {key}'s std "
                     f"{100 * sd:.2f} — {'within' if within else 'NOT within'} one std.")
        for base in ("U", "B"):
            gap, sd, wins = beats(acc[key], acc[base])
            lines.append(f"* {key} − {base}: {mean_std(gap, 100, signed=True)} points (paired); the largest std "
                         f"{100 * sd:.2f} — {key} {'beats' if wins else 'does NOT beat'} {base} by more than one "
                         f"std.")
    if "L" in extra and "V" in extra:
        gap, sd, wins = beats(acc["L"], acc["V"])
        lines.append(f"* L − V: {mean_std(gap, 100, signed=True)} points (paired); the largest std {100 * sd:.2f} — "
                     f"L {'beats' if wins else 'does NOT beat'} the uniform child at the same fine-tune by more "
                     f"than one std.")
        if states[0]["final_epochs"] != today and states[0]["L"]["final_epochs"] == today:
            last.append(f"* With today's default fine-tune ({today} epochs, {today / states[0]['parent']['epochs']:g} "
                         f"of the parent's), B is row L and U row V: target B ≥ parent − one std: "
                         f"{'met' if near['L'] else 'NOT met'}; B > U by more than one std: "
                         f"{'met' if wins else 'NOT met'} (the lines above).")
    for control, row in (("P", "B"), ("Q", "L")):  # the parent through row's final fine-tune
        if control not in extra:
            continue
        lines.append(f"* {control} − parent: {mean_std(paired(acc[control], parent), 100, signed=True)} points "
                     f"(paired): what {row}'s final fine-tune does to the parent itself.")
        if row in acc:
            gap, sd, within = within_one_std(acc[row], acc[control])
            lines.append(f"* {row} − {control}: {mean_std(gap, 100, signed=True)} points (paired); {row}'s std "
                         f"{100 * sd:.2f} — {'within' if within else 'NOT within'} one std of the parent fine-tuned "
                         f"the same way.")
    return lines + last


def cost(record: dict[str, Any], key: str, unit: str) -> float:
    """Row ``key``'s cost in ``unit`` (``epochs`` or ``seconds``); row L's adds B's search, which it did not run
    again: B's cost less U's (U's fine-tune is B's, on other widths: the same passes)."""
    own = record[key]["cost"][unit]
    return own + record["B"]["cost"][unit] - record["U"]["cost"][unit] if key == "L" else own


def summarise(args: argparse.Namespace) -> int:
    """The table from the seeds whose rows B and U (the targets' rows) are done; row A (an hour or more per seed
    here) from the seeds that have it, its count stated."""
    states = harness.finished(args.runs_dir, ("B", "U"))
    if not states:
        print("nothing finished yet", file=sys.stderr)
        return 1
    with_a = [s for s in states if done(s, "A")]
    parent = [s["parent"]["test_top1"] for s in states]
    acc = {k: [s[k]["test_top1"] for s in states] for k in ("B", "U")}
    p0 = states[0]["parent"]
    lines = ["# The seed's story in miniature (benchmarks/inherit_e2e.py)", "",
             f"5-cell DartsSpace (widths 2–32, init 4/8/16, no aux head) on Fashion-MNIST: {args.train_subset:,} "
             f"training images, {args.val_subset:,} held out for rewards and choices (split seed 0), test = the 10,000 "
             f"test images (once per final model). Seeds {', '.join(str(s['seed']) for s in states)}; per seed the "
             f"parent is the init tokens trained {p0['epochs']} epochs from scratch (lr {args.lr}, batch "
             f"{args.batch_size}); budget ≤ {args.budget_ratio:g} × its parameters. A searches "
             f"{args.candidates_a} candidates trained {args.scratch_epochs} epochs from scratch, its best trained "
             f"{p0['epochs']} epochs from scratch; B searches {args.candidates_b} candidates with sanas' defaults "
             f"(inherited, scored after BatchNorm re-estimation, {SEARCH_DEFAULTS['finalists']} finalists"
             f"{start_text(states)} fine-tuned {SEARCH_DEFAULTS['finalist_epochs']:g} epoch each), its choice "
             f"fine-tuned {states[0]['final_epochs']} "
             f"epochs from the parent; U is fine-tuned the same way.", "",
             "Epochs charge every pass over the training set (training images; forward-only images — BatchNorm "
             "re-estimation, held-out and test evaluations, the distillation teacher — at a third). The parent's "
             "training is not charged.", "",
             "| | test top-1 (%) | params | MACs | total epochs | wall (min) |", "|---|---:|---:|---:|---:|---:|",
             f"| parent (init tokens) | {mean_std(parent, 100)} | {p0['params']:,} | {p0['macs']:,} | "
             f"({p0['epochs']}, not charged) | – |"]
    crit = criterion(states, "B")  # B and U inherit channels by the criterion of B's run (U is fine-tuned like B)
    when = "today" if crit == DartsSpace.default_importance else "when run"
    today = final_epochs(p0["epochs"])  # today's default final fine-tune
    then = "" if states[0]["final_epochs"] == today else (  # B's and U's final fine-tune
        f"; fine-tuned {states[0]['final_epochs'] / p0['epochs']:g} of the parent's epochs, the default when run")
    inherited = f" (importance = {crit}, the default {when}{then})"
    for key, label in ROWS.items():
        rows = [s[key] for s in (with_a if key == "A" else states)]
        if key != "A":
            label += inherited
        if len(rows) < len(states):
            label += f" ({len(rows)} of {len(states)} seeds: {', '.join(str(s['seed']) for s in with_a)})"
        if rows:
            lines.append(method_row(label, rows, [r["cost"]["epochs"] for r in rows],
                                    f"{statistics.mean(r['cost']['seconds'] for r in rows) / 60:.1f}"))
    extra = [k for k in EXTRA if all(done(s, k) for s in states)]  # a row every seed has, or none
    for key in extra:
        rows = [s[key] for s in states]
        label = EXTRA[key]  # with what the records say in place of the settings' names
        if key == "C":
            label = label.replace("--candidates-c", "/".join(sorted({str(r["search"]["candidates"]) for r in rows})))
        if key == "Q":
            label = label.replace("like L", f"like L ({rows[0]['final_epochs']} epochs)")
        if key == "L":
            label = label.replace("half the parent's epochs", f"{rows[0]['final_epochs']} epochs (half the parent's)")
            label += (" (today's default)" if rows[0]["final_epochs"] == today else "") + (
                " (cost: B's search + this fine-tune)")
        lines.append(method_row(label, rows, [cost(s, key, "epochs") for s in states],
                                f"{statistics.mean(cost(s, key, 'seconds') for s in states) / 60:.1f}"))
    gap_parent, sd_b, within = within_one_std(acc["B"], parent)
    gap_u, sd_u, b_beats_u = beats(acc["B"], acc["U"])
    gap_a = paired([s["B"]["test_top1"] for s in with_a], [s["A"]["test_top1"] for s in with_a])
    b_vs_a = (f"{mean_std(gap_a, 100, signed=True)} points (paired, seed{'s' * (len(with_a) > 1)} "
              f"{', '.join(str(s['seed']) for s in with_a)})" if with_a else "A not run yet")
    lines += ["", f"* B − parent: {mean_std(gap_parent, 100, signed=True)} points (paired); B's std {100 * sd_b:.2f} — "
              f"target B ≥ parent − one std: {'met' if within else 'NOT met'}.",
              f"* B − U: {mean_std(gap_u, 100, signed=True)} points (paired); the largest std (B, U, the difference) "
              f"{100 * sd_u:.2f} — target B > U by more than one std: {'met' if b_beats_u else 'NOT met'}.",
              f"* B − A: {b_vs_a}; B's final fine-tune {states[0]['final_epochs']} "
              f"epochs = {states[0]['final_epochs'] / p0['epochs']:.2f} of the parent's (target ≤ 0.5).",
              *extra_lines(states, extra, parent, today), "",
              "| seed | parent | A | B | U | A params | B params | U params | B tokens | U tokens |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in states:
        a = (f"{100 * s['A']['test_top1']:.2f}", f"{s['A']['params']:,}") if done(s, "A") else ("–", "–")
        lines.append(f"| {s['seed']} | {100 * s['parent']['test_top1']:.2f} | {a[0]} | "
                     f"{100 * s['B']['test_top1']:.2f} | {100 * s['U']['test_top1']:.2f} | {a[1]} | "
                     f"{s['B']['params']:,} | {s['U']['params']:,} | {s['B']['tokens']} | {s['U']['tokens']} |")
    record = {**provenance("benchmarks/inherit_e2e.py", vars(args)), "seeds": states}
    harness.publish(args.out.with_suffix(".md"), "\n".join(lines), record)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # one seed, in a process of its own
    p.add_argument("--summary", action="store_true", help="only print/write the table from finished seeds")
    p.add_argument("--train-subset", type=int, default=20000)
    p.add_argument("--val-subset", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="the user's learning rate (scratch trainings)")
    p.add_argument("--parent-epochs", type=int, default=20)
    p.add_argument("--budget-ratio", type=float, default=0.8)
    p.add_argument("--candidates-a", type=int, default=10)
    p.add_argument("--candidates-b", type=int, default=30)
    p.add_argument("--candidates-c", type=int, default=100, help="row C's candidates (B's search, more of them)")
    p.add_argument("--scratch-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", default=",".join(ROWS),
                   help=f"which rows to run now (the parent always comes first): {', '.join(ROWS)} (the protocol's), "
                        f"or {'; '.join(EXTRA.values())}")
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="the finished runs' records (committed)")
    p.add_argument("--out", type=Path, default=OUT, help="the table as OUT.md and OUT.json")
    args = p.parse_args(argv)
    unknown = [r for r in args.rows.split(",") if r not in ROWS and r not in EXTRA]
    if unknown:
        p.error(f"--rows {','.join(unknown)}: expected rows among {','.join([*ROWS, *EXTRA])}")
    if args.seed is not None:
        run_seed(args.seed, args)
        return 0
    if not args.summary:
        own = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("seeds", "seed", "summary")]
        if not harness.in_processes(__file__, ([*own, f"--seed={s}"] for s in harness.seeds(args.seeds))):
            print("a seed failed; see its output above", file=sys.stderr)
            return 1
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
