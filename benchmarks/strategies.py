"""Search-strategy benchmark: SA vs random vs regularized evolution vs TPE on the tabular width benchmarks.

Every strategy runs through the real sanas search API (``sanas.SANAS``, in-memory study, the parameter budget as
its constraint) with a table's held-out validation accuracy as the reward, so a search of 100 evaluations takes
a fraction of a second instead of hours of training. For each table, reward scale, strategy, N and seed it records
the best configuration found in the first N evaluations and reports over the seeds.

Tables (``benchmarks/width_table.py``): the main one, ``width_table.csv`` (4 cells × 5 widths, 625 networks), and
a second of another shape, ``width_table_3x6.csv`` (3 cells × 6 widths, a shorter training, 216 networks), on
which nothing was tuned. Reward scales: the validation accuracy as a fraction (×1) and in percent (×100) — the
same search, so a strategy whose defaults depend on the reward's units shows it.

Strategies (with rewards × 100, only those of ``--scaled``): ``sa`` (sanas' default SA: the scale-free
``init_temperature="auto"``, reduce_rate 0.85), ``sa-t0-1`` (PaddleSlim's fixed T0 = 1.0 with sanas' move),
``sa-paddleslim`` (PaddleSlim exactly: T0 = 1.0 and its one-token move, the search ends when its neighbourhood is
used up), ``sa-tuned`` (a fixed T0 0.001 / rate 0.95, the best of ``--tune``'s grid on the main table's tuning
seeds), ``random``, ``evolution`` (regularized evolution), ``tpe`` (Optuna's TPE). Reported:

- regret: best feasible validation accuracy in the table − validation accuracy of the best found, in points
  (mean, 95 % CI);
- P(top 1 %): how often the best found is among the top 1 % of feasible configurations by validation accuracy;
- test accuracy of the selected configuration (the test set is never seen by the search);
- evaluations actually run (a sampler that runs out of new feasible candidates stops early);
- the targets of the default SA, at every N: mean regret ≤ 0.6 × random's (bootstrap of the ratio of means) and
  ≤ regularized evolution's (permutation test), each one-sided, p < 0.01.

    .venv/bin/python benchmarks/strategies.py                    # both tables × ×1/×100, 100 seeds, 2 processes
    .venv/bin/python benchmarks/strategies.py --seeds 2 --n 10   # the CI-sized run
    .venv/bin/python benchmarks/strategies.py --tune-auto        # choose the auto temperature's p0 (tuning seeds)
    .venv/bin/python benchmarks/strategies.py --tune             # a fixed (T0, reduce_rate) grid (tuning seeds)

Writes ``strategies.md`` (the tables) and ``strategies.png`` (regret vs N per table) to ``--out``.
"""

from __future__ import annotations

import argparse
import io
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
import sanas.search.chain as chain
from sanas.atomic import atomic_write_bytes, atomic_write_text
from sanas.search import SANAS, SimulatedAnnealingSampler
from sanas.spaces import PlainCNNSpace
from width_table import SHAPES, TABLE, load_table

#: SA with a fixed T0, tuned: the best (init_temperature, reduce_rate) of ``--tune``'s grid at N=100 on seeds
#: 1000..1019 of the main table, disjoint from the evaluation seeds 0..99.
TUNED = {"init_temperature": 0.001, "reduce_rate": 0.95}
TUNE_GRID = [(t0, rr) for t0 in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1) for rr in (0.8, 0.9, 0.95, 0.98)]
TUNE_SEEDS = range(1000, 1020)
#: ``--tune-auto``: candidate values of the auto temperature's p0 (``sanas.search.chain.AUTO_ACCEPTANCE``), run on
#: the main table's tuning seeds 1000..1099 (disjoint from the evaluation seeds) at N = 25, 50, 100.
AUTO_GRID = (0.01, 0.03, 0.1, 0.3, 0.5)
AUTO_TUNE_SEEDS = range(1000, 1100)
STRATEGIES = ["sa", "sa-t0-1", "sa-paddleslim", "sa-tuned", "random", "evolution", "tpe"]
#: Strategies also run with rewards × 100 (``--scales``): the default SA and the baselines of its targets, which
#: only compare rewards and so must come out identical, and PaddleSlim's fixed T0, which does not.
SCALED = ["sa", "sa-t0-1", "random", "evolution"]
#: Targets of the default SA (issue 12): regret ≤ RATIO × random's and ≤ evolution's, one-sided p < ALPHA.
RATIO, ALPHA = 0.6, 0.01
DEFAULT_TABLES = [SHAPES["4x5"].table, SHAPES["3x6"].table]


