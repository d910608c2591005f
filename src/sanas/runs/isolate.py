"""Run calls in a child process, so that a native crash of a candidate (segfault, abort, heap corruption in a
kernel library) becomes a failed candidate with a reason instead of the death of the worker that ran it.

:class:`IsolatedRunner` keeps one child process and runs calls in it one at a time; :meth:`IsolatedRunner.run`
returns an :class:`Isolated`: the call's return value, or — when the child died without answering — the signal
or exit status it died with. The next call then starts a fresh child. The child stays up between calls, so what
a process warms up once (oneDNN's JIT kernels and primitive caches, a CUDA context, imports) is paid once per
worker, not once per candidate. A Python exception raised by the call is raised again in the caller, unchanged
(``ValueError`` stays ``ValueError``), and the child goes on serving. :func:`run_isolated` is the one-call form
(a fresh child, ended afterwards).

How the child is started (``$SANAS_ISOLATION``):

* ``forkserver`` (default where available): a small server process imports torch and the called function's module
  once; children fork from it. No thread, lock or CUDA context of the caller is ever forked, so it is as safe as
  ``spawn`` (the start methods CUDA supports), and a child that replaces a crashed one starts in a fork's time.
* ``spawn``: a new interpreter per child (the fallback where ``forkserver`` is missing).
* ``none``: no child; calls run in the caller (debugging; a native crash then kills the caller).

Tensors among the arguments are not copied: ``torch.multiprocessing`` passes CPU tensors through shared memory
(moved there once, on the first call) and CUDA tensors through CUDA IPC handles, so the training data is loaded
once per worker, not once per candidate. The child exits with its caller (a watch pipe), ignores SIGINT (the
caller decides what an interrupt means, and kills the child), and runs each call with the caller's torch thread
count. As with any ``spawn``/``forkserver`` process, the function must be importable by name and a script that
uses this must guard its entry point with ``if __name__ == "__main__":``.

>>> with IsolatedRunner() as runner:
...     runner.run(abs, -3).value, runner.run(max, 2, 7).value
(3, 7)
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
from multiprocessing import resource_sharer
from typing import Any

from sanas.processes import MAIN_REIMPORTED, MainReimported, main_file, refuse_in_bootstrap

__all__ = ["ISOLATION_ENV", "CannotReceive", "Isolated", "IsolatedRunner", "run_isolated", "start_method"]

#: Environment variable choosing the start method: ``forkserver``, ``spawn`` or ``none``.
ISOLATION_ENV = "SANAS_ISOLATION"
_METHODS = ("forkserver", "spawn", "none")
_PARENT_GONE = 70  # the child's exit status when its caller died
#: One call's arguments are pickled at a time, so the shared-memory offers made by that pickling are its own.
_SENDING = threading.Lock()


class CannotReceive(RuntimeError):
    """The child could not unpickle a call (a class whose module it cannot import): every call would fail alike."""


@dataclass
class Isolated:
    """The outcome of an isolated call: ``value`` when ``ok``; else ``reason`` says how the child died."""

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


def _shared_keys() -> set[int]:
    """The file descriptors this process offers to others and that none has taken yet (multiprocessing's
    ``resource_sharer``: every CPU tensor in shared memory sent to a child is one, until the child unpickles it)."""
    cache = getattr(resource_sharer._resource_sharer, "_cache", None)
    return set(cache) if isinstance(cache, dict) else set()


def _release(keys: set[int]) -> None:
    """Close the offers of one call that its child never took: it died, or could not unpickle the call, before
    fetching them. Left alone they stay open for the life of the process: one descriptor per failed candidate."""
    sharer = resource_sharer._resource_sharer
    for key in keys:
        with sharer._lock:
            offer = sharer._cache.pop(key, None)
        if offer is not None:
            offer[1]()  # its close()


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


def _serve(calls: Any, alive: Any, path: list[str]) -> None:
    """Child side: run the calls that arrive on ``calls`` one at a time, answering each, until told to stop.

    ``path`` is the caller's ``sys.path``: the child imports what the caller can (a model's module found in the
    working directory, say), whichever folder the interpreter or the forkserver started in.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C and kills this process
    threading.Thread(target=_exit_with_caller, args=(alive,), daemon=True, name="sanas-watch-caller").start()
    sys.path[:] = path + [p for p in sys.path if p not in path]
    while True:
        try:
            message = calls.recv()
        except EOFError:
            return
        except Exception as e:  # the call's arguments cannot be rebuilt here (a class whose module is missing)
            calls.send(("raise", CannotReceive(f"{type(e).__name__}: {e}"), traceback.format_exc()))
            continue
        if message is None:
            return
        fn, args, kwargs, threads = message
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            answer = ("ok", fn(*args, **kwargs), None)
        except BaseException as e:
            answer = ("raise", e, traceback.format_exc())
        try:
            calls.send(answer)
        except Exception:  # a result or exception that cannot be pickled: its type and message still arrive
            error = answer[1] if answer[0] == "raise" else TypeError("the call's result cannot be pickled")
            calls.send(("raise", RuntimeError(f"{type(error).__name__}: {error}"), answer[2]))


