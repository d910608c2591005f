"""What the compression benchmarks share, so that each reads as its protocol alone.

* :func:`setup`, :func:`fashion_mnist`, :func:`seeds` — a benchmark process: torch's threads, optuna's log, the
  data, the seeds.
* :func:`train_parent` — the network a user arrives with, trained from scratch (resumable), and what a record keeps
  of it.
* :class:`Record`, :func:`done`, :func:`finished` — one run's record (``seed-N.json``), committed as it grows so that
  a run spans sessions: a method runs only where the record has no result for it, and from empty work folders
  (:func:`start_fresh`); :func:`in_processes` runs seeds (or shards) as parallel processes.
* :func:`provenance` — the commit, whether the tree was dirty (checked before anything is written), versions,
  threads, and the command, with paths relative to the repository; :func:`publish` writes a table and its record.
* :func:`mean_std`, :func:`std`, :func:`paired`, :func:`beats`, :func:`within_one_std`, :func:`method_row` — the
  tables: mean ± std over seeds (sample std), paired differences and the verdicts read from them.
* :class:`PassMeter` — counts every image a model sees while it is active: training images (one optimizer-step
  pass each, forward and backward), and forward-only images (BatchNorm re-estimation, held-out and test
  evaluations, a distillation teacher's forwards), by patching sanas' trainer. A forward pass costs about a third
  of a training pass (one forward, two backward-sized passes), so ``epochs = (train + forward / 3) / N`` for a
  training set of ``N`` images: the cost of a method in epochs, evaluations included.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import torch

from sanas.atomic import atomic_write_text

if TYPE_CHECKING:
    from sanas.spaces import SearchSpace
    from sanas.training import Recipe
    from sanas.training.data import TrainingData
    from sanas.training.trainer import Progress

REPO = Path(__file__).resolve().parent.parent


# --- a benchmark process ------------------------------------------------------------------------------------------
def setup(threads: int) -> None:
    """torch on ``threads`` threads, and optuna's line per trial off (its warnings stay)."""
    import optuna

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def fashion_mnist(train_subset: int, val_subset: int) -> TrainingData:
    """Fashion-MNIST: a class-balanced training subset, ``val_subset`` images held out of it (split seed 0)."""
    from sanas.training import prepare_data

    return prepare_data("fashion-mnist", train_subset=train_subset, val_subset=val_subset, seed=0)


def seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as numbers."""
    return [int(s) for s in text.split(",")]


def floats(text: str, flag: str, ok: Callable[[float], bool], expected: str) -> list[float]:
    """``--flag 0.7,0.5`` as numbers that each pass ``ok``; a ``ValueError`` naming the flag, the value and what
    was ``expected`` otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(ok(v) for v in values):
        raise ValueError(f"{flag} is {text!r}, expected comma-separated numbers {expected}")
    return values


def in_processes(script: str, argvs: Iterable[Sequence[str]]) -> bool:
    """Run ``python script *argv`` for every ``argv`` as parallel processes; whether all of them succeeded (waited on
    in turn: the first failure answers)."""
    procs = [subprocess.Popen([sys.executable, script, *argv]) for argv in argvs]
    return not any(proc.wait() for proc in procs)


# --- records ------------------------------------------------------------------------------------------------------
class Record(dict[str, Any]):
    """One run's record (``seed-N.json``): what its file holds, or ``{"seed": seed}``. It is committed as it grows,
    so that a run spans sessions: a method runs where the record has no result for it (:func:`done`), and
    :meth:`save` writes the file atomically after each."""

    def __init__(self, path: Path, seed: int) -> None:
        super().__init__(json.loads(path.read_text()) if path.exists() else {"seed": seed})
        self.path = path

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self, indent=1) + "\n")


def done(record: dict[str, Any], key: str) -> bool:
    """Whether ``record`` holds ``key``'s result: a test top-1 (a method's entry may hold its search before)."""
    return "test_top1" in record.get(key, {})


def finished(folder: Path, keys: Iterable[str]) -> list[dict[str, Any]]:
    """The records ``seed-*.json`` in ``folder`` (in name order) that hold the result of every key."""
    wanted = list(keys)
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("seed-*.json"))]
    return [r for r in records if all(done(r, k) for k in wanted)]