@dataclass(frozen=True)
class Table:
    """A benchmark table with the budget applied: what every strategy is scored against."""

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
        shape = next((s for s in SHAPES.values() if s.table.resolve() == Path(path).resolve()), None)
        space = shape.space() if shape is not None else _space_of(rows)
        if budget is None:
            budget = int(statistics.median_low([r["params"] for r in rows]))
        feasible = sorted((r for r in rows if r["params"] <= budget), key=lambda r: -r["val_acc"])
        if not feasible:
            raise ValueError(f"no configuration of {path} has at most {budget} parameters")
        k = max(1, math.ceil(0.01 * len(feasible)))
        cutoff = feasible[k - 1]["val_acc"]  # ties at the cutoff count as top 1 %
        top1 = frozenset(r["tokens"] for r in feasible if r["val_acc"] >= cutoff)
        return cls(Path(path), rows, space, budget, {r["tokens"]: r for r in rows}, feasible, feasible[0]["val_acc"],
                   top1)


def _space_of(rows: list[dict[str, Any]]) -> PlainCNNSpace:
    """The PlainCNNSpace of a table not in ``SHAPES``: widths and cell count read from its rows."""
    widths = sorted({int(w) for r in rows for w in r["widths"].split("-")})
    return PlainCNNSpace(filter_num=widths, layers=len(rows[0]["tokens"].split("-")))


@dataclass(frozen=True)
class Task:
    """One search: ``strategy`` with ``seed`` for ``steps`` evaluations on ``table``, rewards ``scale`` × val acc.

    ``t0``/``rr`` override SA's fixed temperature (``--tune``); ``p0`` the auto temperature's (``--tune-auto``).
    """

    strategy: str
    seed: int
    steps: int
    table: str
    scale: float = 1.0
    t0: float | None = None
    rr: float | None = None
    p0: float | None = None


def make_search(task: Task, table: Table) -> SANAS:
    """A fresh in-memory sanas search of ``task.strategy`` under the table's budget."""
    common: dict[str, Any] = {"search_steps": task.steps, "save_checkpoint": None, "max_params": table.budget,
                              "seed": task.seed}
    strategy = task.strategy
    if strategy == "sa":  # the library's defaults, nothing else
        return SANAS(table.space, **common)
    if strategy == "sa-t0-1":
        return SANAS(table.space, init_temperature=chain.PADDLESLIM_INIT_TEMPERATURE, **common)
    if strategy == "sa-paddleslim":  # PaddleSlim's exact move and T0: one token, the search ends when none is new
        sampler = SimulatedAnnealingSampler(table.space.range_table(), table.space.init_tokens(), seed=task.seed,
                                            init_temperature=chain.PADDLESLIM_INIT_TEMPERATURE,
                                            widen_when_stuck=False)
        return SANAS(table.space, sampler=sampler, **{k: v for k, v in common.items() if k != "seed"})
    if strategy == "sa-tuned":
        return SANAS(table.space, init_temperature=task.t0 if task.t0 is not None else TUNED["init_temperature"],
                     reduce_rate=task.rr if task.rr is not None else TUNED["reduce_rate"], **common)
    if strategy in ("random", "evolution"):
        return SANAS(table.space, sampler=strategy, **common)
    if strategy == "tpe":
        return SANAS(table.space, sampler=optuna.samplers.TPESampler(seed=task.seed), **common)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def run_search(task: Task) -> tuple[Task, list[str]]:
    """Run one search; returns ``(task, keys of the evaluated configurations in order)``."""
    table = _table(task.table)
    default_p0 = chain.AUTO_ACCEPTANCE
    if task.p0 is not None:
        chain.AUTO_ACCEPTANCE = task.p0  # tuning only: the module constant is read at every step
    try:
        search = make_search(task, table)
        evaluated = []
        while (tokens := search.next_tokens()) is not None:
            key = "-".join(map(str, tokens))
            search.reward(task.scale * table.by_key[key]["val_acc"])
            evaluated.append(key)
        search.close()
    finally:
        chain.AUTO_ACCEPTANCE = default_p0
    return task, evaluated


_TABLES: dict[str, Table] = {}


def _table(path: str) -> Table:
    if path not in _TABLES:
        _TABLES[path] = Table.load(Path(path))
    return _TABLES[path]


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


