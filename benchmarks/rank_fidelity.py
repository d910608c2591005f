"""Rank fidelity of cheap candidate evaluations against two ground truths, on the committed width table.

Which cheap score ranks width configurations like the expensive truth? 100 configurations of the committed
``PlainCNNSpace`` table (``benchmarks/data/width_table.csv``, a fixed random sample, seed 0) are scored by:

* ``scratch-q``: trained from scratch for ¼ epoch (the table's recipe, cosine over the ¼ epoch) — a cheap
  version of PaddleSlim's protocol;
* ``inherit-*``: the child of a trained parent (:func:`sanas.inherit`), BatchNorm re-estimated on N training
  batches (``bn0`` = not re-estimated), fine-tuned for 0, ¼ or 1 epoch at a given learning rate, with channels
  chosen by ``|BN γ|`` (``bn``) or filter L1 norm (``l1``).

The parent is the widest configuration (48-48-48-48) trained exactly like the table's rows. The two truths:

1. **scratch** — the table itself: every configuration trained from scratch for 4 epochs (PaddleSlim's protocol).
2. **finetuned** — every configuration inherited from the parent, BatchNorm re-estimated and fine-tuned to a
   plateau (``--truth-epochs`` epochs, 4 by default, lr ``--truth-lr``): what a fine-tuned final model lives by.

Each truth's noise ceiling is Kendall's τ between the truth and the same truth rerun with another training seed
(seed 1). Costs are in candidate-epochs: training epochs, plus BatchNorm re-estimation batches counted as forward
passes (a third of a training step each).

    .venv/bin/python benchmarks/rank_fidelity.py --jobs 2        # score everything (resumable), then summarise
    .venv/bin/python benchmarks/rank_fidelity.py --summary       # the tables from what is scored so far

    .venv/bin/python benchmarks/rank_fidelity.py --jobs 2 --methods inherit-bn0-0,finetuned   # some methods only

Results: ``benchmarks/data/rank_fidelity.md`` and ``.json`` (committed), and the raw per-configuration scores in
``benchmarks/data/rank_fidelity_scores/`` (committed, resumable). A summary recomputes every method whose scores
are all there and keeps the other rows (and a noise ceiling it cannot recompute) from the committed ``.json``,
each row naming the commit it was measured at.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import harness
from sanas.atomic import atomic_write_bytes
from sanas.spaces import PlainCNNSpace
from sanas.training import Recipe, evaluate_candidate
from sanas.training.trainer import Trainer
from width_table import SETTINGS, git_commit, load_data, load_table

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "results" / "rank_fidelity"  # the parent's weights (a cache, not committed)
SCORES_DIR = HERE / "data" / "rank_fidelity_scores"  # per-configuration scores, committed so runs span sessions
OUT_MD = HERE / "data" / "rank_fidelity.md"
OUT_JSON = HERE / "data" / "rank_fidelity.json"
SAMPLE, SAMPLE_SEED = 100, 0
PARENT_TOKENS = [4, 4, 4, 4]


def table_space() -> PlainCNNSpace:
    """The committed width table's space."""
    return PlainCNNSpace(**{k: v for k, v in SETTINGS["space"].items() if k != "name"})


def table_recipe(**changes: Any) -> Recipe:
    return Recipe(**{**SETTINGS["recipe"], **changes})


def inherit_recipe(epochs: float, lr: float, bn_batches: int, importance: str, seed: int = 0) -> Recipe:
    base = {k: v for k, v in SETTINGS["recipe"].items() if k not in ("retain_epoch", "learning_rate", "seed")}
    return Recipe(**base, evaluation="inherit", retain_epoch=epochs, finetune_lr=lr, bn_batches=bn_batches,
                  importance=importance, seed=seed, stop_checks=1)


