"""The search report: what a study found, as a table, a Markdown file and two plots.

Everything is read back from the study (the single source of truth, wherever it is stored), so a report can
be made while the search runs, after it, or from another machine.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.console import Group
from rich.table import Table
from rich.text import Text

from sanas.atomic import atomic_write_bytes, atomic_write_text
from sanas.runs.config import SEARCH_DEFAULTS, RunConfig
from sanas.runs.finalists import chosen, describe
from sanas.search.chain import (
    FAIL_REASON_KEY,
    STATUS_KEY,
    STOPPED,
    VOID_STATUSES,
    evaluations,
    replay_chain,
    trial_tokens,
)
from sanas.search.samplers import SAMPLERS, SimulatedAnnealingSampler
from sanas.spaces import SearchSpace
from sanas.training.recipe import DEFAULT_EPOCHS

__all__ = ["Candidate", "SearchReport", "build_report", "failure_line", "render_report", "write_report"]


@dataclass
class Candidate:
    """One proposed candidate of the study."""

    trial: int
    tokens: list[int]
    state: str  # "complete", "running", "failed"
    reward: float | None
    params: int
    macs: int
    seconds: float | None
    reason: str = ""
    accepted: bool | None = None  # by the SA chain (None when the sampler is not SA or not evaluated)
    feasible: bool = True
    stopped: bool = False  # stopped early (inherit evaluation): ``reward`` is partial and the chain rejected it


@dataclass
class SearchReport:
    """A study summarised: candidates in evaluation order, the SA chain, the best and the init candidates."""

    config: dict[str, Any]
    budget: int | None
    init_tokens: list[int]
    init_params: int
    candidates: list[Candidate]
    chain: list[dict[str, Any]] = field(default_factory=list)  # per evaluation: k, trial, reward, T, current, best
    search_steps: int = 0
    #: ``RUN/finalists.json`` (see :mod:`sanas.runs.finalists`), when the search has a finalists stage.
    finalists: dict[str, Any] | None = None

    @property
    def chosen(self) -> dict[str, Any] | None:
        """The finalist with the best fine-tuned reward, once every finalist is done (else ``None``)."""
        return chosen(self.finalists)

    @property
    def complete(self) -> list[Candidate]:
        """Evaluations that ran to their end (stopped ones are partial: see :attr:`stopped`)."""
        return [c for c in self.candidates if c.state == "complete" and not c.stopped]

    @property
    def stopped(self) -> list[Candidate]:
        """Evaluations stopped early because they could not reach the chain's acceptance threshold."""
        return [c for c in self.candidates if c.state == "complete" and c.stopped]

    @property
    def failed(self) -> list[Candidate]:
        return [c for c in self.candidates if c.state == "failed"]

    @property
    def running(self) -> list[Candidate]:
        return [c for c in self.candidates if c.state == "running"]

    @property
    def init(self) -> Candidate | None:
        return next((c for c in self.complete if c.tokens == self.init_tokens), None)

    @property
    def best(self) -> Candidate | None:
        """The highest reward among feasible evaluations (ties: fewer parameters, then earlier)."""
        feasible = [c for c in self.complete if c.feasible]
        return max(feasible, key=lambda c: (c.reward, -c.params, -c.trial), default=None)

    def top(self, k: int) -> list[Candidate]:
        return sorted(self.complete, key=lambda c: (-(c.reward or 0.0), c.params, c.trial))[:k]

    def pareto(self) -> list[Candidate]:
        """Evaluations no other beats on both fewer-or-equal parameters and higher-or-equal reward."""
        front: list[Candidate] = []
        for c in sorted(self.complete, key=lambda c: (c.params, -(c.reward or 0.0))):
            if not front or (c.reward or 0.0) > (front[-1].reward or 0.0):
                front.append(c)
        return front


