"""Search-strategy benchmark: SA vs random vs regularized evolution vs TPE on the tabular width benchmark.

Every strategy runs through the real sanas search API (``sanas.SANAS``, in-memory study, the parameter budget as
its constraint) with the table's held-out validation accuracy as the reward, so a search of 200 evaluations takes
a fraction of a second instead of hours of training. For each strategy, N and seed it records the best
configuration found in the first N evaluations and reports over the seeds. Strategies: ``sa`` (sanas' SA, PaddleSlim's
T0 and reduce_rate), ``sa-tuned`` (T0 and reduce_rate from ``--tune``), ``sa-paddleslim`` (PaddleSlim's exact move:
one token only, the search ends when its neighbourhood is used up), ``random``, ``evolution`` (regularized
evolution), ``tpe`` (Optuna's TPE). Reported:

- regret: best feasible validation accuracy in the table − validation accuracy of the best found (mean, 95 % CI);
- P(top 1 %): how often the best found is among the top 1 % of feasible configurations by validation accuracy;
- test accuracy of the selected configuration (the test set is never seen by the search);
- evaluations actually run (a sampler that runs out of new feasible candidates stops early).

    .venv/bin/python benchmarks/strategies.py                       # 100 seeds, N = 25/50/100/200, 2 processes
    .venv/bin/python benchmarks/strategies.py --seeds 2 --n 10      # the CI-sized run
    .venv/bin/python benchmarks/strategies.py --tune                # SA's T0/reduce_rate grid on tuning seeds

Writes ``strategies.md`` (the tables) and ``strategies.png`` (regret vs N) to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sanas.search import SANAS, SimulatedAnnealingSampler
from sanas.spaces import PlainCNNSpace
from width_table import SETTINGS, TABLE, load_table

#: SA tuned: the best (init_temperature, reduce_rate) of ``--tune``'s grid at N=100 on seeds 1000..1019, which
#: are disjoint from the evaluation seeds 0..99. The defaults (1.0, 0.85) are PaddleSlim's, made for rewards in
#: [0, 1] whose differences between neighbours are ~0.01, so at T=1 nearly every move is accepted.
TUNED = {"init_temperature": 0.001, "reduce_rate": 0.95}
TUNE_GRID = [(t0, rr) for t0 in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1) for rr in (0.8, 0.9, 0.95, 0.98)]
TUNE_SEEDS = range(1000, 1020)
STRATEGIES = ["sa", "sa-tuned", "sa-paddleslim", "random", "evolution", "tpe"]


@dataclass(frozen=True)
class Table:
    """The benchmark table with the budget applied: what every strategy is scored against."""

    path: Path
    rows: list[dict[str, Any]]
    space: PlainCNNSpace
    budget: int
    by_key: dict[str, dict[str, Any]]
    feasible: list[dict[str, Any]]
    best_val: float
    top1: frozenset[str]

    @classmethod
    def load(cls, path: Path = TABLE, budget: int | None = None) -> Table:
        rows = load_table(path)
        space = PlainCNNSpace(**{k: v for k, v in SETTINGS["space"].items() if k != "name"})
        if budget is None:
            budget = int(statistics.median_low([r["params"] for r in rows]))
        feasible = sorted((r for r in rows if r["params"] <= budget), key=lambda r: -r["val_acc"])
        if not feasible:
            raise ValueError(f"no configuration of {path} has at most {budget} parameters")
        k = max(1, math.ceil(0.01 * len(feasible)))
        cutoff = feasible[k - 1]["val_acc"]  # ties at the cutoff count as top 1 %
        top1 = frozenset(r["tokens"] for r in feasible if r["val_acc"] >= cutoff)
        return cls(path, rows, space, budget, {r["tokens"]: r for r in rows}, feasible, feasible[0]["val_acc"], top1)


def make_search(strategy: str, seed: int, steps: int, table: Table, t0: float | None = None,
                reduce_rate: float | None = None) -> SANAS:
    """A fresh in-memory sanas search of ``strategy`` under the table's budget."""
    common: dict[str, Any] = {"search_steps": steps, "save_checkpoint": None, "max_params": table.budget,
                              "seed": seed}
    if strategy == "sa":
        return SANAS(table.space, sampler="sa", **common)
    if strategy == "sa-paddleslim":  # PaddleSlim's exact move: one token, and the search ends when none is new
        sampler = SimulatedAnnealingSampler(table.space.range_table(), table.space.init_tokens(), seed=seed,
                                            widen_when_stuck=False)
        return SANAS(table.space, sampler=sampler, **{k: v for k, v in common.items() if k != "seed"})
    if strategy == "sa-tuned":
        return SANAS(table.space, sampler="sa", init_temperature=t0 if t0 is not None else TUNED["init_temperature"],
                     reduce_rate=reduce_rate if reduce_rate is not None else TUNED["reduce_rate"], **common)
    if strategy in ("random", "evolution"):
        return SANAS(table.space, sampler=strategy, **common)
    if strategy == "tpe":
        return SANAS(table.space, sampler=optuna.samplers.TPESampler(seed=seed), **common)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


