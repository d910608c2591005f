"""``--workers N``: run N local worker processes on one search, and watch the study while they work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LOGS_DIR", "gpu_slots", "launch_workers"]

LOGS_DIR = "logs"
# Each worker process runs sanas.runs.worker.worker_main with its keyword arguments, as JSON in the environment
# (not argv: a storage URL may hold a password, and any user can read another's command line).
_ARGS_VAR = "SANAS_WORKER_ARGS"
_ENTRY = (f"import json, os, sys; from sanas.runs.worker import worker_main; "
          f"sys.exit(worker_main(**json.loads(os.environ.pop({_ARGS_VAR!r}))))")


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def gpu_slots(visible: str | None, count: int) -> list[str]:
    """The GPUs the workers are spread over, as ``CUDA_VISIBLE_DEVICES`` entries: the ones this process may use.

    ``visible`` is this process's ``CUDA_VISIBLE_DEVICES`` (``None`` when unset) and ``count`` the GPUs torch sees.
    Worker ``k`` gets entry ``k mod len(slots)``, so a job given GPUs 4-7 by its scheduler stays on them:

    >>> gpu_slots("4,5,6,7", 4), gpu_slots(None, 2), gpu_slots("GPU-3f2a,GPU-9c1b", 2), gpu_slots("", 0)
    (['4', '5', '6', '7'], ['0', '1'], ['GPU-3f2a', 'GPU-9c1b'], [])
    """
    if count <= 0:
        return []
    if visible is None or not visible.strip():
        return [str(i) for i in range(count)]
    # CUDA stops at the first invalid entry; torch's count says how many of the listed ones it found.
    return [entry.strip() for entry in visible.split(",") if entry.strip()][:count]


def launch_workers(run_dir: Path | None, workers: int, *, storage: str | None = None,
                   server_addr: list[Any] | None = None, study_name: str | None = None,
                   device: str | None = None, first_worker_id: int = 0, connect_timeout: float | None = None,
                   logs: Path | None = None, poll: float = 5.0, on_poll: Callable[[], None] | None = None) -> int:
    """Start ``workers`` worker processes (:func:`~sanas.runs.worker.worker_main`) on a search and wait for them.

    The search is ``run_dir``'s, or the one at ``storage`` / ``server_addr`` (``sanas worker --workers N``). With
    GPUs, each worker sees one GPU of those this process may use (:func:`gpu_slots`, round robin); on CPU the cores
    are split between workers. Worker ids are ``first_worker_id`` onwards; worker ``K`` logs to
    ``<logs>/worker-K.log`` (``logs`` defaults to ``<run_dir>/logs``). SIGINT/SIGTERM are passed on to every worker
    (each records its pending candidate as interrupted). Returns the number of workers that did not exit cleanly
    (0 on success); ``on_poll`` is called every ``poll`` seconds while they run (progress output).
    """
    if logs is None:
        if run_dir is None:
            raise ValueError("launch_workers needs run_dir or logs")
        logs = run_dir / LOGS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    slots = gpu_slots(os.environ.get("CUDA_VISIBLE_DEVICES"), _gpu_count()) if device in (None, "auto", "cuda") \
        else []
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs: list[subprocess.Popen[bytes]] = []
    files = []
    ids = [first_worker_id + k for k in range(workers)]
    for k, worker_id in enumerate(ids):
        kwargs: dict[str, object] = {"run_dir": str(run_dir) if run_dir is not None else None,
                                     "worker_id": worker_id, "progress": "lines", "storage": storage,
                                     "server_addr": server_addr, "study_name": study_name, "device": device}
        if connect_timeout is not None:
            kwargs["connect_timeout"] = connect_timeout
        env = dict(os.environ)
        if slots:
            env["CUDA_VISIBLE_DEVICES"] = slots[k % len(slots)]
        else:
            kwargs["threads"] = threads
        env[_ARGS_VAR] = json.dumps(kwargs)
        cmd = [sys.executable, "-c", _ENTRY]
        log = open(logs / f"worker-{worker_id}.log", "ab")  # noqa: SIM115 - closed below, after the process ends
        files.append(log)
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))

    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        last = 0.0
        while any(p.poll() is None for p in procs):
            if on_poll is not None and not stopping and time.monotonic() - last >= poll:
                last = time.monotonic()
                try:
                    on_poll()
                except Exception as e:  # progress output must never stop the search
                    print(f"(status unavailable: {e})", file=sys.stderr)
            time.sleep(0.2)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for f in files:
            f.close()
    bad = [k for k, p in enumerate(procs) if p.returncode != 0]
    for k in bad:
        log_path = logs / f"worker-{ids[k]}.log"
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"worker {ids[k]} exited with status {procs[k].returncode}; last lines of {log_path}:",
              *("  " + line for line in tail), sep="\n", file=sys.stderr)
    if stopping:
        raise KeyboardInterrupt
    return len(bad)