def _state(trial: FrozenTrial) -> str:
    return {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running"}.get(trial.state, "failed")


def build_report(trials: Sequence[FrozenTrial], space: SearchSpace, config: RunConfig,
                 finalists: dict[str, Any] | None = None) -> SearchReport:
    """Summarise a study's trials (from ``study.get_trials()``) for ``space`` under ``config``, with the record of
    its finalists stage if there is one (:func:`sanas.runs.finalists.read_finalists`)."""
    budget = config.budget(space)
    search = {**SEARCH_DEFAULTS, **config.search}  # a run saved by an older sanas may lack newer settings
    real = [t for t in trials if t.system_attrs.get(STATUS_KEY) not in VOID_STATUSES and trial_tokens(t) is not None]
    candidates: dict[int, Candidate] = {}
    for t in real:
        tokens = list(trial_tokens(t) or ())
        params = space.count_params(tokens)
        seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                   if t.datetime_complete and t.datetime_start else None)
        candidates[t.number] = Candidate(
            trial=t.number, tokens=tokens, state=_state(t), reward=t.value if t.state == TrialState.COMPLETE else None,
            params=params, macs=space.count_macs(tokens), seconds=seconds,
            reason=str(t.user_attrs.get(FAIL_REASON_KEY, "")), feasible=budget is None or params <= budget,
            stopped=t.system_attrs.get(STATUS_KEY) == STOPPED)
    evals = evaluations(trials)
    chain_rows = []
    if SAMPLERS.get(search["sampler"]) is SimulatedAnnealingSampler:
        state = replay_chain(evals, search["init_temperature"], float(search["reduce_rate"]))
        current = best = -math.inf
        for step in state.steps:
            if step.accepted:
                current = step.reward
            if step.best:
                best = step.reward
            candidates[step.number].accepted = step.accepted
            chain_rows.append({"k": step.k, "trial": step.number, "reward": step.reward,
                               "temperature": step.temperature, "accepted": step.accepted, "current": current,
                               "best": best})
    else:
        best = -math.inf
        for k, ev in enumerate(evals):
            best = max(best, ev.reward)
            chain_rows.append({"k": k, "trial": ev.number, "reward": ev.reward, "temperature": None, "accepted": None,
                               "current": None, "best": best})
    order = {row["trial"]: i for i, row in enumerate(chain_rows)}
    ordered = sorted(candidates.values(), key=lambda c: (order.get(c.trial, len(order)), c.trial))
    return SearchReport(config.to_dict(), budget, space.init_tokens(), space.count_params(space.init_tokens()),
                        ordered, chain_rows, int(search["search_steps"]), finalists)


def _pct(value: float, base: float) -> str:
    return f"{100 * (value / base - 1):+.1f} %"


def headline(report: SearchReport) -> list[str]:
    """The report's conclusions as sentences: best vs init, counts, failures."""
    stopped = f" ({len(report.stopped)} of them stopped early)" if report.stopped else ""
    lines = [f"{len(report.complete) + len(report.stopped)} of {report.search_steps} evaluations finished{stopped}, "
             f"{len(report.failed)} failed, {len(report.running)} running; budget "
             f"{'none' if report.budget is None else f'{report.budget:,} params'}."]
    best, init = report.best, report.init
    if best is None:
        lines.append("No feasible candidate has been evaluated yet.")
        return lines
    lines.append(f"Best: trial {best.trial}, tokens {best.tokens}, reward {best.reward:.4f}, {best.params:,} params "
                 f"({_pct(best.params, report.init_params)} vs init).")
    if init is not None and init.reward is not None and best.reward is not None:
        delta = 100 * (best.reward - init.reward)
        lines.append(f"Init model: reward {init.reward:.4f}, {init.params:,} params. "
                     f"Best vs init: params {_pct(best.params, init.params)}, reward {delta:+.2f} points.")
    elif report.budget is not None and report.init_params > report.budget:
        lines.append(f"The init tokens ({report.init_params:,} params) are over the budget, so they were not "
                     f"evaluated and there is no baseline reward.")
    else:
        lines.append("The init tokens have no finished evaluation, so there is no baseline reward.")
    lines += _finalist_lines(report)
    recipe = report.config.get("recipe", {})
    epochs = recipe.get("retain_epoch")
    if epochs is None:  # the recipe's default for its evaluation
        epochs = DEFAULT_EPOCHS.get(recipe.get("evaluation", "scratch"))
    if recipe.get("evaluation") == "inherit":
        how = ("scored right after BatchNorm re-estimation (no fine-tuning)" if epochs == 0 else
               f"BatchNorm re-estimated and fine-tuned for {epochs if epochs is not None else '?'} epoch(s)")
        lines.append(f"Rewards are held-out top-1 of children inherited from the parent, {how}: they rank candidates, "
                     f"they are not final accuracies. `sanas train --run-dir RUN --retain-epoch N` fine-tunes the "
                     f"{'chosen' if report.finalists else 'best'} one from the parent and compares it with the "
                     f"parent.")
    elif epochs is not None:
        lines.append(f"Rewards are {epochs}-epoch proxy trainings (mean held-out top-1 of the last two epochs): "
                     f"they rank candidates, they are not final accuracies, and short proxies are noisy. "
                     f"Retrain the best with `sanas train` to know its accuracy.")
    if report.failed:
        lines.append(failure_line(report))
    return lines