def permutation_test(a: Sequence[float], b: Sequence[float], rounds: int = 20000, seed: int = 0,
                     alternative: str = "two-sided") -> float:
    """Permutation test of equal means; ``alternative="less"`` tests mean(a) < mean(b). Returns the p-value."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    sign = {"two-sided": 0, "less": -1}[alternative]
    observed = x.mean() - y.mean()
    pooled = np.concatenate([x, y])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(rounds):
        rng.shuffle(pooled)
        d = pooled[:len(x)].mean() - pooled[len(x):].mean()
        hits += (abs(d) >= abs(observed) - 1e-12) if sign == 0 else (d <= observed + 1e-12)
    return (hits + 1) / (rounds + 1)


def ratio_test(a: Sequence[float], b: Sequence[float], ratio: float, rounds: int = 20000,
               seed: int = 0) -> tuple[float, float, float]:
    """``mean(a) / mean(b)``, its one-sided 99 % upper bound, and the bootstrap p of ``mean(a) >= ratio · mean(b)``.

    Each group is resampled with replacement; p is the share of resamples whose means still satisfy the null.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, len(x), (rounds, len(x)))].mean(axis=1)
    my = y[rng.integers(0, len(y), (rounds, len(y)))].mean(axis=1)
    p = (np.sum(mx >= ratio * my) + 1) / (rounds + 1)
    ratios = mx / np.where(my > 0, my, np.nan)
    upper = float(np.nanquantile(ratios, 0.99)) if np.isfinite(ratios).any() else float("nan")
    observed = x.mean() / y.mean() if y.mean() > 0 else float("nan")
    return float(observed), upper, float(p)


