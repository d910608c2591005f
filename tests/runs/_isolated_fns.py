"""Functions run in isolated child processes by the tests (a child imports them by name)."""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

import torch


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def abort() -> None:
    os.abort()


def exit_quietly(code: int) -> None:
    os._exit(code)


def fail(message: str) -> None:
    raise ValueError(message)


def fill_and_report(t: torch.Tensor, value: int) -> tuple[int, int, bool]:
    """Write into ``t`` (shared with the caller, not copied) and return what this process sees."""
    t.fill_(value)
    return os.getpid(), torch.get_num_threads(), t.is_shared()


def sleep_with_pid(pid_file: str, seconds: float) -> str:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def exit_quietly_with(code: int, *ignored: Any) -> None:
    os._exit(code)