class IsolatedRunner:
    """One child process that runs calls one at a time (see the module docstring); a crash ends only that child.

    Use it as a context manager, or call :meth:`close`, so the child ends with the work.
    """

    def __init__(self) -> None:
        self.method = start_method()
        self._proc: Any = None
        self._calls: Any = None
        self._alive: Any = None
        self._preload: str | None = None

    @property
    def pid(self) -> int | None:
        """The current child's process id (``None`` before the first call and after a crash)."""
        return None if self._proc is None else self._proc.pid

    def _start(self, fn: Callable[..., Any]) -> None:
        refuse_in_bootstrap("an isolated process")
        import torch.multiprocessing  # registers the pickling of tensors through shared memory / CUDA IPC

        ctx = torch.multiprocessing.get_context(self.method)
        if self.method == "forkserver":
            # Imported once by the server; a child forks with torch and fn's module already loaded.
            module = getattr(fn, "__module__", None)
            ctx.set_forkserver_preload(["torch"] + ([module] if module and module != "__main__" else []))
        mine, theirs = ctx.Pipe(duplex=True)
        alive_r, alive_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_serve, args=(theirs, alive_r, list(sys.path)), name="sanas-isolated", daemon=True)
        try:
            proc.start()
        finally:
            theirs.close()
            alive_r.close()
        self._proc, self._calls, self._alive = proc, mine, alive_w

    def _stop(self, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if not kill:
            with contextlib.suppress(OSError):
                self._calls.send(None)
            proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
        proc.join()
        proc.close()  # its sentinel now, not whenever a traceback that holds this frame is collected
        for conn in (self._calls, self._alive):
            conn.close()

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Isolated:
        """Call ``fn(*args, **kwargs)`` in the child; see :func:`run_isolated` for what comes back."""
        if self.method == "none":
            return Isolated(fn(*args, **kwargs))
        if self._proc is None:
            self._start(fn)
        proc = self._proc
        threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
        message = None
        shared: set[int] = set()
        try:
            with _SENDING:
                before = _shared_keys()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # died already: reported below
                    self._calls.send((fn, args, kwargs, threads))
                shared = _shared_keys() - before
            while message is None:
                ready = multiprocessing.connection.wait([self._calls, proc.sentinel])
                if self._calls in ready:
                    try:
                        message = self._calls.recv()
                    except (EOFError, OSError):  # died before (or while) answering
                        break
                elif not self._calls.poll():  # exited, and left no answer (nor EOF) to read
                    break
        except BaseException:  # Ctrl-C (or anything else) in the caller: the half-done call dies with its child
            self._stop(kill=True)
            raise
        finally:
            _release(shared)
        if message is None:
            proc.join()
            exitcode = proc.exitcode
            self._stop(kill=True)
            if exitcode == MAIN_REIMPORTED:
                raise MainReimported(f"the isolated process re-ran {main_file()} from its top, which starts sanas "
                                     f"work again; put that work under `if __name__ == \"__main__\":`")
            return Isolated(reason=_describe(exitcode), exitcode=exitcode)
        kind, value, text = message
        if kind == "raise":
            if text and hasattr(value, "add_note"):
                value.add_note(f"(raised in the isolated process {proc.pid}:)\n{text.rstrip()}")
            raise value
        return Isolated(value)

    def close(self) -> None:
        """End the child (it finishes nothing: call this between calls)."""
        self._stop(kill=False)

    def __enter__(self) -> IsolatedRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_isolated(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Isolated:
    """Call ``fn(*args, **kwargs)`` in a fresh child process (see the module docstring) and return its outcome.

    Returns ``Isolated(value)`` when ``fn`` returned, ``Isolated(reason=..., exitcode=...)`` when the child died
    without answering (e.g. ``"killed by SIGSEGV (exit status 139)"``); re-raises an exception ``fn`` raised,
    with the child's traceback as a note. ``KeyboardInterrupt`` in the caller kills the child and propagates.
    ``fn`` and the arguments must be picklable (``fn`` importable by name).

    >>> run_isolated(abs, -3).value
    3
    """
    with IsolatedRunner() as runner:
        return runner.run(fn, *args, **kwargs)
