"""Run one call in a child process, so that a native crash of a candidate (segfault, abort, heap corruption in a
kernel library) becomes a failed candidate with a reason instead of the death of the worker that ran it.

:func:`run_isolated` calls ``fn(*args, **kwargs)`` in a fresh process and returns an :class:`Isolated`: the
return value, or — when the process died without answering — the signal or exit status it died with. A Python
exception raised by ``fn`` is raised again in the caller, unchanged (so ``ValueError`` stays ``ValueError``).

How the child is started (``$SANAS_ISOLATION``):

* ``forkserver`` (default where available): a small server process imports torch and ``fn``'s module once;
  every call forks a fresh child from it. No thread, lock or CUDA context of the caller is ever forked, so it
  is as safe as ``spawn`` (the start methods CUDA supports), and a call costs a fork instead of an interpreter
  start and a ``torch`` import (see ``benchmarks/isolation.py``).
* ``spawn``: a new interpreter per call (the fallback where ``forkserver`` is missing).
* ``none``: no child; ``fn`` runs in the caller (debugging; a native crash then kills the caller).

Tensors among the arguments are not copied: ``torch.multiprocessing`` passes CPU tensors through shared memory
(moved there once, on the first call) and CUDA tensors through CUDA IPC handles, so the training data is loaded
once per worker, not once per candidate. The child exits with its caller (a watch pipe), ignores SIGINT (the
caller decides what an interrupt means, and kills the child), and runs with the caller's torch thread count.

>>> run_isolated(abs, -3).value   # fn must be importable by the child (a module-level function)
3
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ISOLATION_ENV", "Isolated", "run_isolated"]

#: Environment variable choosing the start method: ``forkserver``, ``spawn`` or ``none``.
ISOLATION_ENV = "SANAS_ISOLATION"
_METHODS = ("forkserver", "spawn", "none")
_PARENT_GONE = 70  # the child's exit status when its caller died while it ran


@dataclass
class Isolated:
    """The outcome of :func:`run_isolated`: ``value`` when ``ok``; else ``reason`` says how the process died."""

    value: Any = None
    reason: str | None = None
    exitcode: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def signal(self) -> int | None:
        """The signal that killed the child (11 for SIGSEGV, 6 for SIGABRT), if one did."""
        return -self.exitcode if self.exitcode is not None and self.exitcode < 0 else None


def start_method() -> str:
    """The start method in use: ``$SANAS_ISOLATION``, else ``forkserver`` where the platform has it, else ``spawn``."""
    chosen = os.environ.get(ISOLATION_ENV, "").strip().lower()
    if chosen:
        if chosen not in _METHODS:
            raise ValueError(f"{ISOLATION_ENV} is {chosen!r}, expected one of {', '.join(_METHODS)}")
        return chosen
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _describe(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name} (exit status {128 - exitcode})"
    return f"exited with status {exitcode} without a result"


def _exit_with_caller(alive: Any) -> None:
    """Child side: end this process when the caller's end of the ``alive`` pipe closes (the caller died)."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv()
    os._exit(_PARENT_GONE)


def _child(result: Any, alive: Any, threads: int | None, fn: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C and kills this process
    threading.Thread(target=_exit_with_caller, args=(alive,), daemon=True, name="sanas-watch-caller").start()
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        value = fn(*args, **kwargs)
    except BaseException as e:
        text = traceback.format_exc()
        try:
            result.send(("raise", e, text))
        except Exception:  # an exception that cannot be pickled: its type and message still arrive
            result.send(("raise", RuntimeError(f"{type(e).__name__}: {e}"), text))
    else:
        result.send(("ok", value, None))
    result.close()


def _context(method: str, fn: Callable[..., Any]) -> Any:
    import torch.multiprocessing  # registers the pickling of tensors through shared memory / CUDA IPC

    ctx = torch.multiprocessing.get_context(method)
    if method == "forkserver":
        # Imported once by the server; every child forks with torch and fn's module already loaded.
        module = getattr(fn, "__module__", None)
        ctx.set_forkserver_preload(["torch"] + ([module] if module and module != "__main__" else []))
    return ctx


def run_isolated(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Isolated:
    """Call ``fn(*args, **kwargs)`` in a child process (see the module docstring) and return its outcome.

    Returns ``Isolated(value)`` when ``fn`` returned, ``Isolated(reason=..., exitcode=...)`` when the child died
    without answering (e.g. ``"killed by SIGSEGV (exit status 139)"``); re-raises an exception ``fn`` raised,
    with the child's traceback as a note. ``KeyboardInterrupt`` in the caller kills the child and propagates.
    ``fn`` and the arguments must be picklable (``fn`` importable by name).
    """
    method = start_method()
    if method == "none":
        return Isolated(fn(*args, **kwargs))
    ctx = _context(method, fn)
    receive, send = ctx.Pipe(duplex=False)
    alive_r, alive_w = ctx.Pipe(duplex=False)
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    name = f"sanas-isolated-{getattr(fn, '__name__', 'call')}"
    proc = ctx.Process(target=_child, args=(send, alive_r, threads, fn, args, kwargs), name=name, daemon=True)
    message = None
    try:
        proc.start()
        send.close()  # only the child writes results: EOF on `receive` then means it died
        alive_r.close()
        while message is None:
            ready = multiprocessing.connection.wait([receive, proc.sentinel])
            if receive in ready or receive.poll():
                try:
                    message = receive.recv()
                except EOFError:  # died before (or while) answering
                    break
            elif proc.sentinel in ready:
                break
        proc.join(timeout=30)  # it has answered; a child stuck in its own teardown is not our business
        if proc.is_alive():
            proc.kill()
            proc.join()
    except BaseException:
        if proc.is_alive():
            proc.kill()
        proc.join()
        raise
    finally:
        alive_w.close()
        receive.close()
    if message is None:
        return Isolated(reason=_describe(proc.exitcode), exitcode=proc.exitcode)
    kind, value, text = message
    if kind == "raise":
        if text and hasattr(value, "add_note"):
            value.add_note(f"(raised in the isolated process {proc.pid}:)\n{text.rstrip()}")
        raise value
    return Isolated(value, exitcode=proc.exitcode)
