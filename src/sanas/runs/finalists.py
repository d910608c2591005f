"""Finalists: many cheap candidates screened by the search, fine-tuning spent only on the few best.

An inherited candidate scored right after BatchNorm re-estimation costs forward passes only, and ranks nearly as
well as one fine-tuned for a quarter epoch (``benchmarks/rank_fidelity.py``). So the search screens many
candidates at that cost, and once its study is done the ``finalists`` best of them (distinct tokens, highest
screening reward first) are each inherited again and fine-tuned for ``finalist_epochs`` epochs; the one with the
highest reward after that is the search's choice, the candidate ``sanas train`` fine-tunes by default. It is
multi-fidelity in its simplest form (screen, then re-score the top-k), a deterministic function of the study.

The finalists run in the process of ``sanas search`` after every worker is done, one after another (a
handful of short fine-tunes), each in a child process like every candidate. Their results go to
``RUN/finalists.json``, written atomically after each one, so an interrupted stage resumes with the finalists it
had finished. The inherit evaluation only: a scratch search's candidates are already trained in full.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from sanas.atomic import atomic_write_text
from sanas.runs.config import DEFAULT_FINALIST_EPOCHS, DEFAULT_FINALIST_START, DEFAULT_FINALISTS, check_finalists
from sanas.runs.parent import load_parent
from sanas.runs.study import load_study
from sanas.search.chain import evaluations

__all__ = ["FINALISTS_FILE", "add_start", "chosen", "describe", "finalists_stage", "pick_finalists", "read_finalists",
           "recipe_of_finalists", "run_finalists"]

FINALISTS_FILE = "finalists.json"


def pick_finalists(trials: Sequence[FrozenTrial], count: int,
                   start: bool = DEFAULT_FINALIST_START) -> list[dict[str, Any]]:
    """The ``count`` best finished evaluations of a study: highest reward first (ties: the earlier trial), each
    token vector once, stopped evaluations left out (their reward is partial). With ``start`` (and ``count`` > 0),
    the chain's start — its first evaluation (the lowest trial number, stopped or not: a finalist is fine-tuned
    anew), the init tokens repaired into the budget band — is a finalist too, marked ``"start": True``: appended
    after them where its screening reward did not place it among them.

    >>> pick_finalists([], 4)
    []
    """
    every = evaluations(trials)
    order = sorted((e for e in every if not e.stopped), key=lambda e: (-e.reward, e.number))
    out: list[dict[str, Any]] = []
    for e in order:
        if len(out) == count:
            break
        if all(f["tokens"] != list(e.tokens) for f in out):
            out.append({"trial": e.number, "tokens": list(e.tokens), "screen_reward": e.reward})
    if start and out:
        first = min(every, key=lambda e: e.number)
        add_start(out, {"trial": first.number, "tokens": list(first.tokens), "screen_reward": first.reward})
    return out


def add_start(finalists: list[dict[str, Any]], start: dict[str, Any]) -> dict[str, Any] | None:
    """Make the search's ``start`` (``trial``, ``tokens``, ``screen_reward``) one of ``finalists``, in place: the
    finalist with its tokens marked ``"start": True``, or ``start`` so marked and appended. Returns the appended
    entry, ``None`` where the start was among them already.

    >>> best = [{"trial": 4, "tokens": [1], "screen_reward": 0.9}]
    >>> add_start(best, {"trial": 0, "tokens": [1], "screen_reward": 0.7}), best[0]["start"]
    (None, True)
    """
    for f in finalists:
        if f["tokens"] == start["tokens"]:
            f["start"] = True
            return None
    entry = {**start, "start": True}
    finalists.append(entry)
    return entry


def read_finalists(run_dir: str | Path) -> dict[str, Any] | None:
    """What ``RUN/finalists.json`` holds, or ``None`` when the search had no finalists stage (yet)."""
    path = Path(run_dir) / FINALISTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupt ({e}); delete it and rerun sanas search to score the finalists "
                         f"again") from None


def chosen(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The finalist with the highest fine-tuned reward (ties: the better screening rank), once every finalist is
    done; ``None`` before that, without finalists, or when every finalist failed."""
    if not record or not record.get("finalists"):
        return None
    finalists = record["finalists"]
    if not all(f.get("done") for f in finalists):
        return None
    scored = [(i, f) for i, f in enumerate(finalists) if f.get("reward") is not None]
    return max(scored, key=lambda item: (item[1]["reward"], -item[0]))[1] if scored else None


