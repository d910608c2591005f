"""What the compression benchmarks share: provenance, mean ± std, and a meter that charges every pass.

* :func:`provenance` — the commit, whether the tree was dirty (checked before anything is written), versions,
  threads, and the command, with paths relative to the repository.
* :func:`mean_std` — ``"m ± s"`` over seeds (sample std).
* :class:`PassMeter` — counts every image a model sees while it is active: training images (one optimizer-step
  pass each, forward and backward), and forward-only images (BatchNorm re-estimation, held-out and test
  evaluations, a distillation teacher's forwards), by patching sanas' trainer. A forward pass costs about a third
  of a training pass (one forward, two backward-sized passes), so ``epochs = (train + forward / 3) / N`` for a
  training set of ``N`` images: the cost of a method in epochs, evaluations included.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch

REPO = Path(__file__).resolve().parent.parent


def git(*args: str) -> str | None:
    try:
        # rstrip only: `status --porcelain` lines start with their status columns (" M path")
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(script: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Where a table came from. ``dirty`` lists the changed tracked files outside ``benchmarks/data`` (a table
    rewriting its own output does not make the code dirty)."""
    return {"script": script, "git_commit": git("rev-parse", "HEAD"),
            "dirty": dirty_files(git("status", "--porcelain", "--untracked-files=no") or ""),
            "command": " ".join(["python", *[relative(a) for a in sys.argv]]),
            "settings": {k: relative(v) if isinstance(v, str | Path) else v for k, v in settings.items()},
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "generated": time.strftime("%Y-%m-%d", time.gmtime())}


def dirty_files(porcelain: str) -> list[str]:
    """The changed paths of ``git status --porcelain`` (two status columns, a space, the path) outside
    ``benchmarks/data``."""
    paths = [line[3:] for line in porcelain.splitlines() if len(line) > 3]
    return [p for p in paths if not p.startswith("benchmarks/data/")]


def relative(value: str | Path) -> str:
    """A path inside the repository as a relative path (committed JSON never holds a machine's paths)."""
    text = str(value)
    with contextlib.suppress(ValueError):
        return str(Path(text).resolve().relative_to(REPO))
    return text


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"m ± s"`` of ``values`` times ``scale`` (the sample std; 0 for one value).

    >>> mean_std([0.5, 0.7], 100, 1)
    '60.0 ± 14.1'
    """
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


class PassMeter:
    """Counts the images sanas' trainer trains on and runs forward, while :meth:`active`.

    >>> meter = PassMeter()
    >>> meter.train, meter.forward = 1000, 3000
    >>> meter.epochs(1000)
    2.0
    """

    def __init__(self) -> None:
        self.train = 0
        self.forward = 0
        self.seconds = 0.0

    def epochs(self, train_size: int) -> float:
        return (self.train + self.forward / 3) / train_size

    def to_dict(self, train_size: int) -> dict[str, Any]:
        return {"train_images": self.train, "forward_images": self.forward, "epochs": round(self.epochs(train_size), 4),
                "seconds": round(self.seconds, 1)}

    @contextlib.contextmanager
    def active(self) -> Iterator[PassMeter]:
        from sanas.training import trainer as module

        cls = module.Trainer
        original = {name: getattr(cls, name) for name in ("evaluate", "reestimate_bn", "_next_batch")}
        meter = self

        def evaluate(self: Any, images: torch.Tensor, labels: torch.Tensor) -> Any:
            meter.forward += len(labels)
            return original["evaluate"](self, images, labels)

        def reestimate_bn(self: Any, batches: int) -> Any:
            meter.forward += batches * self.recipe.batch_size
            return original["reestimate_bn"](self, batches)

        def next_batch(self: Any) -> torch.Tensor:
            idx = original["_next_batch"](self)
            meter.train += len(idx)
            if getattr(self, "teacher", None) is not None:  # distillation: the parent's forward on the same batch
                meter.forward += len(idx)
            return idx

        patched: dict[str, Any] = {"evaluate": evaluate, "reestimate_bn": reestimate_bn, "_next_batch": next_batch}
        start = time.perf_counter()
        for name, fn in patched.items():
            setattr(cls, name, fn)
        try:
            yield self
        finally:
            for name, fn in original.items():
                setattr(cls, name, fn)
            self.seconds += time.perf_counter() - start


@contextlib.contextmanager
def in_this_process() -> Iterator[None]:
    """Train isolated candidates in this process while active (``SANAS_ISOLATION=none``), so that the meter, which
    counts the passes of this process, charges them; the variable is restored on exit. It changes where a
    candidate runs, not what it computes. Scoped, not set at import: importing the harness (the tests do) must not
    switch crash isolation off for everything else in the process."""
    from sanas.runs.isolate import ISOLATION_ENV

    with mock.patch.dict(os.environ, {ISOLATION_ENV: "none"}):  # restores the environment as it was
        yield


def sanas_search(label: str, space: Any, data: Any, recipe: Any, parent: Any, budget: int, seed: int,
                 candidates: int, work: Path) -> tuple[list[int], dict[str, Any]]:
    """sanas' search as a user runs it, with its defaults: ``candidates`` evaluations of SA (resumable: its journal
    in ``work``), then — inherited candidates — the default finalists. Returns the chosen tokens and a log."""
    from sanas import SANAS
    from sanas.runs.config import SEARCH_DEFAULTS
    from sanas.runs.finalists import chosen, run_finalists
    from sanas.runs.worker import stop_rule
    from sanas.training import evaluate_candidate

    sa = SANAS(space, search_steps=candidates, max_params=budget, seed=seed, save_checkpoint=work)
    log: list[dict[str, Any]] = []
    while (tokens := sa.next_tokens()) is not None:
        number = sa.trial_number
        rule = stop_rule(sa, recipe) if parent is not None else None
        result = evaluate_candidate(tokens, space, data, recipe, progress="none", parent=parent, stop_rule=rule)
        if not result.ok:
            sa.fail(result.reason)
            continue
        accepted = sa.reward(result.reward, curve=result.curve or None, stopped=result.stopped)
        log.append({"trial": number, "tokens": tokens, "params": result.params, "reward": result.reward,
                    "stopped": result.stopped, "accepted": accepted})
        print(f"  {label} trial {number}: {tokens} {result.params:,} params, reward {result.reward:.4f} "
              f"{'STOPPED' if result.stopped else 'accepted' if accepted else 'rejected'} ({result.seconds:.0f} s)",
              flush=True)
    best = sa.current_info()["best_tokens"]
    trials = sa.study.get_trials(deepcopy=False)
    sa.close()
    out: dict[str, Any] = {"candidates": len(log), "stopped": sum(r["stopped"] for r in log), "log": log}
    if parent is not None:
        with in_this_process():
            record = run_finalists(work, space, data, recipe, parent, trials, SEARCH_DEFAULTS["finalists"],
                                   SEARCH_DEFAULTS["finalist_epochs"], progress="none")
        out["finalists"] = record.get("finalists", [])
        pick = chosen(record)
        best = pick["tokens"] if pick is not None else best
    return best, out