def failure_line(report: SearchReport) -> str:
    """How many candidates failed and why: the reasons (up to the first ``;``), most frequent first.

    >>> failed = [Candidate(i, [0], "failed", None, 1, 0, None, r) for i, r in enumerate([
    ...     "crashed: killed by SIGSEGV; proposed again", "non-finite loss at epoch 1", "crashed: killed by SIGSEGV"])]
    >>> failure_line(SearchReport({}, None, [0], 1, failed, [], 3))
    '3 candidates failed: 2 × crashed: killed by SIGSEGV, 1 × non-finite loss at epoch 1.'
    """
    reasons: dict[str, int] = {}
    for c in report.failed:
        key = (c.reason or "no reason recorded").split(";")[0].strip()
        reasons[key] = reasons.get(key, 0) + 1
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{n} × {r}" for r, n in ranked[:3]) + (f", {len(ranked) - 3} other reasons" if len(ranked) > 3
                                                               else "")
    n = len(report.failed)
    return f"{n} candidate{'s' if n != 1 else ''} failed: {shown}."


def _finalist_lines(report: SearchReport) -> list[str]:
    record = report.finalists
    if not record or not record.get("finalists"):
        return []
    finalists, epochs = record["finalists"], record["settings"]["epochs"]
    done = [f for f in finalists if f.get("done")]
    pick = report.chosen
    if pick is None:
        return [f"Finalists: {len(done)} of {len(finalists)} fine-tuned {epochs:g} epoch(s) so far."]
    count = record["settings"].get("count", len(finalists))
    rank = finalists.index(pick) + 1
    which = ("the search's start" if pick.get("start") and rank > count
             else f"it screened #{rank}" + (", the search's start" if pick.get("start") else ""))
    return [f"Chosen: trial {pick['trial']}, tokens {pick['tokens']}, reward {pick['reward']:.4f} after {epochs:g} "
            f"epoch(s) of fine-tuning, {pick.get('params', 0):,} params — the best of "
            f"{describe(finalists, count)} ({which}); `sanas train` fine-tunes it."]


def _row(c: Candidate, report: SearchReport) -> list[str]:
    state = "stopped early" if c.stopped else c.state
    if c.accepted is not None:
        state += ", accepted" if c.accepted else ", rejected"
    if not c.feasible:
        state += ", over budget"
    return [str(c.trial), " ".join(map(str, c.tokens)), f"{c.params:,}", _pct(c.params, report.init_params),
            f"{c.macs / 1e6:,.1f}M", "" if c.reward is None else f"{c.reward:.4f}", state]


HEADER = ["trial", "tokens", "params", "vs init", "MACs", "reward", "state"]


def render_report(report: SearchReport, top_k: int = 10) -> Group:
    """Rich renderables: the headline and the top-k table."""
    table = Table(title=f"top {top_k} candidates by reward")
    for name in HEADER:
        table.add_column(name, justify="right" if name in ("params", "vs init", "MACs", "reward") else "left")
    for c in report.top(top_k):
        table.add_row(*_row(c, report))
    return Group(Text("\n".join(headline(report))), table)


