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
from sanas.runs.config import CONFIG_FILE, SEARCH_DEFAULTS, RunConfig
from sanas.search.storage import DEFAULT_CONNECT_TIMEOUT
from sanas.training.data import DatasetError

__all__ = [
    "CANDIDATES_DIR",
    "PARENT_DIR",
    "RUN_CONFIG_KEY",
    "USER_ERRORS",
    "Interrupted",
    "WorkerSummary",
    "ensure_parent",
    "load_parent",
    "load_study",
    "open_search",
    "parent_provenance",
    "run_worker",
    "stop_rule",
    "user_error_text",
    "worker_main",
]

CANDIDATES_DIR = "candidates"
#: Where an inherit search without --parent trains its parent (the init tokens), inside the run directory.
PARENT_DIR = "parent"
#: Study user attribute holding the run config, so workers that only know the storage can join.
RUN_CONFIG_KEY = "sanas:run_config"


class Interrupted(Exception):
    """The worker was stopped by SIGINT/SIGTERM; its pending candidate was recorded as failed."""


@dataclass
class WorkerSummary:
    """What one worker did."""

    evaluated: int
    failed: int
    interrupted: bool
    info: dict[str, Any]


def resolve_config(run_dir: Path | None, config: RunConfig | None, save: bool = True) -> RunConfig | None:
    """The run directory's config, checked against ``config``; or ``config``, saved as the run's config
    (unless ``save=False``: then nothing is written)."""
    if run_dir is not None and (run_dir / CONFIG_FILE).exists():
        saved = RunConfig.load(run_dir)
        if config is not None:
            config.check_matches(saved, f"run directory {run_dir}")
        return saved
    if config is not None and run_dir is not None and save:
        config.save(run_dir)
    return config


def preflight(storage: str | None = None, server_addr: Sequence[Any] | None = None, is_server: bool = True) -> None:
    """Check where the study will live before anything is written: the storage URL's form, scheme, driver and
    SQLite folder (no connection), and that a server can bind its address."""
    from sanas.search.storage import check_serve_address, parse_storage_url

    if storage is not None:
        parse_storage_url(storage)
    if server_addr is not None and is_server:
        check_serve_address(server_addr)


