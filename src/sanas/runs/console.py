"""What a run says to its user: the errors that are the user's to fix, as one line, and progress lines.

The CLI, every worker process and the finalists stage print the same way: a :data:`USER_ERRORS` error as one
line on stderr with exit status 2 (never a traceback), progress as lines on stderr unless ``progress="none"``.
"""

from __future__ import annotations

import sys

from sanas.training.data import DatasetError

__all__ = ["USER_ERRORS", "say", "user_error_text"]

#: Errors that are the user's to fix (a bad setting, a missing file or dataset, a storage that does not answer):
#: the CLI and worker processes print them as one line and exit with status 2, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                                ConnectionError, DatasetError)


def user_error_text(exc: BaseException) -> str:
    """The one line to print for a :data:`USER_ERRORS` error (a ``KeyError``'s message without its quotes)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def say(progress: str, line: str) -> None:
    """Print a progress line on stderr, unless ``progress`` is ``"none"``."""
    if progress != "none":
        print(line, file=sys.stderr, flush=True)
