"""The seed's story in miniature, end to end: compress a trained 5-cell DARTS network on Fashion-MNIST two ways.

* **Protocol A (PaddleSlim's)**: every candidate trained from scratch (``--scratch-epochs``), the best one
  trained from scratch again as the final model (``--final-epochs``, the parent's own recipe).
* **Protocol B (sanas' inherit mode)**: every candidate inherited from the trained parent, BatchNorm re-estimated,
  fine-tuned ``--finetune-epochs`` with the SA-aware early stop; the best one fine-tuned from the parent for
  ``--final-finetune-epochs`` as the final model.

Both run the same SA search (``sanas.SANAS``, same sampler settings and seed) over the same 5-cell DartsSpace
(widths 2..32, init 4/8/16, no auxiliary head: a CPU-sized DARTS network), with the same number of candidates
and the same budget (≤ 0.9 × the parent's parameters), for each seed. The parent — the init tokens trained from
scratch for ``--parent-epochs`` — is what a user arrives with: its epochs are reported but not charged to either
protocol. Rewards come from a held-out split of the training set; the test set is evaluated once per final model.

Early stop (c): every candidate B stopped is afterwards fine-tuned to its end anyway (outside the search, so the
search is not affected) to see whether it would have reached the acceptance threshold it was stopped against:
such a candidate is a *false stop*.

    .venv/bin/python benchmarks/inherit_e2e.py                   # 3 seeds (resumable), then the tables
    .venv/bin/python benchmarks/inherit_e2e.py --summary         # the tables from what has run

Results: ``benchmarks/data/inherit_e2e.md`` / ``.json`` (committed); per-seed work in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from sanas import SANAS
from sanas.atomic import atomic_write_bytes
from sanas.runs.worker import stop_rule
from sanas.spaces import DartsSpace
from sanas.training import Recipe, evaluate_candidate, load_model, prepare_data, train_final
from width_table import git_commit

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "results" / "inherit_e2e"
OUT_MD = HERE / "data" / "inherit_e2e.md"
OUT_JSON = HERE / "data" / "inherit_e2e.json"


FILTER_NUM = [2, 4, 6, 8, 12, 16, 24, 32]


def space() -> DartsSpace:
    return DartsSpace(layers=5, filter_num=FILTER_NUM, init_channels=4, in_channels=1, auxiliary=False)


def train_recipe(args: argparse.Namespace, epochs: int, seed: int) -> Recipe:
    return Recipe(retain_epoch=epochs, batch_size=args.batch_size, learning_rate=args.lr, cutout=0,
                  drop_path_prob=0.0, aux_weight=0.0, seed=seed, device="cpu")


def inherit_recipe(args: argparse.Namespace, epochs: float, lr: float, seed: int) -> Recipe:
    return Recipe(evaluation="inherit", retain_epoch=epochs, finetune_lr=lr, bn_batches=args.bn_batches,
                  batch_size=args.batch_size, cutout=0, drop_path_prob=0.0, aux_weight=0.0, seed=seed, device="cpu",
                  stop_checks=args.stop_checks, early_stop=True)


def search(name: str, args: argparse.Namespace, sp: DartsSpace, data: Any, budget: int, seed: int, out: Path,
           recipe: Recipe, parent: torch.nn.Module | None, log: list[dict[str, Any]],
           save: Callable[[], None]) -> SANAS:
    """One SA search of ``args.candidates`` evaluations, resumable (a journal store in ``out``)."""
    sa = SANAS(sp, search_steps=args.candidates, max_params=budget, seed=seed, save_checkpoint=out,
               init_temperature=args.init_temperature)
    done = {rec["trial"] for rec in log}
    while (tokens := sa.next_tokens()) is not None:
        number = sa.trial_number
        rule = stop_rule(sa, recipe) if parent is not None else None
        result = evaluate_candidate(tokens, sp, data, recipe, progress="none", parent=parent, stop_rule=rule)
        if not result.ok:
            sa.fail(result.reason)
            continue
        accepted = sa.reward(result.reward, curve=result.curve or None, stopped=result.stopped)
        rec = {"trial": number, "tokens": tokens, "params": result.params, "reward": result.reward,
               "epochs": result.epochs, "bn_batches": result.bn_batches, "stopped": result.stopped,
               "threshold": result.threshold, "accepted": accepted, "seconds": round(result.seconds, 1),
               "curve": result.curve}
        if rec["trial"] not in done:
            log.append(rec)
            save()
        print(f"  {name} trial {rec['trial']}: {tokens} {result.params:,} params reward {result.reward:.4f} "
              f"{'STOPPED' if result.stopped else 'accepted' if accepted else 'rejected'} "
              f"({result.epochs:.2f} ep, {result.seconds:.0f}s)", flush=True)
    return sa


def run_seed(seed: int, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    sp = space()
    work = args.work_dir / f"seed-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {"seed": seed}

    def save() -> None:
        atomic_write_bytes(state_path, (json.dumps(state, indent=1) + "\n").encode())

    steps = Recipe(batch_size=args.batch_size).steps_per_epoch(len(data.train()[1]))
    if "parent" not in state:
        t0 = time.perf_counter()
        r = train_final(sp.init_tokens(), sp, data, train_recipe(args, args.parent_epochs, seed), work / "parent",
                        resume=True, progress="lines", onnx=False)
        state["parent"] = {"tokens": sp.init_tokens(), "params": r.params, "test_top1": r.test_top1,
                           "val_top1": r.metrics[-1].val_top1, "epochs": args.parent_epochs,
                           "seconds": round(time.perf_counter() - t0, 1)}
        save()
    parent = load_model(work / "parent")
    budget = int(args.budget_ratio * state["parent"]["params"])

    for name in ("A", "B"):
        key = f"search_{name}"
        if state.get(key, {}).get("done"):
            continue
        t0 = time.perf_counter()
        log = state.setdefault(key, {"log": []})["log"]
        if name == "A":
            sa = search("A", args, sp, data, budget, seed, work / "A", train_recipe(args, args.scratch_epochs, seed),
                        None, log, save)
        else:
            sa = search("B", args, sp, data, budget, seed, work / "B",
                        inherit_recipe(args, args.finetune_epochs, args.finetune_lr, seed), parent, log, save)
        info = sa.current_info()
        sa.close()
        state[key].update({"done": True, "best_tokens": info["best_tokens"], "best_reward": info["best_reward"],
                           "seconds": state[key].get("seconds", 0) + round(time.perf_counter() - t0, 1)})
        save()

    if "false_stops" not in state:  # (c): finish every stopped candidate anyway
        checks = []
        for rec in state["search_B"]["log"]:
            if rec["stopped"]:
                full = evaluate_candidate(rec["tokens"], sp, data,
                                          inherit_recipe(args, args.finetune_epochs, args.finetune_lr, seed),
                                          progress="none", parent=parent)
                checks.append({"trial": rec["trial"], "threshold": rec["threshold"], "partial": rec["reward"],
                               "final": full.reward, "full_epochs": full.epochs,
                               "false_stop": full.reward >= rec["threshold"]})
        state["false_stops"] = checks
        save()

    for name in ("A", "B"):
        key = f"final_{name}"
        if key in state:
            continue
        tokens = state[f"search_{name}"]["best_tokens"]
        t0 = time.perf_counter()
        if name == "A":
            recipe = train_recipe(args, args.final_epochs, seed)
            r = train_final(tokens, sp, data, recipe, work / "final-A", resume=True, progress="lines", onnx=False)
        else:
            recipe = inherit_recipe(args, args.final_finetune_epochs, args.final_lr, seed)
            r = train_final(tokens, sp, data, recipe, work / "final-B", resume=True, progress="lines", onnx=False,
                            parent=parent)
        state[key] = {"tokens": tokens, "params": r.params, "macs": sp.count_macs(tokens), "test_top1": r.test_top1,
                      "epochs": recipe.retain_epoch,
                      "bn_batches": recipe.bn_batches if name == "B" else 0,
                      "seconds": round(time.perf_counter() - t0, 1)}
        save()
    for epochs in args.extra_final_epochs:  # sensitivity: B's chosen child fine-tuned longer (its own rows)
        extra = state.setdefault("final_B_extra", {})
        if str(epochs) in extra:
            continue
        tokens = state["search_B"]["best_tokens"]
        t0 = time.perf_counter()
        recipe = inherit_recipe(args, epochs, args.final_lr, seed)
        r = train_final(tokens, sp, data, recipe, work / f"final-B-{epochs:g}", resume=True, progress="lines",
                        onnx=False, parent=parent)
        extra[str(epochs)] = {"tokens": tokens, "params": r.params, "test_top1": r.test_top1, "epochs": epochs,
                              "bn_batches": recipe.bn_batches, "seconds": round(time.perf_counter() - t0, 1)}
        save()
    state["steps_per_epoch"] = steps
    save()
    return state


def _cost(state: dict[str, Any], name: str) -> dict[str, float]:
    steps = state["steps_per_epoch"]
    log = state[f"search_{name}"]["log"]
    search_epochs = sum(r["epochs"] for r in log)
    bn = sum(r["bn_batches"] for r in log) + state[f"final_{name}"]["bn_batches"]
    final = float(state[f"final_{name}"]["epochs"])
    return {"search_epochs": search_epochs, "final_epochs": final, "bn_epochs": bn / (3 * steps),
            "total_epochs": search_epochs + final + bn / (3 * steps),
            "seconds": state[f"search_{name}"]["seconds"] + state[f"final_{name}"]["seconds"]}


def _ms(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def summarise(args: argparse.Namespace) -> int:
    states = []
    for path in sorted(args.work_dir.glob("seed-*/state.json")):
        st = json.loads(path.read_text())
        if "final_B" in st and "final_A" in st:
            states.append(st)
    if not states:
        print("nothing finished yet", file=sys.stderr)
        return 1
    costs = {n: [_cost(s, n) for s in states] for n in ("A", "B")}
    acc = {"parent": [s["parent"]["test_top1"] for s in states],
           "A": [s["final_A"]["test_top1"] for s in states], "B": [s["final_B"]["test_top1"] for s in states]}
    params = {"parent": [s["parent"]["params"] for s in states],
              "A": [s["final_A"]["params"] for s in states], "B": [s["final_B"]["params"] for s in states]}
    ratio = [b["total_epochs"] / a["total_epochs"] for a, b in zip(costs["A"], costs["B"], strict=True)]
    stops = [c for s in states for c in s["false_stops"]]
    b_logs = [r for s in states for r in s["search_B"]["log"]]
    full_cost = args.finetune_epochs
    saved = 1 - sum(r["epochs"] for r in b_logs) / (full_cost * len(b_logs)) if full_cost else 0.0
    lines = [
        "# The seed's story in miniature (benchmarks/inherit_e2e.py)", "",
        f"5-cell DartsSpace (widths {FILTER_NUM[0]}–{FILTER_NUM[-1]}, init 4/8/16, no aux head) on Fashion-MNIST: "
        f"{args.train_subset:,} "
        f"training images, {args.val_subset:,} held out for rewards (split seed 0), test = the 10,000 test images "
        f"(once per final model). Seeds {', '.join(str(s['seed']) for s in states)}; per seed the parent is the init "
        f"tokens trained {args.parent_epochs} epochs from scratch (lr {args.lr}, batch {args.batch_size}); budget "
        f"≤ {args.budget_ratio} × its parameters; both protocols search {args.candidates} candidates with the same "
        f"SA (seed = the run's seed, init_temperature {args.init_temperature}).", "",
        f"* A (PaddleSlim): candidates from scratch, {args.scratch_epochs} epochs (reward = mean held-out top-1 of "
        f"the last two); final = the best trained from scratch {args.final_epochs} epochs.",
        f"* B (sanas inherit): candidates inherited, BN re-estimated on {args.bn_batches} batches, fine-tuned "
        f"{args.finetune_epochs} epoch at lr {args.finetune_lr} with the SA-aware early stop ({args.stop_checks} "
        f"checks); final = the best fine-tuned from the parent {args.final_finetune_epochs} epochs at lr "
        f"{args.final_lr}.", "",
        "Epochs count training passes over the training subset; BN re-estimation batches count as forward passes "
        "(a third of a training step). The parent's epochs are not charged.", "",
        "| | test top-1 (%) | params | search epochs | final epochs | total epochs | wall (min) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| parent (init tokens) | {_ms(acc['parent'], 100)} | {statistics.mean(params['parent']):,.0f} | – | – | "
        f"({args.parent_epochs}, not charged) | – |",
    ]
    for n, label in (("A", "A: PaddleSlim, from scratch"), ("B", "B: inherit + early stop + fine-tuned final")):
        c = costs[n]
        lines.append(f"| {label} | {_ms(acc[n], 100)} | {statistics.mean(params[n]):,.0f} | "
                     f"{_ms([x['search_epochs'] for x in c])} | {_ms([x['final_epochs'] for x in c])} | "
                     f"{_ms([x['total_epochs'] for x in c])} | {_ms([x['seconds'] / 60 for x in c], digits=1)} |")
    extras = sorted({e for s in states for e in s.get("final_B_extra", {})}, key=float)
    for e in extras:
        if not all(e in s.get("final_B_extra", {}) for s in states):
            continue
        finals = [s["final_B_extra"][e] for s in states]
        steps = [s["steps_per_epoch"] for s in states]
        total = [c["search_epochs"] + float(e) + (sum(r["bn_batches"] for r in s["search_B"]["log"])
                                                   + f["bn_batches"]) / (3 * st)
                 for c, s, f, st in zip(costs["B"], states, finals, steps, strict=True)]
        share = [t / a["total_epochs"] for t, a in zip(total, costs["A"], strict=True)]
        lines.append(f"| B, the same child fine-tuned {e} epochs (sensitivity) | "
                     f"{_ms([f['test_top1'] for f in finals], 100)} | "
                     f"{statistics.mean(f['params'] for f in finals):,.0f} | "
                     f"{_ms([x['search_epochs'] for x in costs['B']])} | {float(e):.2f} ± 0.00 | {_ms(total)} "
                     f"({_ms(share, 100, 1)} % of A's) | – |")
    lines += ["", f"B's total epochs are {_ms(ratio, 100, 1)} % of A's (target ≤ 10 %). "
              f"Test top-1, B − A: {_ms([b - a for a, b in zip(acc['A'], acc['B'], strict=True)], 100)} points; "
              f"B − parent: {_ms([b - p for p, b in zip(acc['parent'], acc['B'], strict=True)], 100)} points.", "",
              "Per seed:", "", "| seed | parent | A | B | A params | B params | A tokens | B tokens |",
              "|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in states:
        a, b = s["final_A"], s["final_B"]
        lines.append(f"| {s['seed']} | {100 * s['parent']['test_top1']:.2f} | {100 * a['test_top1']:.2f} | "
                     f"{100 * b['test_top1']:.2f} | {a['params']:,} | {b['params']:,} | {a['tokens']} | "
                     f"{b['tokens']} |")
    false = sum(c["false_stop"] for c in stops)
    lines += ["", "## Early stop (c)", "",
              f"{sum(r['stopped'] for r in b_logs)} of {len(b_logs)} B candidates were stopped; fine-tuning epochs "
              f"saved: {100 * saved:.1f} % of what the {len(b_logs)} candidates would have cost without the stop "
              f"(target ≥ 40 %). Every stopped candidate was then fine-tuned to its end: {false} of {len(stops)} "
              f"would have reached its acceptance threshold (false-stop rate "
              f"{100 * false / len(stops) if stops else 0:.1f} %, target ≤ 5 %)."]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT_MD.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(OUT_MD, text.encode())
    provenance = {"script": "benchmarks/inherit_e2e.py", "git_commit": git_commit(), "settings": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "torch": torch.__version__,
        "python": platform.python_version(), "generated": time.strftime("%Y-%m-%d", time.gmtime()),
        "seeds": states}
    atomic_write_bytes(OUT_JSON, (json.dumps(provenance, indent=1) + "\n").encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary", action="store_true", help="only print/write the tables from finished seeds")
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--val-subset", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of every training from scratch")
    p.add_argument("--parent-epochs", type=int, default=10)
    p.add_argument("--candidates", type=int, default=10)
    p.add_argument("--budget-ratio", type=float, default=0.9)
    p.add_argument("--init-temperature", type=float, default=None, help="SA T0 (default: sanas' default)")
    p.add_argument("--scratch-epochs", type=int, default=2)
    p.add_argument("--final-epochs", type=int, default=10)  # = --parent-epochs: the parent's own recipe
    p.add_argument("--finetune-epochs", type=float, default=0.25)
    p.add_argument("--finetune-lr", type=float, default=0.05)
    p.add_argument("--bn-batches", type=int, default=10)
    p.add_argument("--stop-checks", type=int, default=2)
    p.add_argument("--final-finetune-epochs", type=float, default=1)
    p.add_argument("--final-lr", type=float, default=0.05)
    p.add_argument("--extra-final-epochs", type=float, nargs="*", default=[3.0],
                   help="sensitivity rows: B's chosen child also fine-tuned this many epochs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=3, help="seeds run as this many parallel processes")
    p.add_argument("--work-dir", type=Path, default=WORK_DIR)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.summary and args.jobs > 1 and len(seeds) > 1:
        forwarded = list(argv if argv is not None else sys.argv[1:])
        procs = []
        for k in range(args.jobs):
            mine = ",".join(str(s) for s in seeds[k::args.jobs])
            if mine:
                procs.append(subprocess.Popen([sys.executable, __file__, *forwarded, "--seeds", mine, "--jobs", "1"]))
        if any(proc.wait() for proc in procs):
            print("error: a seed's run failed", file=sys.stderr)
            return 1
        return summarise(args)
    if not args.summary:
        torch.set_num_threads(args.threads)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        data = prepare_data("fashion-mnist", train_subset=args.train_subset, val_subset=args.val_subset, seed=0)
        for seed in seeds:
            print(f"seed {seed}", flush=True)
            run_seed(seed, args, data)
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