#: The channel criterion of sanas' records written before they named theirs: the product's default of then.
EARLIER_DEFAULT_IMPORTANCE = "bn"


def criterion(records: Iterable[dict[str, Any]], method: str) -> str:
    """The channel criterion (``importance``) ``method`` ran with in ``records``; "mixed" where they differ."""
    found = {r[method].get("importance", EARLIER_DEFAULT_IMPORTANCE) for r in records}
    return found.pop() if len(found) == 1 else "mixed"


def start_fresh(*folders: Path) -> None:
    """Refuse to run a method whose work folders hold a part-run left by an earlier process: the meter charges
    only the passes of the process it runs in, so resuming that run (a search's journal, a final training's
    checkpoint) would leave the earlier passes uncharged. Raises ``SystemExit`` naming the folders to delete."""
    left = [f for f in folders if f.is_dir() and any(f.iterdir())]
    if left:
        them = "it" if len(left) == 1 else "them"
        raise SystemExit(f"{', '.join(relative(f) for f in left)}: left by an earlier run of this method that did "
                         f"not finish, whose passes this process cannot charge; delete {them} to run the method "
                         f"again from its start")


def train_parent(space: SearchSpace, data: TrainingData, recipe: Recipe, out: Path, *, progress: Progress = "none",
                 on_epoch: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The network a user arrives with: ``space``'s initial tokens trained from scratch by ``recipe``, checkpointed
    in ``out`` every epoch (resumable; ``load_model(out)`` or its ``model.safetensors`` is the network). Returns
    what a record keeps of it: tokens, params, MACs, epochs, lr, batch size, the held-out top-1 per epoch
    (``val_curve``), the test top-1, and the seconds it took here."""
    from sanas.training import train_final

    tokens = space.init_tokens()
    t0 = time.perf_counter()
    result = train_final(tokens, space, data, recipe, out, resume=True, progress=progress, onnx=False,
                         on_epoch=on_epoch)
    return {"tokens": tokens, "params": result.params, "macs": space.count_macs(tokens),
            "epochs": recipe.retain_epoch, "lr": recipe.learning_rate, "batch_size": recipe.batch_size,
            "val_curve": [m.val_top1 for m in result.metrics], "test_top1": result.test_top1,
            "seconds": round(time.perf_counter() - t0, 1)}


# --- provenance and tables ---------------------------------------------------------------------------------------
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


def publish(md: Path, text: str, record: dict[str, Any], indent: int = 1) -> None:
    """Print a table, and write it to ``md`` and its record to the ``.json`` beside it, each atomically."""
    print(text)
    atomic_write_text(md, text + "\n")
    atomic_write_text(md.with_suffix(".json"), json.dumps(record, indent=indent) + "\n")


def relative(value: str | Path) -> str:
    """A path inside the repository as a relative path (committed JSON never holds a machine's paths)."""
    text = str(value)
    with contextlib.suppress(ValueError):
        return str(Path(text).resolve().relative_to(REPO))
    return text


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2, signed: bool = False) -> str:
    """``"m ± s"`` of ``values`` times ``scale`` (the sample std); one value has no std and reads ``"m (one seed)"``.
    ``signed``: the mean of differences, written with its sign either way.

    >>> mean_std([0.5, 0.7], 100, 1)
    '60.0 ± 14.1'
    >>> mean_std([0.9055], 100)
    '90.55 (one seed)'
    >>> mean_std([0.002, 0.004], 100, signed=True), mean_std([-0.002], 100, signed=True)
    ('+0.30 ± 0.14', '-0.20 (one seed)')
    """
    m = statistics.mean(values) * scale
    mean = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    if len(values) < 2:
        return f"{mean} (one seed)"
    return f"{mean} ± {std(values) * scale:.{digits}f}"


def std(values: Sequence[float]) -> float:
    """The sample std; 0 for one value."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def paired(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """``ours − base`` seed by seed."""
    return [b - a for a, b in zip(base, ours, strict=True)]


def beats(ours: Sequence[float], base: Sequence[float]) -> tuple[list[float], float, bool]:
    """Paired differences per seed, the largest std (of either method's results and of the differences), and
    whether the mean difference is above it: "better by more than one std", whichever std one reads. One seed
    has no std: never a win."""
    diff = paired(ours, base)
    if len(diff) < 2:
        return diff, float("inf"), False
    sd = max(statistics.stdev(v) for v in (ours, base, diff))
    return diff, sd, statistics.mean(diff) > sd


def within_one_std(ours: Sequence[float], base: Sequence[float]) -> tuple[list[float], float, bool]:
    """Paired differences per seed, ``ours``' std, and whether the mean difference is at least minus that std:
    "no worse than ``base`` by more than one std"."""
    diff, sd = paired(ours, base), std(ours)
    return diff, sd, statistics.mean(diff) >= -sd


def beats_text(ours: Sequence[float], base: Sequence[float]) -> str:
    """A table cell: the paired difference ``ours − base`` in points, marked "(beats)" or "(loses)" where it is
    beyond the largest std (:func:`beats`) either way."""
    diff, _, win = beats(ours, base)
    lose = beats(base, ours)[2]
    return f"{mean_std(diff, 100, signed=True)}{' (beats)' if win else ' (loses)' if lose else ''}"


def within_text(ours: Sequence[float], base: Sequence[float]) -> str:
    """A table cell: the paired difference ``ours − base`` in points, marked where it is NOT within ``ours``' std
    (:func:`within_one_std`)."""
    diff, _, within = within_one_std(ours, base)
    return f"{mean_std(diff, 100, signed=True)}{'' if within else ' (NOT within one std)'}"


def method_row(label: str, results: Sequence[dict[str, Any]], epochs: Sequence[float], wall: str) -> str:
    """A method's table row over seeds: test top-1 (%) as mean ± std, the mean params and MACs, its total epochs as
    mean ± std, and the wall-clock column as given."""
    return (f"| {label} | {mean_std([r['test_top1'] for r in results], 100)} | "
            f"{statistics.mean(r['params'] for r in results):,.0f} | "
            f"{statistics.mean(r['macs'] for r in results):,.0f} | {mean_std(epochs, digits=1)} | {wall} |")


# --- costs and searches ------------------------------------------------------------------------------------------
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
                 candidates: int, work: Path, finalists: int | None = None,
                 epochs: tuple[PassMeter, float] | None = None) -> tuple[list[int], dict[str, Any]]:
    """sanas' search as a user runs it, with its defaults: ``candidates`` evaluations of SA (resumable: its journal
    in ``work``), then — inherited candidates — ``finalists`` (default: the product's). Returns the chosen tokens and
    a log.

    ``epochs = (meter, target)`` ends the SA early, before the candidate that would take ``meter`` (active around
    this call) past ``target`` epochs of the training set, judged by the mean cost of the candidates so far: a
    search given the same epochs as another, whatever its candidates cost (``candidates`` is then an upper bound).
    """
    from sanas import SANAS
    from sanas.runs.config import SEARCH_DEFAULTS
    from sanas.runs.finalists import chosen, run_finalists
    from sanas.search.early_stop import stop_rule
    from sanas.training import evaluate_candidate

    finalists = SEARCH_DEFAULTS["finalists"] if finalists is None else finalists
    train_size = len(data.train_indices)
    sa = SANAS(space, search_steps=candidates, max_params=budget, seed=seed, save_checkpoint=work)
    log: list[dict[str, Any]] = []
    while True:
        if epochs is not None and log:
            spent = epochs[0].epochs(train_size)
            if spent * (len(log) + 1) / len(log) > epochs[1]:
                break
        if (tokens := sa.next_tokens()) is None:
            break
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
    if parent is not None and finalists > 0:  # as the product: no finalists stage with none (the best screened)
        with in_this_process():
            record = run_finalists(work, space, data, recipe, parent, trials, finalists,
                                   SEARCH_DEFAULTS["finalist_epochs"], progress="none",
                                   start=SEARCH_DEFAULTS["finalist_start"])
        out["finalists"] = record.get("finalists", [])
        out["finalist_start"] = "start" in record["settings"]  # the search's start among them
        pick = chosen(record)
        best = pick["tokens"] if pick is not None else best
    return best, out
