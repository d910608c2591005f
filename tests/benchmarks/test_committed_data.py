"""The committed benchmark records name paths relative to the repository, never a machine's absolute paths."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "benchmarks" / "data"

# An absolute path under a machine's usual top folders, where a path can start: at the start of a string or after a
# space, quote, "=", ":" or "(" ("--out=/tmp/x", "python /work/main/x.py"). A relative path ("benchmarks/data/x"),
# a ratio ("1/4 epoch") or a URL's path ("https://host/home/x": after a host name) does not match.
MACHINE_PATH = re.compile(r"(?:^|[\s\"'=:(])/(?:work|tmp|home|root|usr|Users|var|opt|mnt|private|scratch|srv)/")


def machine_path(text: str) -> bool:
    """Whether ``text`` holds an absolute path of a machine (this repository's own, or under a usual top folder)."""
    return bool(MACHINE_PATH.search(text)) or str(REPO) in text


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value: its keys and its values, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def machine_paths(path: Path) -> list[str]:
    """The strings of a ``.json`` or ``.jsonl`` file that hold an absolute path of a machine."""
    text = path.read_text()
    values = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
        else [json.loads(text)]
    return [s for v in values for s in strings(v) if machine_path(s)]


def test_the_rule_finds_absolute_paths_and_passes_relative_ones() -> None:
    hits = ["/work/main/benchmarks/results/x", "python /home/u/sanas/benchmarks/x.py", "--out=/tmp/t", f"{REPO}/a"]
    misses = ["benchmarks/results/inherit_e2e", "1/4 epoch", "https://example.org/home/x", "a/tmp/b", "/", "4/8/16"]
    assert all(machine_path(s) for s in hits)
    assert not any(machine_path(s) for s in misses)


def test_no_committed_record_holds_an_absolute_path() -> None:
    files = sorted(p for p in DATA.rglob("*") if p.suffix in (".json", ".jsonl"))
    assert files
    found = {str(p.relative_to(REPO)): hits for p in files if (hits := machine_paths(p))}
    assert not found, f"absolute paths in committed records (write them relative to the repository): {found}"