#: name → (recipe builder, short description). The truths and their reruns are methods too.
def methods(truth_epochs: float, truth_lr: float) -> dict[str, tuple[str, Callable[[], Recipe] | None, str]]:
    m: dict[str, tuple[str, Callable[[], Recipe] | None, str]] = {
        "scratch-retrain": ("scratch", None, "from scratch, 4 epochs, seed 1 (the scratch truth's noise ceiling)"),
        "finetuned": ("inherit", lambda: inherit_recipe(truth_epochs, truth_lr, 20, "bn"),
                      f"inherited, BN 20, {truth_epochs:g} epochs at lr {truth_lr:g} (the fine-tuned truth)"),
        "finetuned-retrain": ("inherit", lambda: inherit_recipe(truth_epochs, truth_lr, 20, "bn", seed=1),
                              "the fine-tuned truth with seed 1 (its noise ceiling)"),
        "scratch-q": ("scratch-q", None, "from scratch, 1/4 epoch (lr 0.1, cosine over the 1/4 epoch)"),
        "inherit-bn0-0": ("inherit", lambda: inherit_recipe(0, 0.01, 0, "bn"), "inherited, no BN re-estimation"),
    }
    for bn in (20, 50):
        m[f"inherit-bn{bn}-0"] = ("inherit", lambda bn=bn: inherit_recipe(0, 0.01, bn, "bn"),
                                  f"inherited (|γ|), BN re-estimated on {bn} batches, 0 epochs")
    m["inherit-l1-bn20-0"] = ("inherit", lambda: inherit_recipe(0, 0.01, 20, "l1"),
                              "inherited (filter L1), BN 20 batches, 0 epochs")
    for epochs, tag, rates in ((0.25, "q", (0.002, 0.01, 0.05)), (1, "1", (0.01, 0.05))):
        for lr in rates:
            m[f"inherit-bn20-{tag}-lr{lr:g}"] = (
                "inherit", lambda epochs=epochs, lr=lr: inherit_recipe(epochs, lr, 20, "bn"),
                f"inherited (|γ|), BN 20, {epochs:g} epoch at lr {lr:g}")
    for epochs, tag in ((0.25, "q"), (1, "1")):
        m[f"inherit-l1-bn20-{tag}-lr0.05"] = ("inherit", lambda epochs=epochs: inherit_recipe(epochs, 0.05, 20, "l1"),
                                              f"inherited (filter L1), BN 20, {epochs:g} epoch at lr 0.05")
    return m


def sample_rows() -> list[dict[str, Any]]:
    table = load_table()
    candidates = [r for r in table if [int(t) for t in r["tokens"].split("-")] != PARENT_TOKENS]
    return random.Random(SAMPLE_SEED).sample(candidates, SAMPLE)


def parent_network(space: PlainCNNSpace, data: Any, work_dir: Path) -> torch.nn.Module:
    """The widest configuration trained exactly like a table row (cached in the work directory)."""
    path = work_dir / "parent.pt"
    if path.exists():
        net = space.token2arch(PARENT_TOKENS)
        net.load_state_dict(torch.load(path, weights_only=True))
        return net
    trainer = Trainer(space, PARENT_TOKENS, data, table_recipe())
    for _ in range(trainer.recipe.retain_epoch):
        last = trainer.run_epoch()
    print(f"parent {PARENT_TOKENS}: val {last.val_top1:.4f}", flush=True)
    net = trainer.net.to("cpu", memory_format=torch.contiguous_format)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return net


def scratch_quarter(space: PlainCNNSpace, tokens: list[int], data: Any) -> dict[str, Any]:
    trainer = Trainer(space, tokens, data, table_recipe())
    quarter = round(trainer.steps_per_epoch / 4)
    trainer.total_steps = quarter
    trainer.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(trainer.optimizer, T_max=quarter)
    m = trainer.run_epoch(steps=quarter)
    return {"score": m.val_top1, "epochs": quarter / trainer.steps_per_epoch, "bn_batches": 0}