def run_finalists(run_dir: str | Path, space: Any, data: Any, recipe: Any, parent: Any,
                  trials: Sequence[FrozenTrial], count: int = DEFAULT_FINALISTS,
                  epochs: float = DEFAULT_FINALIST_EPOCHS, progress: str = "auto",
                  start: bool = DEFAULT_FINALIST_START) -> dict[str, Any]:
    """Fine-tune the ``count`` best candidates of a finished search (and its start, with ``start``: see
    :func:`pick_finalists`) for ``epochs`` epochs each and record them in ``RUN/finalists.json``; returns that
    record. Finalists already scored there (for the same list and recipe) are not trained again."""
    from sanas.runs.isolate import IsolatedRunner
    from sanas.training import evaluate_candidate

    count, epochs = check_finalists(count, epochs)
    path = Path(run_dir) / FINALISTS_FILE
    if not isinstance(start, bool):
        raise ValueError(f"finalist_start is {start!r}, expected true or false")
    picked = pick_finalists(trials, count, start)
    finalist_recipe = recipe_of_finalists(recipe, epochs)
    # "start" only where it is on: a record finished before the setting existed keeps its settings, and its finalists
    settings = {"count": count, "epochs": epochs, "recipe": _identity(finalist_recipe), **({"start": True} if start
                                                                                           else {})}
    record = read_finalists(run_dir)
    if (record is None or record.get("settings") != settings
            or [f["tokens"] for f in record.get("finalists", [])] != [f["tokens"] for f in picked]):
        record = {"settings": settings, "finalists": picked}
    todo = [f for f in record["finalists"] if not f.get("done")]
    if todo and progress != "none":
        print(f"finalists: fine-tuning {describe(record['finalists'], count, len(evaluations(trials)))} for {epochs:g} "
              f"epoch(s) each ({len(todo)} to go)", file=sys.stderr, flush=True)
    with IsolatedRunner() as runner:
        for i, finalist in enumerate(record["finalists"]):
            if finalist.get("done"):
                continue
            start = time.perf_counter()
            outcome = runner.run(evaluate_candidate, finalist["tokens"], space, data, finalist_recipe,
                                 progress=progress, parent=parent)
            result = outcome.value if outcome.ok else None
            if result is None or not result.ok:
                reason = outcome.reason if result is None else result.reason
                finalist.update(reward=None, failed=str(reason))
            else:
                finalist.update(reward=result.reward, params=result.params, macs=result.macs, epochs=result.epochs,
                                bn_batches=result.bn_batches)
            finalist.update(done=True, seconds=round(time.perf_counter() - start, 1))
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
            if progress != "none":
                said = (f"failed ({finalist['failed']})" if "failed" in finalist
                        else f"reward {finalist['reward']:.4f} (screened {finalist['screen_reward']:.4f})")
                print(f"finalist {i + 1}/{len(record['finalists'])}: trial {finalist['trial']}, tokens "
                      f"{finalist['tokens']}: {said}, {finalist['seconds']:.0f} s", file=sys.stderr, flush=True)
    if not path.exists():  # nothing was left to train, or no finalist at all: the record still says so
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def recipe_of_finalists(recipe: Any, epochs: float) -> Any:
    """How a finalist is fine-tuned: the search's recipe for ``epochs`` epochs, never stopped early."""
    return dataclasses.replace(recipe, retain_epoch=epochs, early_stop=False)


def describe(finalists: Sequence[dict[str, Any]], count: int, screened: int | None = None) -> str:
    """What the finalists of a stage that asked for the ``count`` best are, in words.

    >>> describe([{"trial": 3}, {"trial": 0, "start": True}], 1, 30)
    "the 1 best of 30 screened candidates and the search's start"
    >>> describe([{"trial": 0, "start": True}, {"trial": 5}], 2)
    "the 2 best screened candidates (the search's start among them)"
    """
    whence = f"of {screened} " if screened is not None else ""
    best = min(count, len(finalists))
    if len(finalists) > best:  # the start came on top of them
        return f"the {best} best {whence}screened candidates and the search's start"
    among = " (the search's start among them)" if any(f.get("start") for f in finalists) else ""
    return f"the {best} best {whence}screened candidates{among}"


def _identity(recipe: Any) -> dict[str, Any]:
    # Where the finalists train does not change what they compute.
    return {k: v for k, v in recipe.to_dict().items() if k not in ("device", "compile")}


def finalists_stage(config: Any, run_dir: str | Path, *, storage: str | None = None, study_name: str | None = None,
                    device: str | None = None, progress: str = "auto") -> dict[str, Any] | None:
    """The finalists of a finished search (``sanas search`` runs this once its workers are done): ``None`` for a
    scratch search or ``finalists = 0``; else the record of :func:`run_finalists`."""
    from sanas.training import prepare_data

    count, epochs = check_finalists(config.search.get("finalists", 0), config.search.get("finalist_epochs",
                                                                                          DEFAULT_FINALIST_EPOCHS))
    start = config.search.get("finalist_start", False)
    if count == 0 or config.recipe.get("evaluation", "scratch") != "inherit":
        return None
    study, _ = load_study(Path(run_dir), storage, None, study_name)
    trials = study.get_trials(deepcopy=False)
    if len(evaluations(trials)) < int(config.search["search_steps"]):
        return None  # the search is not over (a worker stopped early): the finalists wait for it
    recipe = config.build_recipe(device=device)
    data = prepare_data(**config.data_kwargs(), device=recipe.resolve_device())
    parent = load_parent(config, Path(run_dir))
    if parent is None:
        raise ValueError(f"the finalists of {run_dir} need the search's parent, and it has none")
    return run_finalists(run_dir, config.build_space(), data, recipe, parent, trials, count, epochs, progress, start)
