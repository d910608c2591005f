"""Atomic writes: the new file appears whole in one step; a failed write leaves the old file and no temporary;
temporaries of dead writers, and only those, are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sanas.atomic import (
    STALE_TEMPORARY_SECONDS,
    _writer_tag,
    atomic_write_bytes,
    atomic_write_text,
    clean_stale_temporaries,
)


def test_writes_a_new_file_and_its_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "run" / "candidates" / "trial-00000.json"
    atomic_write_bytes(path, b'{"reward": 0.5}\n')
    assert path.read_bytes() == b'{"reward": 0.5}\n'
    assert [p.name for p in path.parent.iterdir()] == ["trial-00000.json"]


def test_replaces_an_existing_file_in_one_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.md"
    atomic_write_text(path, "old\n")
    seen = []
    fsync = os.fsync

    def watch(fd: int) -> None:  # mid-write: the old file is whole, the new bytes sit in a temporary beside it
        seen.append((path.read_text(), sorted(p.name for p in tmp_path.iterdir())))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watch)
    atomic_write_text(path, "nouveau — ✓\n")
    assert path.read_text() == "nouveau — ✓\n"
    assert path.read_bytes() == "nouveau — ✓\n".encode()
    [(during, names)] = seen
    assert during == "old\n"
    assert len(names) == 2 and names[0].startswith(f".report.md.{_writer_tag()}.") and names[0].endswith(".tmp")
    assert names[1] == "report.md"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             error: BaseException) -> None:
    path = tmp_path / "config.json"
    atomic_write_bytes(path, b"{}")

    def fail(fd: int) -> None:
        raise error

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(error)):
        atomic_write_bytes(path, b'{"half": ')
    assert path.read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_failed_rename_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "model.json").mkdir()  # a folder where the file should go: os.replace refuses
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "model.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]
    assert (tmp_path / "model.json").is_dir()


def test_only_stale_temporaries_are_removed(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = _writer_tag().rsplit("~", 1)[0]
    files = {
        "dead": f".checkpoint.pt.{tag}~{dead.pid}.abcd1234.tmp",
        "live": f".trial-00003.json.{tag}~{live.pid}.abcd1234.tmp",
        "mine": f".config.json.{tag}~{os.getpid()}.abcd1234.tmp",
        "other host, fresh": ".config.json.elsewhere~4026531836~12.abcd1234.tmp",
        "other host, old": ".sanas.journal.elsewhere~4026531836~13.abcd1234.tmp",
        "older sanas, old": ".checkpoint.pt.x8_k2m9q.tmp",
        "not a temporary": "notes.tmp",
    }
    try:
        for name in files.values():
            (tmp_path / name).write_text("x")
        old = time.time() - STALE_TEMPORARY_SECONDS - 60
        for key in ("other host, old", "older sanas, old"):
            os.utime(tmp_path / files[key], (old, old))
        removed = {p.name for p in clean_stale_temporaries(tmp_path, tmp_path / "missing-folder")}
    finally:
        live.kill()
        live.wait()
    assert removed == {files[k] for k in ("dead", "other host, old", "older sanas, old")}
    atomic_write_bytes(tmp_path / "config.json", b"{}")
    assert (tmp_path / "config.json").read_bytes() == b"{}"
