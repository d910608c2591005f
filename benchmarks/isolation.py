"""What training each candidate in a child process costs the worker, per candidate.

    .venv/bin/python benchmarks/isolation.py                 # Fashion-MNIST in memory, 7 rounds
    .venv/bin/python benchmarks/isolation.py --dataset synthetic --runs 5

Rows: ``plain call`` (no isolation, the candidate trains in the worker), ``runner, forkserver`` (what ``sanas``
does: one :class:`~sanas.runs.isolate.IsolatedRunner` child per worker, kept between candidates), ``runner,
spawn``, and ``fresh child per call`` (:func:`~sanas.runs.isolate.run_isolated`, forkserver: what a child per
candidate would cost). ``start s`` is the first call (the child starts, imports torch); ``data call ms`` the median
of a call that reads every training image (the data goes as shared-memory tensors, never copied); ``candidate s``
the median wall time of ``evaluate_candidate`` of a 3-cell network for 2 epochs on 200 images, and ``vs plain``
its ratio to the plain call. Rows are measured round-robin (one call of each per round), so load drifts hit all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from sanas import get_space
from sanas.runs.isolate import ISOLATION_ENV, IsolatedRunner, run_isolated
from sanas.training import Recipe, TrainingData, evaluate_candidate, prepare_data


def touch(data: TrainingData) -> int:
    """Read every training image once (what a candidate needs before its first step)."""
    return int(data.dataset.train_images.sum(dtype=torch.int64) > 0) + len(data.train_indices)


def plain(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "synthetic"])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = {"train_size": 60000, "test_size": 10000, "channels": 1} if args.dataset == "synthetic" else {}
    data = prepare_data(args.dataset, **extra)
    tiny = prepare_data("synthetic", train_size=220, test_size=20, train_subset=200, val_subset=20)
    space = get_space("DartsSpace", layers=3, filter_num=[4, 8, 16], init_channels=4, auxiliary=False)
    recipe = Recipe(retain_epoch=2, batch_size=32, cutout=0, device="cpu")
    candidate = (evaluate_candidate, space.init_tokens(), space, tiny, recipe)

    os.environ[ISOLATION_ENV] = "forkserver"
    forkserver = IsolatedRunner()
    os.environ[ISOLATION_ENV] = "spawn"
    spawn = IsolatedRunner()
    os.environ[ISOLATION_ENV] = "forkserver"
    rows: dict[str, Callable[..., Any]] = {"plain call": plain, "runner, forkserver": forkserver.run,
                                           "runner, spawn": spawn.run, "fresh child per call": run_isolated}
    start, calls, candidates = {}, {k: [] for k in rows}, {k: [] for k in rows}
    for name, call in rows.items():
        t = time.perf_counter()
        call(touch, data)
        start[name] = time.perf_counter() - t
    for _ in range(args.runs):
        for name, call in rows.items():
            t = time.perf_counter()
            call(touch, data)
            calls[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            call(*candidate, progress="none")
            candidates[name].append(time.perf_counter() - t)
    forkserver.close()
    spawn.close()

    size = data.dataset.train_images.numel() + data.dataset.test_images.numel()
    print(f"{args.dataset}: {size / 2**20:.0f} MiB of uint8 images in memory; {args.threads} threads; medians of "
          f"{args.runs} round-robin rounds")
    print(f"{'':<22} {'start s':>8} {'data call ms':>13} {'candidate s':>12} {'vs plain':>9}")
    base = statistics.median(candidates["plain call"])
    for name in rows:
        c = statistics.median(candidates[name])
        print(f"{name:<22} {start[name]:>8.2f} {1000 * statistics.median(calls[name]):>13.1f} {c:>12.2f} "
              f"{c / base:>8.2f}x")


if __name__ == "__main__":
    main()