def _markdown(report: SearchReport, top_k: int) -> str:
    out = io.StringIO()
    out.write("# sanas search report\n\n")
    for line in headline(report):
        out.write(f"- {line}\n")
    out.write(f"\n## Top {top_k} candidates\n\n| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER) + "\n")
    for c in report.top(top_k):
        out.write("| " + " | ".join(_row(c, report)) + " |\n")
    if report.finalists and report.finalists.get("finalists"):
        epochs = report.finalists["settings"]["epochs"]
        out.write(f"\n## Finalists (fine-tuned {epochs:g} epoch(s) each)\n\n| screen rank | trial | tokens | params | "
                  f"screening reward | fine-tuned reward | seconds |\n|---:|---:|---|---:|---:|---:|---:|\n")
        count = report.finalists["settings"].get("count", len(report.finalists["finalists"]))
        for i, f in enumerate(report.finalists["finalists"], 1):
            reward = ("failed" if "failed" in f else "—" if f.get("reward") is None else f"{f['reward']:.4f}")
            rank = "start" if i > count else f"{i} (start)" if f.get("start") else str(i)
            out.write(f"| {rank} | {f['trial']} | {' '.join(map(str, f['tokens']))} | {f.get('params', 0):,} | "
                      f"{f['screen_reward']:.4f} | {reward} | {f.get('seconds', '')} |\n")
    if report.failed:
        out.write("\n## Failed candidates\n\n| trial | tokens | reason |\n|---|---|---|\n")
        for c in report.failed:
            out.write(f"| {c.trial} | {' '.join(map(str, c.tokens))} | {c.reason} |\n")
    out.write("\n## Plots\n\n![reward per step](reward.png)\n\n![params vs reward](pareto.png)\n")
    out.write("\n## Configuration\n\n```json\n")
    import json

    out.write(json.dumps(report.config, indent=2, sort_keys=True))
    out.write("\n```\n")
    return out.getvalue()


def _plot_reward(report: SearchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    rows = report.chain
    ks = [r["k"] for r in rows]
    if rows:
        acc = [r for r in rows if r["accepted"] is not False]
        rej = [r for r in rows if r["accepted"] is False]
        ax.scatter([r["k"] for r in acc], [r["reward"] for r in acc], s=22, color="tab:blue",
                   label="accepted" if rows[0]["accepted"] is not None else "evaluated", zorder=3)
        if rej:
            ax.scatter([r["k"] for r in rej], [r["reward"] for r in rej], s=22, color="tab:gray", marker="x",
                       label="rejected", zorder=3)
        if rows[0]["current"] is not None:
            ax.step(ks, [r["current"] for r in rows], where="post", color="tab:blue", alpha=0.6,
                    label="chain (current)")
        ax.step(ks, [r["best"] for r in rows], where="post", color="tab:green", label="best so far")
        temps = [r["temperature"] for r in rows]
        if temps[0] is not None:
            ax2 = ax.twinx()
            ax2.plot(ks, temps, color="tab:red", linestyle="--", label="temperature")
            ax2.set_ylabel("temperature", color="tab:red")
            ax2.set_yscale("log")
    ax.set_xlabel("finished evaluation k")
    ax.set_ylabel("reward (held-out top-1)")
    ax.set_title("reward per step")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _plot_pareto(report: SearchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    done = report.complete
    ax.scatter([c.params for c in done], [c.reward for c in done], s=20, color="tab:gray", label="evaluated")
    front = report.pareto()
    if front:
        ax.step([c.params for c in front], [c.reward for c in front], where="post", color="tab:green",
                marker="o", label="Pareto front")
    if report.init is not None:
        ax.scatter([report.init.params], [report.init.reward], s=80, marker="*", color="tab:orange", zorder=4,
                   label="init tokens")
    if report.best is not None:
        ax.scatter([report.best.params], [report.best.reward], s=80, marker="D", facecolors="none",
                   edgecolors="tab:blue", zorder=4, label="best")
    if report.budget is not None:
        ax.axvline(report.budget, color="tab:red", linestyle="--", label=f"budget {report.budget:,}")
    ax.set_xlabel("parameters")
    ax.set_ylabel("reward (held-out top-1)")
    ax.set_title("parameters vs reward")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def write_report(report: SearchReport, out_dir: str | Path, top_k: int = 10) -> list[Path]:
    """Write ``report.md``, ``candidates.csv``, ``reward.png`` and ``pareto.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.md", _markdown(report, top_k))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial", "state", "accepted", "reward", "params", "macs", "seconds", "tokens", "reason"])
    for c in report.candidates:
        writer.writerow([c.trial, "stopped" if c.stopped else c.state, "" if c.accepted is None else c.accepted,
                         "" if c.reward is None else f"{c.reward:.6f}", c.params, c.macs,
                         "" if c.seconds is None else f"{c.seconds:.1f}", " ".join(map(str, c.tokens)), c.reason])
    atomic_write_text(out / "candidates.csv", buf.getvalue())
    _plot_reward(report, out / "reward.png")
    _plot_pareto(report, out / "pareto.png")
    return [out / n for n in ("report.md", "candidates.csv", "reward.png", "pareto.png")]


def status_lines(report: SearchReport) -> list[str]:
    """A running search in a few lines: progress, best so far, and an ETA from finished candidates' times."""
    done, failed, running = len(report.complete) + len(report.stopped), len(report.failed), len(report.running)
    stopped = f" ({len(report.stopped)} stopped early)" if report.stopped else ""
    lines = [f"finished {done}/{report.search_steps}{stopped}, running {running}, failed {failed}"]
    best = report.best
    if best is not None:
        lines.append(f"best so far: reward {best.reward:.4f}, {best.params:,} params "
                     f"({_pct(best.params, report.init_params)} vs init), trial {best.trial}, tokens {best.tokens}")
    times = sorted(c.seconds for c in report.complete if c.seconds)
    remaining = report.search_steps - done
    if remaining <= 0:
        lines.append("search complete")
        lines += _finalist_lines(report)
    elif times:
        median = times[len(times) // 2]
        eta = remaining * median / max(1, running)
        lines.append(f"ETA ~{_duration(eta)} ({remaining} evaluations left, median {median:.0f} s each, "
                     f"{max(1, running)} in parallel)")
    else:
        lines.append("ETA unknown until the first evaluation finishes")
    return lines


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
