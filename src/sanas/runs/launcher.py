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

__all__ = ["LOGS_DIR", "launch_workers"]

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


def launch_workers(run_dir: Path, workers: int, *, storage: str | None = None, study_name: str | None = None,
                   device: str | None = None, poll: float = 5.0,
                   on_poll: Callable[[], None] | None = None) -> int:
    """Start ``workers`` worker processes (:func:`~sanas.runs.worker.worker_main`) on ``run_dir``'s search and
    wait for them.

    With GPUs, worker ``k`` sees only GPU ``k mod n_gpus``; on CPU the cores are split between workers.
    Each worker logs to ``<run_dir>/logs/worker-K.log``. SIGINT/SIGTERM are passed on to every worker (each
    records its pending candidate as interrupted). Returns the number of workers that did not exit cleanly
    (0 on success); ``on_poll`` is called every ``poll`` seconds while they run (progress output).
    """
    logs = run_dir / LOGS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    gpus = _gpu_count() if device in (None, "auto", "cuda") else 0
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs: list[subprocess.Popen[bytes]] = []
    files = []
    for k in range(workers):
        kwargs: dict[str, object] = {"run_dir": str(run_dir), "worker_id": k, "progress": "lines",
                                     "storage": storage, "study_name": study_name, "device": device}
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(k % gpus)
        else:
            kwargs["threads"] = threads
        env[_ARGS_VAR] = json.dumps(kwargs)
        cmd = [sys.executable, "-c", _ENTRY]
        log = open(logs / f"worker-{k}.log", "ab")  # noqa: SIM115 - closed below, after the process ends
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
        tail = (logs / f"worker-{k}.log").read_text(errors="replace").strip().splitlines()[-3:]
        print(f"worker {k} exited with status {procs[k].returncode}; last lines of {logs / f'worker-{k}.log'}:",
              *("  " + line for line in tail), sep="\n", file=sys.stderr)
    if stopping:
        raise KeyboardInterrupt
    return len(bad)
