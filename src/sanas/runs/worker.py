"""One search worker: take candidates from the study, train each, report its reward — until the study is done.

This is the loop of PaddleSlim's tutorial, with the data, training and bookkeeping filled in::

    sa = SANAS(...)
    while (tokens := sa.next_tokens()) is not None:
        result = evaluate_candidate(tokens, space, data, recipe)
        sa.reward(result.reward) if result.ok else sa.fail(result.reason)

Every process of a search (``sanas search``, ``sanas search --workers N``, ``sanas worker`` on other machines)
runs :func:`run_worker`. Nothing is written (run directory, study) before the settings, the data, the storage
URL and the server address have all been checked, so a typo never leaves a half-made run directory behind.
Each candidate trains in a child process (:class:`sanas.runs.isolate.IsolatedRunner`, one per worker, kept up
between candidates): a native crash of one candidate (segfault, abort) fails that candidate, with the signal as
its reason, and the worker goes on with a fresh child.
Ctrl-C (SIGINT) or SIGTERM during a candidate marks that candidate interrupted and returns; a crashed or
interrupted candidate is proposed once more (see :mod:`sanas.search.api`), so rerunning the same command
resumes the search where it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sanas.atomic import atomic_write_text, clean_stale_temporaries
from sanas.processes import refuse_in_bootstrap
from sanas.runs.config import RunConfig
from sanas.runs.console import USER_ERRORS, say, user_error_text
from sanas.runs.parent import cutout_note, ensure_parent, parent_provenance
from sanas.runs.study import open_search, preflight, resolve_config
from sanas.search.early_stop import stop_rule
from sanas.search.storage import DEFAULT_CONNECT_TIMEOUT

__all__ = ["CANDIDATES_DIR", "FAILURE_STREAK", "Interrupted", "SearchFailed", "WorkerSummary", "check_progress",
           "run_worker", "worker_main"]

CANDIDATES_DIR = "candidates"


#: A search stops when this many candidates in a row fail with the same reason before any has finished: the cause
#: is then systematic (a model module that does not import, a setting no candidate survives), not one candidate.
FAILURE_STREAK = 3


class Interrupted(Exception):
    """The worker was stopped by SIGINT/SIGTERM; its pending candidate was recorded as failed."""


class SearchFailed(ValueError):
    """The search cannot make progress: its first candidates failed alike, or it ended with none finished. The
    message quotes the error and says what to do; a user error, so the CLI prints one line and exits with 2."""


def check_progress(reasons: list[str], finished: int, where: str) -> None:
    """Raise :class:`SearchFailed` when the last :data:`FAILURE_STREAK` failures share one reason and no evaluation
    of the search has finished."""
    if finished == 0 and len(reasons) >= FAILURE_STREAK and len(set(reasons[-FAILURE_STREAK:])) == 1:
        raise SearchFailed(f"stopped: the first {len(reasons)} candidates all failed the same way and none finished "
                           f"({reasons[-1]}); fix that (its traceback, if any, is above) and rerun the same command "
                           f"to resume {where}")


@dataclass
class WorkerSummary:
    """What one worker did."""

    evaluated: int
    failed: int
    interrupted: bool
    info: dict[str, Any]


@contextmanager
def _interruptible() -> Iterator[dict[str, bool]]:
    """SIGINT/SIGTERM raise :class:`KeyboardInterrupt` while a candidate trains, and only set a flag otherwise,
    so a signal never lands in the middle of a storage write."""
    state = {"training": False, "stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Any) -> None:
        state["stop"] = True
        if state["training"]:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_worker(config: RunConfig | None = None, run_dir: str | os.PathLike[str] | None = None, *,
               storage: str | None = None, server_addr: Sequence[Any] | None = None, is_server: bool = True,
               study_name: str | None = None, worker_id: int = 0, device: str | None = None,
               threads: int | None = None, progress: str = "auto", max_candidates: int | None = None,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> WorkerSummary:
    """Work on a search until its study holds ``search_steps`` finished evaluations.

    ``config`` (new search) or ``run_dir`` (existing one) or ``storage``/``server_addr`` (join from anywhere)
    say which search. Each candidate's result is written to ``<run_dir>/candidates/trial-NNNNN.json``.
    ``max_candidates`` stops this worker after that many candidates (the search itself goes on).
    Raises :class:`Interrupted` after a SIGINT/SIGTERM, with the pending candidate recorded as interrupted (it is
    proposed again). Settings, data, storage URL and server address are checked before anything is written.
    """
    refuse_in_bootstrap("a search worker")
    from sanas.runs.isolate import CannotReceive, IsolatedRunner
    from sanas.training import evaluate_candidate, prepare_data

    run_path = Path(run_dir) if run_dir is not None else None
    config = resolve_config(run_path, config, save=False)
    preflight(storage, server_addr, is_server)
    if threads:
        import torch

        torch.set_num_threads(threads)
    data = None
    if config is not None:  # a new or resumed search: its data must load before its study is made
        data = prepare_data(**config.data_kwargs(), device=config.build_recipe(device=device).resolve_device())
    sa, config = open_search(config, run_path, storage=storage, server_addr=server_addr, is_server=is_server,
                             study_name=study_name, connect_timeout=connect_timeout)
    if run_path is not None:
        clean_stale_temporaries(run_path, run_path / CANDIDATES_DIR)
    space = sa.space
    recipe = config.build_recipe(device=device)
    evaluated = failed = 0
    reasons: list[str] = []  # this worker's failures since its last finished candidate
    where = str(run_path) if run_path is not None else "the search"
    interrupted = False
    runner = IsolatedRunner()
    try:
        if data is None:
            data = prepare_data(**config.data_kwargs(), device=recipe.resolve_device())
        parent = ensure_parent(config, run_path, data, progress)
        if (warning := parent_provenance(config, run_path, parent, data.split)) is not None:
            print(warning, file=sys.stderr, flush=True)
        if (note := cutout_note(parent, recipe.cutout)) is not None:  # type: ignore[arg-type]
            print(note, file=sys.stderr, flush=True)
        with _interruptible() as state:
            while not state["stop"] and (max_candidates is None or evaluated + failed < max_candidates):
                tokens = sa.next_tokens()
                if tokens is None:
                    break
                number = sa.trial_number
                say(progress, f"[worker {worker_id}] trial {number}: tokens {tokens} "
                               f"({space.count_params(tokens):,} params)")
                try:
                    state["training"] = True
                    if state["stop"]:
                        raise KeyboardInterrupt
                    # In a child process: a native crash fails this candidate, not the worker.
                    outcome = runner.run(evaluate_candidate, tokens, space, data, recipe, progress=progress,
                                         parent=parent, stop_rule=stop_rule(sa, recipe))
                except KeyboardInterrupt:
                    state["training"] = False
                    sa.fail("interrupted: the worker was stopped (SIGINT/SIGTERM) while training this candidate",
                            retry=True)
                    interrupted = True
                    break
                except CannotReceive as e:  # every candidate would fail alike: stop now, in one line
                    sa.fail(f"crashed: the candidate's process cannot receive it: {e}", retry=True)
                    raise SearchFailed(f"stopped: the candidate's process cannot receive it ({e}); every module the "
                                       f"search uses must be importable in a fresh process (run from its folder, or "
                                       f"set PYTHONPATH), then rerun the same command to resume {where}") from None
                except Exception as e:  # a bug or bad setting: record it on the trial, then stop loudly
                    sa.fail(f"crashed: {type(e).__name__}: {e}", retry=True)
                    raise
                finally:
                    state["training"] = False
                if not outcome.ok:
                    reason = f"crashed: the candidate's training process was {outcome.reason}"
                    say(progress, f"[worker {worker_id}] trial {number}: {reason}")
                    sa.fail(reason, retry=True)
                    failed += 1
                    reasons.append(reason)
                    check_progress(reasons, evaluated or sa.current_info()["finished"], where)
                    continue
                result = outcome.value
                record = {**result.to_dict(), "trial": number, "worker": worker_id, "pid": os.getpid(),
                          "finished_at": time.time()}
                if run_path is not None:
                    atomic_write_text(run_path / CANDIDATES_DIR / f"trial-{number:05d}.json",
                                      json.dumps(record, indent=1) + "\n")
                if result.ok:
                    accepted = sa.reward(result.reward, curve=result.curve or None, stopped=result.stopped)
                    evaluated += 1
                    reasons.clear()
                    verdict = ("stopped early: cannot reach the acceptance threshold "
                               f"{result.threshold:.4f}" if result.stopped else "accepted" if accepted else "rejected")
                    say(progress, f"[worker {worker_id}] trial {number}: reward {result.reward:.4f} "
                                   f"({verdict}, {result.seconds:.0f} s)")
                else:
                    sa.fail(result.reason)
                    failed += 1
                    reasons.append(result.reason)
                    check_progress(reasons, evaluated or sa.current_info()["finished"], where)
            interrupted = interrupted or state["stop"]
        info = sa.current_info()
    finally:
        runner.close()
        sa.close()
    if interrupted:
        raise Interrupted(f"worker {worker_id} stopped; rerun the same command to resume")
    if failed and not info.get("finished"):
        common = max(set(reasons), key=reasons.count) if reasons else "see the report"
        raise SearchFailed(f"the search ended with no finished evaluation: {failed} candidate(s) failed (most often: "
                           f"{common}); fix that and rerun the same command to resume {where}")
    return WorkerSummary(evaluated, failed, interrupted, info)


def worker_main(run_dir: str | os.PathLike[str] | None = None, *, storage: str | None = None,
                server_addr: Sequence[Any] | None = None, study_name: str | None = None, worker_id: int = 0,
                device: str | None = None, threads: int | None = None, progress: str = "lines",
                connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> int:
    """A worker process's whole life (``sanas worker``, and each of ``sanas search --workers N``): join the search,
    work until it is done, print one summary line; returns the exit status (130 when interrupted).

    A user error (:data:`USER_ERRORS`: bad setting, unreachable storage, missing data) is one line on stderr and
    status 2.
    """
    try:
        summary = run_worker(None, Path(run_dir) if run_dir is not None else None, storage=storage,
                             server_addr=server_addr, is_server=False, study_name=study_name, worker_id=worker_id,
                             device=device, threads=threads, progress=progress, connect_timeout=connect_timeout)
    except (Interrupted, KeyboardInterrupt):
        print(f"sanas worker {worker_id}: interrupted; the pending candidate is recorded as failed", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"sanas worker {worker_id}: error: {user_error_text(exc)}", file=sys.stderr)
        return 2
    print(f"worker {worker_id}: {summary.evaluated} evaluated, {summary.failed} failed; "
          f"best reward {summary.info.get('best_reward')}", flush=True)
    return 0


