"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never half of one.

Every file sanas writes for later (run configurations, candidate records, checkpoints, weights, reports) goes
through :func:`atomic_write_bytes` or :func:`atomic_write_text`: the bytes go to a temporary file in the same
folder, are flushed and fsynced, and the temporary is renamed over the target (``os.replace``, atomic on POSIX
within one filesystem). A writer killed mid-write leaves only its temporary, whose name says who wrote it, so
:func:`clean_stale_temporaries` can delete it on the next run.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as folder:
...     path = Path(folder) / "run" / "config.json"
...     atomic_write_text(path, '{"seed": 0}\\n')     # creates the missing parent folder
...     atomic_write_bytes(path, b'{"seed": 1}\\n')   # replaces the file in one step
...     print(path.read_text(), end="")
...     print(sorted(p.name for p in path.parent.iterdir()))
{"seed": 1}
['config.json']
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["STALE_TEMPORARY_SECONDS", "atomic_write_bytes", "atomic_write_text", "clean_stale_temporaries"]

#: A temporary file whose writer cannot be identified is stale after this long (a write takes seconds).
STALE_TEMPORARY_SECONDS = 3600.0
# The temporaries: .<name>.<host>~<pid namespace>~<pid>.<mkstemp's 8 random chars>.tmp (older versions:
# .<name>.<random>.tmp)
_ANY_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def atomic_write_bytes(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so a crash leaves either the old file or the new one, never half of one.

    Creates the parent folder if needed. The bytes are fsynced before the rename; on any error (or interrupt)
    the temporary file is deleted, the old file is left as it was, and the error propagates. The temporary's
    name says who writes it, so :func:`clean_stale_temporaries` can remove it if the writer is killed mid-write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` like :func:`atomic_write_bytes`: never a half-written file."""
    atomic_write_bytes(path, text.encode())


def clean_stale_temporaries(*folders: Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write_bytes` left in ``folders`` when killed mid-write.

    A temporary is stale when its writer, on this host and in this PID namespace, no longer runs; one whose
    writer cannot be checked (another machine, or an older sanas) after ``STALE_TEMPORARY_SECONDS``. Returns
    what was deleted. Files of live writers, and every other file, are left alone; a missing folder is skipped.
    """
    here = re.compile(r"^\..+\." + re.escape(_writer_tag().rsplit("~", 1)[0]) + r"~(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")
    removed = []
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for path in entries:
            if not _ANY_TEMPORARY.match(path.name):
                continue
            mine = here.match(path.name)  # written on this host, in this PID namespace
            try:
                if mine is not None:
                    pid = int(mine["pid"])
                    if pid == os.getpid() or _pid_alive(pid):
                        continue
                elif time.time() - path.stat().st_mtime < STALE_TEMPORARY_SECONDS:
                    continue
                path.unlink()
                removed.append(path)
            except OSError:
                continue  # gone meanwhile, or not ours to delete
    return removed


def _writer_tag() -> str:
    """Who writes a temporary file: host, PID namespace and pid, so a later run can tell a dead writer's file."""
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{socket.gethostname()}~{ns}~{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
