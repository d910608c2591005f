"""What a run says to its user: the errors that are the user's to fix, as one line, and progress lines.

The CLI, every worker process and the finalists stage print the same way: a :data:`USER_ERRORS` error as one
line on stderr with exit status 2 (never a traceback), progress as lines on stderr unless ``progress="none"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sanas.training.data import DatasetError

__all__ = ["USER_ERRORS", "check_folder", "say", "user_error_text"]

#: Errors that are the user's to fix (a bad setting, a missing file or dataset, a storage that does not answer):
#: the CLI and worker processes print them as one line and exit with status 2, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                                ConnectionError, DatasetError, PermissionError, NotADirectoryError,
                                                IsADirectoryError)


def user_error_text(exc: BaseException) -> str:
    """The one line to print for a :data:`USER_ERRORS` error: a ``KeyError``'s message without its quotes, an
    operating system's error as its path and reason (``runs/x/report: Permission denied``).

    >>> user_error_text(PermissionError(13, "Permission denied", "runs/x/report"))
    'runs/x/report: Permission denied'
    """
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def check_folder(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` if this process can create it or write in it; else ``ValueError``, one
    line naming ``what`` (``"run directory"``, ``"--out"``) and why: it is a file, a file is on the way to it, or
    this user cannot write the folder (``path``, or the nearest one above it that exists). Called before
    anything is written, so that a command refused for its folder leaves nothing behind.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     check_folder(f.name + "/sub", "run directory")
    Traceback (most recent call last):
    ValueError: run directory ...: ... is a file, not a folder
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{what} {target} is a file; expected a folder (or a path where one can be made)")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"{what} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == target else f"folder {existing}"
        raise ValueError(f"{what} {target}: {where} is not writable by this user; expected a folder you can "
                         f"write (change its permissions, or choose another {what})")
    return target


def say(progress: str, line: str) -> None:
    """Print a progress line on stderr, unless ``progress`` is ``"none"``."""
    if progress != "none":
        print(line, file=sys.stderr, flush=True)
