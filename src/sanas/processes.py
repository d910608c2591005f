"""What a process that sanas starts must not do: run its caller's search again.

``spawn`` and ``forkserver`` children (the isolated candidates and finalists, :mod:`sanas.runs.isolate`) import the
caller's main script again, as ``__mp_main__``, to find the functions and classes it defines. A script that starts
sanas work at its top level, outside ``if __name__ == "__main__":``, would start it again in every child — a
search inside a candidate, a run directory cleared under the search that owns it. Every entry point that starts
such work calls :func:`refuse_in_bootstrap` first: in such a child it says so in one line and ends the child, and
the caller raises :class:`MainReimported`; anywhere else it does nothing.

This module imports nothing of sanas, so every layer may use it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

__all__ = ["MAIN_REIMPORTED", "MainReimported", "main_file", "refuse_in_bootstrap"]

#: The exit status of a child that re-ran its caller's main script and found sanas work at its top level.
MAIN_REIMPORTED = 71


class MainReimported(RuntimeError):
    """A child process re-ran the caller's main script, which starts sanas work outside
    ``if __name__ == "__main__":`` (see :func:`refuse_in_bootstrap`)."""


def main_file() -> str:
    """The main script's file name (in a child that is importing it again: the script being imported)."""
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    return os.path.basename(getattr(main, "__file__", None) or "the main script")


def refuse_in_bootstrap(what: str) -> None:
    """Stop a process that sanas (or multiprocessing) started when it is still importing its caller's main script
    and that script starts ``what`` at its top level, unguarded.

    ``spawn`` and ``forkserver`` children run the main script again (as ``__mp_main__``) to find its functions;
    a script that starts a search, or clears its run directory, outside ``if __name__ == "__main__":`` would do it
    again in every child. The child says so in one line and exits with :data:`MAIN_REIMPORTED`; its caller
    (:meth:`IsolatedRunner.run`) raises :class:`MainReimported`. Outside such a child this does nothing.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        print(f"sanas: error: a child process re-ran {main_file()}, which starts {what} at its top level; put it "
              f"under `if __name__ == \"__main__\":`", file=sys.stderr, flush=True)
        os._exit(MAIN_REIMPORTED)