def run_all(tasks: list[Task], jobs: int) -> list[tuple[Task, list[str]]]:
    """Run ``tasks`` in ``jobs`` processes (each loads the tables once, with the budgets loaded here)."""
    start, out = time.perf_counter(), []
    budgets = {path: t.budget for path, t in _TABLES.items()}
    if jobs > 1:
        pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_setup, initargs=(budgets,))
        results = pool.imap_unordered(run_search, tasks, chunksize=4)
    else:
        pool, results = None, map(run_search, tasks)
        _setup(budgets)
    try:
        for result in results:
            out.append(result)
            if len(out) % 200 == 0 or len(out) == len(tasks):
                print(f"  {len(out)}/{len(tasks)} searches, {time.perf_counter() - start:.0f} s", file=sys.stderr,
                      flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    return out


def _setup(budgets: dict[str, int] | None = None) -> None:
    logging.getLogger("sanas").setLevel(logging.ERROR)  # exhaustion warnings are counted, not printed
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for path, budget in (budgets or {}).items():
        if path not in _TABLES or _TABLES[path].budget != budget:
            _TABLES[path] = Table.load(Path(path), budget)


Outcomes = dict[tuple[str, float, str, int], list[Outcome]]  # (table, scale, strategy, N) -> per seed


def collect(results: list[tuple[Task, list[str]]], ns: Sequence[int]) -> Outcomes:
    outcomes: Outcomes = {}
    for task, evaluated in sorted(results, key=lambda r: (r[0].table, r[0].scale, r[0].strategy, r[0].seed)):
        for n in ns:
            outcomes.setdefault((task.table, task.scale, task.strategy, n), []).append(
                score(_table(task.table), evaluated, n))
    return outcomes


def describe(table: Table) -> str:
    best = table.feasible[0]
    return (f"`{table.path.name}` ({len(table.rows)} configurations, widths "
            f"{table.space.filter_num} × {table.space.layers} cells); budget ≤ {table.budget:,} parameters (the "
            f"median configuration) → {len(table.feasible)} feasible; best feasible {best['tokens']} (widths "
            f"{best['widths']}): val {best['val_acc']:.4f}, test {best['test_acc']:.4f}; top 1 % = "
            f"{len(table.top1)} configurations")


def report(outcomes: Outcomes, tables: Sequence[Table], scales: Sequence[float], ns: Sequence[int],
           strategies: Sequence[str]) -> str:
    """The Markdown report: one strategy table per (table, scale), then the default SA's targets."""
    lines: list[str] = []
    targets: list[str] = []
    for table in tables:
        for scale in scales:
            present = [s for s in strategies if (str(table.path), scale, s, ns[0]) in outcomes]
            seeds = len(outcomes[(str(table.path), scale, present[0], ns[0])])
            lines += [f"### {table.path.name}, rewards × {scale:g}", "",
                      f"Table: {describe(table)}. {seeds} seeds per row.", "",
                      "| strategy | N | mean regret (pp) | 95 % CI | P(top 1 %) | test acc of pick | evaluations run |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for strategy in present:
                for n in ns:
                    o = outcomes[(str(table.path), scale, strategy, n)]
                    m, ci = mean_ci([x.regret * 100 for x in o])
                    lines.append(f"| {strategy} | {n} | {m:.2f} | ±{ci:.2f} | "
                                 f"{statistics.fmean(x.top1 for x in o):.2f} | "
                                 f"{statistics.fmean(x.test_acc for x in o):.4f} | "
                                 f"{statistics.fmean(x.evaluations for x in o):.1f} |")
            lines.append("")
            if seeds >= 2 and {"sa", "random", "evolution"} <= set(present):
                for n in ns:
                    sa, rnd, evo = ([x.regret * 100 for x in outcomes[(str(table.path), scale, s, n)]]
                                    for s in ("sa", "random", "evolution"))
                    ratio, upper, p_ratio = ratio_test(sa, rnd, RATIO)
                    p_evo = permutation_test(sa, evo, alternative="less")
                    met = p_ratio < ALPHA and p_evo < ALPHA
                    targets.append(f"| {table.path.name} | × {scale:g} | {n} | {statistics.fmean(sa):.2f} | "
                                   f"{statistics.fmean(rnd):.2f} | {statistics.fmean(evo):.2f} | {ratio:.2f} "
                                   f"(≤ {upper:.2f}) | {_p(p_ratio)} | {_p(p_evo)} | {'yes' if met else '**no**'} |")
    if targets:
        lines += ["### Targets of the default SA", "",
                  f"Mean regret (pp) of `sa` vs random and regularized evolution. Ratio: mean(sa) / mean(random), "
                  f"with its one-sided 99 % bootstrap upper bound; p(ratio): bootstrap p-value of "
                  f"mean(sa) ≥ {RATIO} × mean(random); p(evo): one-sided permutation test of mean(sa) ≥ "
                  f"mean(evolution) (20,000 resamples each). Met: both p < {ALPHA}.", "",
                  "| table | rewards | N | sa | random | evolution | sa / random | p(ratio) | p(evo) | met |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|", *targets, ""]
    return "\n".join(lines)


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def plot(outcomes: Outcomes, tables: Sequence[Table], ns: Sequence[int], strategies: Sequence[str],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4.5), dpi=100, squeeze=False)
    for ax, table in zip(axes[0], tables, strict=True):
        for strategy in strategies:
            stats = [mean_ci([x.regret * 100 for x in outcomes[(str(table.path), 1.0, strategy, n)]]) for n in ns]
            ax.errorbar(ns, [m for m, _ in stats], yerr=[0 if math.isnan(c) else c for _, c in stats], marker="o",
                        capsize=3, label=strategy)
        ax.set_xscale("log")
        ax.set_xticks(list(ns), [str(n) for n in ns])
        ax.set_xlabel("evaluations N")
        ax.set_ylabel("mean regret, val top-1 (pp)")
        ax.set_title(f"{table.path.name} (rewards × 1, 95 % CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def tune(table: Table, jobs: int) -> str:
    """A fixed (T0, reduce_rate) grid at N=100 on the tuning seeds; returns a Markdown table."""
    tasks = [Task("sa-tuned", seed, 100, str(table.path), t0=t0, rr=rr) for t0, rr in TUNE_GRID
             for seed in TUNE_SEEDS]
    regrets: dict[tuple[float | None, float | None], list[float]] = {}
    for task, evaluated in run_all(tasks, jobs):
        regrets.setdefault((task.t0, task.rr), []).append(score(table, evaluated, 100).regret * 100)
    lines = [f"SA grid, N=100, seeds {TUNE_SEEDS.start}..{TUNE_SEEDS.stop - 1}:", "",
             "| T0 | reduce_rate | mean regret (pp) | 95 % CI |", "|---:|---:|---:|---:|"]
    for (t0, rr), values in sorted(regrets.items(), key=lambda kv: statistics.fmean(kv[1])):
        m, ci = mean_ci(values)
        lines.append(f"| {t0} | {rr} | {m:.2f} | ±{ci:.2f} |")
    return "\n".join(lines) + "\n"


def tune_auto(table: Table, jobs: int, grid: Sequence[float] = AUTO_GRID,
              seeds: Sequence[int] = AUTO_TUNE_SEEDS) -> tuple[str, float]:
    """The auto temperature's p0 grid on the tuning seeds; returns a Markdown table and the chosen p0.

    Score: mean regret over N = 25, 50, 100 (each seed's three regrets averaged). Rule, fixed before running: the
    largest p0 within one standard error of the best score — the most exploring setting the data cannot tell
    from the best, since the rewards of real searches (short proxy trainings) are noisier than this table's.
    """
    ns = (25, 50, 100)
    tasks = [Task("sa", seed, max(ns), str(table.path), p0=p0) for p0 in grid for seed in seeds]
    per: dict[float, dict[int, list[float]]] = {}
    for task, evaluated in run_all(tasks, jobs):
        assert task.p0 is not None
        per.setdefault(task.p0, {})[task.seed] = [score(table, evaluated, n).regret * 100 for n in ns]
    stats = {}
    for p0, by_seed in per.items():
        values = [statistics.fmean(v) for v in by_seed.values()]
        stats[p0] = (statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1
                     else 0.0, [statistics.fmean(v[i] for v in by_seed.values()) for i in range(len(ns))])
    best = min(stats, key=lambda p: stats[p][0])
    chosen = max(p for p in stats if stats[p][0] <= stats[best][0] + stats[best][1])
    lines = [f"Auto temperature, p0 grid on `{table.path.name}`, seeds {seeds[0]}..{seeds[-1]} "
             f"(rewards × 1; mean regret in pp):", "",
             "| p0 | N = 25 | N = 50 | N = 100 | mean of the three | ± 1 SE |", "|---:|---:|---:|---:|---:|---:|"]
    for p0 in sorted(stats):
        m, se, by_n = stats[p0]
        mark = " **chosen**" if p0 == chosen else ""
        lines.append(f"| {p0:g}{mark} | {by_n[0]:.2f} | {by_n[1]:.2f} | {by_n[2]:.2f} | {m:.3f} | {se:.3f} |")
    lines.append("")
    lines.append(f"Best mean: p0 = {best:g}; largest p0 within one SE of it: {chosen:g} "
                 f"(sanas.search.chain.AUTO_ACCEPTANCE = {chain.AUTO_ACCEPTANCE:g}).")
    return "\n".join(lines) + "\n", chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", type=Path, nargs="+", help="tables to run on (default: every committed table)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 100.0], help="reward = scale × val acc")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--n", type=int, nargs="+", default=[25, 50, 100], help="evaluation counts to report")
    p.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    p.add_argument("--scaled", nargs="+", default=SCALED, choices=STRATEGIES,
                   help=f"strategies run at the scales other than 1 (default: {' '.join(SCALED)})")
    p.add_argument("--budget", type=int, help="parameter budget (default: each table's median configuration)")
    p.add_argument("--jobs", type=int, default=2, help="processes")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    p.add_argument("--tune", action="store_true", help="a fixed T0/reduce_rate grid on the main table's tuning seeds")
    p.add_argument("--tune-auto", action="store_true", help="the auto temperature's p0 grid (tuning seeds)")
    args = p.parse_args(argv)
    paths = args.tables or [t for t in DEFAULT_TABLES if t.exists()]
    for path in paths:
        if not path.exists():
            p.error(f"table {path} does not exist; generate it with benchmarks/width_table.py")
    if not paths:
        p.error(f"no table found ({', '.join(map(str, DEFAULT_TABLES))}); generate them with benchmarks/width_table.py")
    if args.seeds < 1 or min(args.n) < 1 or min(args.scales) <= 0:
        p.error(f"--seeds, --n and --scales must be positive, got {args.seeds}, {args.n} and {args.scales}")
    try:
        tables = [Table.load(path, args.budget) for path in paths]
    except ValueError as e:
        p.error(str(e))
    for table in tables:
        _TABLES[str(table.path)] = table
    if args.tune:
        print(tune(tables[0], args.jobs))
        return 0
    if args.tune_auto:
        print(tune_auto(tables[0], args.jobs)[0])
        return 0
    ns = sorted(set(args.n))
    scales = list(dict.fromkeys(args.scales))
    tasks = [Task(s, seed, max(ns), str(t.path), scale) for t in tables for scale in scales for s in args.strategies
             if scale == 1.0 or s in args.scaled for seed in range(args.seeds)]
    start = time.perf_counter()
    outcomes = collect(run_all(tasks, args.jobs), ns)
    text = report(outcomes, tables, scales, ns, args.strategies)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "strategies.md"
    command = " ".join(["python benchmarks/strategies.py", *(argv if argv is not None else sys.argv[1:])])
    atomic_write_text(md, f"# Search strategies on the tabular width benchmarks\n\n`{command.strip()}` "
                          f"({time.perf_counter() - start:.0f} s)\n\n{text}")
    if 1.0 in scales:
        plot(outcomes, tables, ns, args.strategies, args.out / "strategies.png")
    print(text)
    print(f"wrote {md}" + (f" and {args.out / 'strategies.png'}" if 1.0 in scales else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