Task = tuple[str, int, int, str, float | None, float | None]  # strategy, seed, steps, table, T0, reduce_rate


def run_search(task: Task) -> tuple[Task, list[str]]:
    """Run one search; returns ``(task, keys of the evaluated configurations in order)``."""
    strategy, seed, steps, table_path, t0, rr = task
    table = _table(table_path)
    search = make_search(strategy, seed, steps, table, t0, rr)
    evaluated = []
    while (tokens := search.next_tokens()) is not None:
        key = "-".join(map(str, tokens))
        search.reward(table.by_key[key]["val_acc"])
        evaluated.append(key)
    search.close()
    return task, evaluated


_TABLES: dict[str, Table] = {}


def _table(path: str) -> Table:
    if path not in _TABLES:
        _TABLES[path] = Table.load(Path(path))
    return _TABLES[path]  # set up by run_all with the run's budget


@dataclass
class Outcome:
    regret: float
    top1: bool
    test_acc: float
    evaluations: int


def score(table: Table, evaluated: Sequence[str], n: int) -> Outcome:
    """What a search that ran ``evaluated`` achieved after its first ``n`` evaluations."""
    seen = [table.by_key[k] for k in evaluated[:n]]
    best = max(seen, key=lambda r: r["val_acc"])  # first of equals: the one a user would have picked
    if best["params"] > table.budget:
        raise AssertionError(f"{best['tokens']} breaks the budget: the search's constraint failed")
    return Outcome(table.best_val - best["val_acc"], best["tokens"] in table.top1, best["test_acc"], len(seen))


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (normal approximation)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def permutation_test(a: Sequence[float], b: Sequence[float], rounds: int = 20000, seed: int = 0) -> float:
    """Two-sided permutation test of equal means; returns the p-value."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    observed = abs(x.mean() - y.mean())
    pooled = np.concatenate([x, y])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(rounds):
        rng.shuffle(pooled)
        hits += abs(pooled[:len(x)].mean() - pooled[len(x):].mean()) >= observed - 1e-12
    return (hits + 1) / (rounds + 1)


def run_all(tasks: list[Task], jobs: int, table: Table) -> list[tuple[Task, list[str]]]:
    """Run ``tasks`` in ``jobs`` processes (each loads ``table`` once, with its budget)."""
    start, out = time.perf_counter(), []
    setup = (str(table.path), table.budget)
    if jobs > 1:
        pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_setup, initargs=setup)
        results = pool.imap_unordered(run_search, tasks, chunksize=4)
    else:
        pool, results = None, map(run_search, tasks)
        _setup(*setup)
    try:
        for result in results:
            out.append(result)
            if len(out) % 50 == 0 or len(out) == len(tasks):
                print(f"  {len(out)}/{len(tasks)} searches, {time.perf_counter() - start:.0f} s", file=sys.stderr,
                      flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    return out


def _setup(table_path: str, budget: int) -> None:
    logging.getLogger("sanas").setLevel(logging.ERROR)  # exhaustion warnings are counted, not printed
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if table_path not in _TABLES or _TABLES[table_path].budget != budget:
        _TABLES[table_path] = Table.load(Path(table_path), budget)


def report(table: Table, results: list[tuple[Task, list[str]]], ns: Sequence[int],
           strategies: Sequence[str]) -> tuple[str, dict[tuple[str, int], list[Outcome]]]:
    """The Markdown report and the per-(strategy, N) outcomes."""
    outcomes: dict[tuple[str, int], list[Outcome]] = {}
    for task, evaluated in sorted(results, key=lambda r: (r[0][0], r[0][1])):
        for n in ns:
            outcomes.setdefault((task[0], n), []).append(score(table, evaluated, n))
    seeds = len(outcomes[(strategies[0], ns[0])])
    best = table.feasible[0]
    lines = [
        f"Table: `{table.path.name}` ({len(table.rows)} configurations); budget ≤ "
        f"{table.budget:,} parameters (median config) → {len(table.feasible)} feasible; best feasible "
        f"{best['tokens']} (widths {best['widths']}): val {best['val_acc']:.4f}, test {best['test_acc']:.4f}; "
        f"top 1 % = {len(table.top1)} configurations. {seeds} seeds per cell; SA tuned = "
        f"T0 {TUNED['init_temperature']}, reduce_rate {TUNED['reduce_rate']}.",
        "",
        "| strategy | N | mean regret (pp) | 95 % CI | P(top 1 %) | test acc of pick | evaluations run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for strategy in strategies:
        for n in ns:
            o = outcomes[(strategy, n)]
            m, ci = mean_ci([x.regret * 100 for x in o])
            lines.append(f"| {strategy} | {n} | {m:.2f} | ±{ci:.2f} | {statistics.fmean(x.top1 for x in o):.2f} | "
                         f"{statistics.fmean(x.test_acc for x in o):.4f} | "
                         f"{statistics.fmean(x.evaluations for x in o):.1f} |")
    n_test = 100 if 100 in ns else max(ns)
    if "sa" in strategies and seeds >= 2:
        lines += ["", f"Two-sided permutation tests of mean regret at N={n_test} (20,000 permutations):", ""]
        for ours in ("sa", "sa-tuned", "sa-paddleslim"):
            for other in ("random", "evolution", "tpe"):
                if ours in strategies and other in strategies:
                    a = [x.regret for x in outcomes[(ours, n_test)]]
                    b = [x.regret for x in outcomes[(other, n_test)]]
                    diff = (statistics.fmean(a) - statistics.fmean(b)) * 100
                    pvalue = permutation_test(a, b)
                    shown = "p < 0.0001" if pvalue < 1e-4 else f"p = {pvalue:.4f}"
                    lines.append(f"- {ours} − {other}: {diff:+.2f} pp, {shown}")
    return "\n".join(lines) + "\n", outcomes


def plot(outcomes: dict[tuple[str, int], list[Outcome]], ns: Sequence[int], strategies: Sequence[str],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for strategy in strategies:
        stats = [mean_ci([x.regret * 100 for x in outcomes[(strategy, n)]]) for n in ns]
        means = [m for m, _ in stats]
        ax.errorbar(ns, means, yerr=[0 if math.isnan(c) else c for _, c in stats], marker="o", capsize=3,
                    label=strategy)
    ax.set_xscale("log")
    ax.set_xticks(list(ns), [str(n) for n in ns])
    ax.set_xlabel("evaluations N")
    ax.set_ylabel("mean regret, val top-1 (pp)")
    ax.set_title("Regret vs evaluations on the tabular width benchmark (95 % CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def tune(table: Table, jobs: int) -> str:
    """SA's (T0, reduce_rate) grid at N=100 on the tuning seeds; returns a Markdown table."""
    tasks: list[Task] = [("sa-tuned", seed, 100, str(table.path), t0, rr) for t0, rr in TUNE_GRID
                         for seed in TUNE_SEEDS]
    regrets: dict[tuple[float, float], list[float]] = {}
    for task, evaluated in run_all(tasks, jobs, table):
        regrets.setdefault((task[4], task[5]), []).append(score(table, evaluated, 100).regret * 100)
    lines = [f"SA grid, N=100, seeds {TUNE_SEEDS.start}..{TUNE_SEEDS.stop - 1}:", "",
             "| T0 | reduce_rate | mean regret (pp) | 95 % CI |", "|---:|---:|---:|---:|"]
    for (t0, rr), values in sorted(regrets.items(), key=lambda kv: statistics.fmean(kv[1])):
        m, ci = mean_ci(values)
        lines.append(f"| {t0} | {rr} | {m:.2f} | ±{ci:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--n", type=int, nargs="+", default=[25, 50, 100, 200], help="evaluation counts to report")
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--budget", type=int, help="parameter budget (default: the median configuration's params)")
    p.add_argument("--jobs", type=int, default=2, help="processes")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    p.add_argument("--tune", action="store_true", help="run SA's T0/reduce_rate grid on the tuning seeds")
    args = p.parse_args(argv)
    if not args.table.exists():
        p.error(f"table {args.table} does not exist; generate it with benchmarks/width_table.py --jobs 2")
    if args.seeds < 1 or min(args.n) < 1:
        p.error(f"--seeds and --n must be positive, got {args.seeds} and {args.n}")
    try:
        table = Table.load(args.table, args.budget)
    except ValueError as e:
        p.error(str(e))
    ns = sorted(set(args.n))
    if args.tune:
        print(tune(table, args.jobs))
        return 0
    tasks: list[Task] = [(s, seed, max(ns), str(args.table), None, None) for s in args.strategies
                         for seed in range(args.seeds)]
    start = time.perf_counter()
    results = run_all(tasks, args.jobs, table)
    text, outcomes = report(table, results, ns, args.strategies)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "strategies.md"
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(f"# Search strategies on the tabular width benchmark\n\n"
                   f"`python benchmarks/strategies.py --seeds {args.seeds} --n {' '.join(map(str, ns))}` "
                   f"({time.perf_counter() - start:.0f} s)\n\n{text}")
    tmp.replace(md)
    plot(outcomes, ns, args.strategies, args.out / "strategies.png")
    print(text)
    print(f"wrote {md} and {args.out / 'strategies.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