def score(method: tuple[str, Callable[[], Recipe] | None, str], space: PlainCNNSpace, tokens: list[int], data: Any,
          parent: torch.nn.Module) -> dict[str, Any]:
    kind, make, _ = method
    if kind == "scratch":
        trainer = Trainer(space, tokens, data, table_recipe(seed=1))
        for _ in range(trainer.recipe.retain_epoch):
            last = trainer.run_epoch()
        return {"score": last.val_top1, "epochs": float(trainer.recipe.retain_epoch), "bn_batches": 0}
    if kind == "scratch-q":
        return scratch_quarter(space, tokens, data)
    assert make is not None
    result = evaluate_candidate(tokens, space, data, make(), progress="none", parent=parent)
    if not result.ok:
        raise RuntimeError(f"{tokens}: {result.reason}")
    return {"score": result.reward, "epochs": result.epochs, "bn_batches": result.bn_batches}


def run_shard(shard: int, shards: int, work_dir: Path, truth_epochs: float, truth_lr: float,
              only: Sequence[str] | None = None, scores_dir: Path = SCORES_DIR) -> None:
    torch.set_num_threads(SETTINGS["torch_threads"])
    space = table_space()
    data = load_data()
    work_dir.mkdir(parents=True, exist_ok=True)
    parent = parent_network(space, data, work_dir)
    table = methods(truth_epochs, truth_lr)
    if only:
        table = {name: table[name] for name in only}
    scores_dir.mkdir(parents=True, exist_ok=True)
    path = scores_dir / f"shard-{shard}-of-{shards}.jsonl"
    done = {(r["row"], r["method"]) for r in read_jsonl(path)}
    todo = [(r, name) for i, r in enumerate(sample_rows()) if i % shards == shard for name in table
            if (r["index"], name) not in done]
    print(f"shard {shard}/{shards}: {len(done)} scores done, {len(todo)} to go -> {path}", flush=True)
    start = time.perf_counter()
    with path.open("a") as f:
        for n, (row, name) in enumerate(todo, 1):
            t0 = time.perf_counter()
            torch.manual_seed(0)
            out = score(table[name], space, [int(t) for t in row["tokens"].split("-")], data, parent)
            record = {"row": row["index"], "tokens": row["tokens"], "method": name, **out,
                      "seconds": round(time.perf_counter() - t0, 2)}
            f.write(json.dumps(record) + "\n")
            f.flush()
            rate = (time.perf_counter() - start) / n
            print(f"shard {shard}: {row['tokens']} {name} {out['score']:.4f} ({record['seconds']:.1f}s) "
                  f"{n}/{len(todo)}, ~{rate * (len(todo) - n) / 60:.0f} min left", flush=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line
    return rows


# --- rank statistics -------------------------------------------------------------------------------------------
def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either ranking count as neither concordant nor discordant).

    >>> kendall_tau([1, 2, 3], [1, 2, 3]), kendall_tau([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    dx, dy = dx[iu], dy[iu]
    n0 = len(dx)
    tx, ty = n0 - np.count_nonzero(dx), n0 - np.count_nonzero(dy)
    denom = np.sqrt((n0 - tx) * (n0 - ty))
    return float(np.sum(dx * dy) / denom) if denom else float("nan")


def _ranks(v: Sequence[float]) -> np.ndarray:
    x = np.asarray(v, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):  # average ranks for ties
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ: the correlation of the two rankings (average ranks for ties).

    >>> round(spearman_rho([1, 2, 3, 4], [10, 20, 40, 30]), 2)
    0.8
    """
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def bootstrap_tau(a: Sequence[float], b: Sequence[float], reps: int = 1000, seed: int = 0) -> float:
    """Standard deviation of τ over bootstrap resamples of the configurations."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(a), np.asarray(b)
    taus = [kendall_tau(x[i], y[i]) for i in (rng.integers(0, len(x), len(x)) for _ in range(reps))]
    return float(np.nanstd(taus))


def summarise(truth_epochs: float, truth_lr: float, scores_dir: Path = SCORES_DIR) -> int:
    # Before this summary rewrites the committed tables (that alone would make the tree dirty).
    dirty = bool(harness.git("status", "--porcelain", "--untracked-files=no"))
    rows = sample_rows()
    table = {r["index"]: r for r in rows}
    scores: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(scores_dir.glob("shard-*.jsonl")):
        for rec in read_jsonl(path):
            scores.setdefault(rec["method"], {})[rec["row"]] = rec
    catalogue = methods(truth_epochs, truth_lr)
    complete = {m: s for m, s in scores.items() if m in catalogue and len(s) == len(rows)}
    if "finetuned" not in complete:
        print(f"not every configuration is scored yet ({ {m: len(s) for m, s in scores.items()} }); "
              f"run --jobs first", file=sys.stderr)
        return 1
    order = sorted(table)
    truths = {"scratch": [table[i]["val_acc"] for i in order],
              "finetuned": [complete["finetuned"][i]["score"] for i in order]}
    steps = 5000 // 64 + 1  # training batches per epoch of the table's recipe

    def cost(m: str) -> float:
        recs = list(complete[m].values())
        return float(np.mean([r["epochs"] + r["bn_batches"] / (3 * steps) for r in recs]))

    def row(m: str) -> dict[str, Any]:
        s = [complete[m][i]["score"] for i in order]
        out = {"method": m, "description": catalogue[m][2], "cost_epochs": round(cost(m), 3),
               "seconds": round(float(np.median([complete[m][i]["seconds"] for i in order])), 2)}
        for t, truth in truths.items():
            out[f"tau_{t}"] = round(kendall_tau(s, truth), 3)
            out[f"tau_{t}_sd"] = round(bootstrap_tau(s, truth), 3)
            out[f"rho_{t}"] = round(spearman_rho(s, truth), 3)
        return out

    committed = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {}
    kept_rows = {r["method"]: {"git_commit": committed.get("git_commit"), **r} for r in committed.get("results", [])}
    commit = git_commit()
    ceilings = {k: float(v) for k, v in committed.get("ceilings", {}).items()}
    if "scratch-retrain" in complete:
        ceilings["scratch"] = kendall_tau(truths["scratch"], [complete["scratch-retrain"][i]["score"] for i in order])
    if "finetuned-retrain" in complete:
        ceilings["finetuned"] = kendall_tau(truths["finetuned"],
                                            [complete["finetuned-retrain"][i]["score"] for i in order])
    results = [{**row(m), "git_commit": commit} if m in complete else kept_rows[m] for m in catalogue
               if (m in complete or m in kept_rows) and m not in ("finetuned", "finetuned-retrain", "scratch-retrain")]
    lines = [
        "# Rank fidelity of cheap evaluations (benchmarks/rank_fidelity.py)", "",
        f"{len(rows)} configurations of the committed 625-row PlainCNNSpace table (random sample, seed "
        f"{SAMPLE_SEED}); parent = {'-'.join(map(str, PARENT_TOKENS))} (widths 48-48-48-48) trained like the "
        f"table. Fine-tuned truth: inherited, BN re-estimated on 20 batches, {truth_epochs:g} epochs at lr "
        f"{truth_lr:g}. Kendall τ (± bootstrap sd over configurations) and Spearman ρ against each truth. "
        f"Cost: candidate-epochs (training epochs + BN batches as forward passes, 1/3 of a step each); the "
        f"table's own protocol costs 4 epochs.", "",
        "| noise ceiling | τ |", "|---|---:|",
    ]
    for t, c in ceilings.items():
        lines.append(f"| {t} truth vs its rerun with seed 1 | {c:.3f} |")
    lines += ["", "| method | cost (epochs) | τ scratch | ρ scratch | τ fine-tuned | ρ fine-tuned | s/candidate | "
              "commit |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['method']}: {r['description']} | {r['cost_epochs']:.2f} | {r['tau_scratch']:.3f} ± "
                     f"{r['tau_scratch_sd']:.3f} | {r['rho_scratch']:.3f} | {r['tau_finetuned']:.3f} ± "
                     f"{r['tau_finetuned_sd']:.3f} | {r['rho_finetuned']:.3f} | {r['seconds']:.1f} | "
                     f"{str(r.get('git_commit'))[:7]} |")
    if ceilings:
        lines += ["", "Fraction of the noise ceiling (target ≥ 0.8 at ≤ 1 epoch, a quarter of the table's 4):", "",
                  "| method | cost | scratch | fine-tuned |", "|---|---:|---:|---:|"]
        for r in results:
            fr = {t: r[f"tau_{t}"] / c for t, c in ceilings.items()}
            lines.append(f"| {r['method']} | {r['cost_epochs']:.2f} | {fr.get('scratch', float('nan')):.2f} | "
                         f"{fr.get('finetuned', float('nan')):.2f} |")
    record = {"script": "benchmarks/rank_fidelity.py", "git_commit": commit, "dirty": dirty, "sample": SAMPLE,
              "sample_seed": SAMPLE_SEED, "parent_tokens": PARENT_TOKENS, "truth_epochs": truth_epochs,
              "truth_lr": truth_lr, "table_settings": SETTINGS, "torch": torch.__version__,
              "python": platform.python_version(), "ceilings": {k: round(v, 4) for k, v in ceilings.items()},
              "results": results, "generated": time.strftime("%Y-%m-%d", time.gmtime()),
              "cpu_seconds_total": round(sum(r["seconds"] for s in scores.values() for r in s.values()), 1)}
    harness.publish(OUT_MD, "\n".join(lines), record, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=0, help="score with N local processes, then summarise")
    p.add_argument("--shard", help="K/N: score the sampled configurations with position %% N == K")
    p.add_argument("--summary", action="store_true", help="write the tables from the scores so far")
    p.add_argument("--truth-epochs", type=float, default=4.0, help="fine-tuned truth: epochs (4)")
    p.add_argument("--truth-lr", type=float, default=0.05, help="fine-tuned truth: learning rate (0.05)")
    p.add_argument("--work-dir", type=Path, default=WORK_DIR, help="where the trained parent is cached")
    p.add_argument("--methods", help="comma-separated methods to score (default: all)")
    args = p.parse_args(argv)
    catalogue = methods(args.truth_epochs, args.truth_lr)
    only = [m for m in args.methods.split(",") if m] if args.methods else None
    unknown = sorted(set(only or ()) - set(catalogue))
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; expected some of {', '.join(catalogue)}")
    if args.shard:
        k, n = (int(x) for x in args.shard.split("/"))
        run_shard(k, n, args.work_dir, args.truth_epochs, args.truth_lr, only)
        return 0
    if args.jobs:
        # The parent first, once, so the shards do not race to train it.
        torch.set_num_threads(SETTINGS["torch_threads"])
        args.work_dir.mkdir(parents=True, exist_ok=True)
        parent_network(table_space(), load_data(), args.work_dir)
        common = ["--work-dir", str(args.work_dir), "--truth-epochs", str(args.truth_epochs), "--truth-lr",
                  str(args.truth_lr), *(["--methods", ",".join(only)] if only else [])]
        if not harness.in_processes(__file__, (["--shard", f"{k}/{args.jobs}", *common] for k in range(args.jobs))):
            print("error: a shard failed", file=sys.stderr)
            return 1
    if args.jobs or args.summary:
        return summarise(args.truth_epochs, args.truth_lr)
    p.error("give --jobs N, --shard K/N or --summary")
    return 2


if __name__ == "__main__":
    sys.exit(main())
