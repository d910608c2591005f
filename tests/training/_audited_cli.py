"""``sanas`` under an audit hook, for tests run under torchrun: every file this process creates, opens for
writing, renames or removes is listed in ``$SANAS_AUDIT_DIR/rank<RANK>-<restart>.json`` when it exits."""

from __future__ import annotations

import atexit
import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
writes: list[list[str]] = []
recording = True


def _hook(event: str, args: tuple) -> None:
    if not recording:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int | bytes) or path is None:
            return
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
            writes.append([event, os.fspath(path)])
    elif event in ("os.rename", "os.replace", "os.remove", "os.unlink", "os.mkdir", "os.rmdir", "shutil.rmtree"):
        writes.append([event, *(os.fspath(a) for a in args[:2] if isinstance(a, str | os.PathLike))])


def _dump() -> None:
    global recording
    recording = False
    name = f"rank{os.environ.get('RANK', '0')}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}.json"
    with open(os.path.join(os.environ["SANAS_AUDIT_DIR"], name), "w") as f:
        json.dump(writes, f)


if __name__ == "__main__":
    sys.addaudithook(_hook)
    atexit.register(_dump)
    from sanas.cli import main

    sys.exit(main())