def open_search(config: RunConfig | None, run_dir: Path | None, *, storage: str | None = None,
                server_addr: Sequence[Any] | None = None, is_server: bool = True, study_name: str | None = None,
                connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> tuple[Any, RunConfig]:
    """Open (or create) the search's study and return ``(SANAS, config)``.

    With only ``storage``/``server_addr`` (a worker on another machine), the config is read from the study.
    """
    from sanas.search import SANAS

    if config is None:
        config = load_study(run_dir, storage, server_addr, study_name, connect_timeout)[1]
        if run_dir is not None:
            config = resolve_config(run_dir, config, save=False)
    assert config is not None
    space = config.build_space()
    s = config.search
    sa = SANAS(space, server_addr=server_addr, is_server=is_server, storage=storage,
               save_checkpoint=run_dir if storage is None and not (server_addr and not is_server) else None,
               study_name=study_name or s["study_name"], search_steps=s["search_steps"],
               max_params=config.budget(space), max_macs=s["max_macs"], move=s["move"], fill=s["fill"],
               sampler=s["sampler"], init_temperature=s["init_temperature"],
               reduce_rate=s["reduce_rate"], seed=s["seed"], max_try_times=s["max_try_times"],
               heartbeat_interval=s["heartbeat_interval"], grace_period=s["grace_period"],
               connect_timeout=connect_timeout)
    attrs = sa.study.user_attrs
    if RUN_CONFIG_KEY in attrs:
        config.check_matches(RunConfig.from_dict(attrs[RUN_CONFIG_KEY]), f"study {sa.study_name!r}")
    else:
        sa.study.set_user_attr(RUN_CONFIG_KEY, config.identity())
    if run_dir is not None and not (run_dir / CONFIG_FILE).exists():
        config.save(run_dir)  # last: only a run directory whose study opened gets its config
    return sa, config


def load_study(run_dir: Path | None = None, storage: str | None = None, server_addr: Sequence[Any] | None = None,
               study_name: str | None = None,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> tuple[Any, RunConfig]:
    """An existing search's study and run config, read without joining it (status, reports, remote workers).

    The study is looked up in ``server_addr``, else ``storage``, else ``run_dir``'s own store; the config comes
    from ``run_dir`` when it has one, else from the study.
    """
    import optuna

    from sanas.search.storage import connect_server, existing_store, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = RunConfig.load(run_dir) if run_dir is not None and (run_dir / "config.json").exists() else None
    name = study_name or (config.search["study_name"] if config else SEARCH_DEFAULTS["study_name"])
    if server_addr is not None:
        store = connect_server(server_addr, connect_timeout)
    elif storage is not None:
        store = open_storage(storage, connect_timeout=connect_timeout)
    elif run_dir is not None:
        if not run_dir.is_dir():
            raise ValueError(f"run directory {run_dir} does not exist")
        if not existing_store(run_dir):
            raise ValueError(f"{run_dir} holds no study (no sanas.journal or sanas.db); if the search was started "
                             f"with --storage, pass the same --storage")
        store = open_storage(run_dir=run_dir)
    else:
        raise ValueError("give the search's run directory, a --storage URL or a --server-addr")
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise ValueError(f"no study {name!r} in that storage; start the search with sanas search first") from None
    if config is None:
        raw = study.user_attrs.get(RUN_CONFIG_KEY)
        # A server writes its run config just after it starts serving the new study: a worker that was waiting for
        # it can read the study in between.
        deadline = time.monotonic() + min(10.0, connect_timeout)
        while raw is None and server_addr is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            raw = optuna.load_study(study_name=name, storage=store).user_attrs.get(RUN_CONFIG_KEY)
        if raw is None:
            raise ValueError(f"study {name!r} has no sanas run config; was it created by sanas search?")
        config = RunConfig.from_dict(raw)
    return study, config


def _parent_path(config: RunConfig, run_dir: Path | None) -> Path | None:
    if config.search.get("parent"):
        return Path(config.search["parent"])
    if run_dir is not None and (run_dir / PARENT_DIR / "model.json").exists():
        return run_dir / PARENT_DIR
    return None


def load_parent(config: RunConfig, run_dir: Path | None = None) -> Any:
    """The trained parent of an inherit search, checked against the search's space (``None`` for a scratch
    search, or when the parent is still to be trained into the run directory). Without a parent folder, a space
    made from a trained model (ModelSpace) gives that model.

    Raises ``ValueError`` with one line naming the folder when it cannot be read, or naming both sides when it
    belongs to another space, genotype, class count or input channels.
    """
    if config.recipe.get("evaluation", "scratch") != "inherit":
        return None
    path = _parent_path(config, run_dir)
    if path is None:
        return config.build_space().trained_parent()  # a ModelSpace's own trained model; else still to train
    from sanas.training import load_model

    try:
        net = load_model(path)
    except FileNotFoundError as e:
        raise ValueError(f"parent {path}: {e}") from None
    except Exception as e:  # a corrupt file: safetensors, JSON or shapes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"parent {path} cannot be loaded ({type(e).__name__}: {first}); expected a folder "
                         f"written by sanas train") from None
    space = config.build_space()
    try:
        space.inherit(net, space.init_tokens())  # the same checks every candidate will meet, once, up front
    except (ValueError, NotImplementedError) as e:
        raise ValueError(f"parent {path}: {e}") from None
    return net


def ensure_parent(config: RunConfig, run_dir: Path | None, data: Any, progress: str = "auto") -> Any:
    """:func:`load_parent`, training the init tokens into ``<run_dir>/parent`` first when no parent is given.

    The parent is trained from scratch for ``search.parent_epochs`` epochs under the ``[recipe]`` table's
    training settings (resumable: an interrupted parent training continues on the next run)."""
    net = load_parent(config, run_dir)
    if net is not None or config.recipe.get("evaluation", "scratch") != "inherit":
        return net
    if run_dir is None:
        raise ValueError("an inherit search without a parent trains one into its run directory; give a parent "
                         "(search.parent, --parent) or a run directory")
    from sanas.training import Recipe, train_final

    space = config.build_space()
    keep = {k: v for k, v in config.build_recipe().to_dict().items()
            if k not in ("evaluation", "retain_epoch", "bn_batches", "finetune_lr", "importance", "early_stop",
                         "stop_checks", "distill", "distill_temperature")}
    recipe = Recipe(**keep, retain_epoch=int(config.search["parent_epochs"]))
    _say(progress, f"training the parent (init tokens {space.init_tokens()}, {recipe.retain_epoch} epochs from "
                   f"scratch) into {run_dir / PARENT_DIR}")
    train_final(space.init_tokens(), space, data, recipe, run_dir / PARENT_DIR, resume=True,
                progress=progress, onnx=False)  # type: ignore[arg-type]
    return load_parent(config, run_dir)


#: What decides which training images a split holds out: equal on both sides, the held-out sets are equal.
_HELD_OUT_KEYS = ("dataset", "seed", "val_fraction")


def _held_out_of(split: dict[str, Any]) -> tuple[Any, ...]:
    given = split.get("val_indices") or {}
    return (*(split.get(k) for k in _HELD_OUT_KEYS), given.get("sha256"))


def parent_provenance(config: RunConfig, run_dir: Path | None, parent: Any, split: dict[str, Any]) -> str | None:
    """A one-line warning when ``parent`` may have been trained on the images the search's rewards are computed
    on (``split``, the search's data split), else ``None``.

    Silent for a parent trained by sanas on a split that holds out the same images (its ``model.json`` records
    the split: dataset, seed, fraction or index file), for a scratch search and for a reward on the test set.
    """
    if parent is None or config.recipe.get("evaluation", "scratch") != "inherit" or split.get("reward_on_test"):
        return None
    path = _parent_path(config, run_dir)
    known = None
    if path is not None:
        try:
            known = json.loads((path / "model.json").read_text()).get("split")
        except (OSError, ValueError, AttributeError):
            known = None
    advice = ("its children's rewards are then optimistic and ranked on images it memorised; give --val-indices "
              "FILE (the training-set positions it never saw), or train the parent with sanas train on the same "
              "[data] settings")
    if not isinstance(known, dict):
        what = "a model given with the space" if path is None else f"{path} records no data split"
        return (f"sanas: warning: the parent's training data is unknown ({what}): if it was trained on the "
                f"held-out images the rewards are computed on ({split.get('val_size')} of the training set), "
                f"{advice}")
    if known.get("reward_on_test") or _held_out_of(known) != _held_out_of(split):
        def show(s: dict[str, Any]) -> str:
            given = s.get("val_indices") or {}
            held = (f"index file {given.get('file')!r}" if given else f"val_fraction {s.get('val_fraction')}"
                    if not s.get("reward_on_test") else "nothing (reward on test)")
            return f"{s.get('dataset')}, seed {s.get('seed')}, held out {held}"

        return (f"sanas: warning: the parent {path} was trained on another split ({show(known)}) than this "
                f"search's ({show(split)}): some held-out images the rewards are computed on may be in its "
                f"training set; {advice}")
    return None


def stop_rule(sa: Any, recipe: Any) -> Any:
    """The early-stop rule for ``sa``'s pending candidate, or ``None`` (off, no threshold, too few curves)."""
    if recipe.evaluation != "inherit" or not recipe.early_stop:
        return None
    threshold = sa.acceptance_threshold()
    if threshold is None:
        return None
    from sanas.search.early_stop import finished_curves, learned_margins
    from sanas.training.trainer import StopRule

    margins = learned_margins(finished_curves(sa.study.get_trials(deepcopy=False)))
    return None if margins is None else StopRule(threshold, margins)


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
    from sanas.runs.isolate import IsolatedRunner
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
    interrupted = False
    runner = IsolatedRunner()
    try:
        if data is None:
            data = prepare_data(**config.data_kwargs(), device=recipe.resolve_device())
        parent = ensure_parent(config, run_path, data, progress)
        if (warning := parent_provenance(config, run_path, parent, data.split)) is not None:
            print(warning, file=sys.stderr, flush=True)
        with _interruptible() as state:
            while not state["stop"] and (max_candidates is None or evaluated + failed < max_candidates):
                tokens = sa.next_tokens()
                if tokens is None:
                    break
                number = sa.trial_number
                _say(progress, f"[worker {worker_id}] trial {number}: tokens {tokens} "
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
                except Exception as e:  # a bug or bad setting: record it on the trial, then stop loudly
                    sa.fail(f"crashed: {type(e).__name__}: {e}", retry=True)
                    raise
                finally:
                    state["training"] = False
                if not outcome.ok:
                    reason = f"crashed: the candidate's training process was {outcome.reason}"
                    _say(progress, f"[worker {worker_id}] trial {number}: {reason}")
                    sa.fail(reason, retry=True)
                    failed += 1
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
                    verdict = ("stopped early: cannot reach the acceptance threshold "
                               f"{result.threshold:.4f}" if result.stopped else "accepted" if accepted else "rejected")
                    _say(progress, f"[worker {worker_id}] trial {number}: reward {result.reward:.4f} "
                                   f"({verdict}, {result.seconds:.0f} s)")
                else:
                    sa.fail(result.reason)
                    failed += 1
            interrupted = interrupted or state["stop"]
        info = sa.current_info()
    finally:
        runner.close()
        sa.close()
    if interrupted:
        raise Interrupted(f"worker {worker_id} stopped; rerun the same command to resume")
    return WorkerSummary(evaluated, failed, interrupted, info)


#: Errors that are the user's to fix (a bad setting, a missing file or dataset, a storage that does not answer):
#: the CLI and worker processes print them as one line and exit with status 2, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                                ConnectionError, DatasetError)


def user_error_text(exc: BaseException) -> str:
    """The one line to print for a :data:`USER_ERRORS` error (a ``KeyError``'s message without its quotes)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


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


def _say(progress: str, line: str) -> None:
    if progress != "none":
        print(line, file=sys.stderr, flush=True)
