"""The channel tracer on common architectures: how many groups it can search, and how far the narrowest child goes.

For every architecture of ``tests/spaces/_architectures.py`` (written small, random weights) it builds a
``ModelSpace`` at one input size and reports the searchable and frozen channel groups, the narrowest child's
parameters as a fraction of the parent's (the default ratios go down to 0.25: a network whose narrowest child is
above 0.5 cannot be asked for half its parameters), and the most common reason groups are frozen::

    .venv/bin/python benchmarks/tracer_table.py                          # the table at 224×224
    .venv/bin/python benchmarks/tracer_table.py --json /tmp/after.json   # also its rows as JSON
    .venv/bin/python benchmarks/tracer_table.py --before benchmarks/data/tracer_table_before.json

``--before`` puts the rows of an earlier run beside today's: the committed file was made by this command on the
tracer of commit 7d0aa48 (``git worktree add /tmp/tracer-before 7d0aa48``, then
``PYTHONPATH=/tmp/tracer-before/src .venv/bin/python benchmarks/tracer_table.py --json ...`` from this tree).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

import sanas
from sanas.spaces.model import ModelSpace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "spaces"))
from _architectures import ARCHITECTURES

from _weights import randomise


def measure(name: str, size: int) -> dict[str, Any]:
    """One row: searchable and frozen groups, the narrowest child's parameter fraction, the main frozen reason."""
    torch.manual_seed(0)
    model = randomise(ARCHITECTURES[name]())
    space = ModelSpace(model, example_input=[3, size, size])
    narrowest = [0] * len(space.range_table())
    reasons = collections.Counter(re.sub(r" at \S+", "", why) for _, _, why in space.frozen
                                  if why != "reaches the model's output")
    return {"architecture": name, "size": size, "searchable": len(space.graph.groups), "frozen": len(space.frozen),
            "narrowest": space.count_params(narrowest) / space.count_params(space.init_tokens()),
            "reason": reasons.most_common(1)[0][0] if reasons else ""}


def table(rows: list[dict[str, Any]], before: dict[str, dict[str, Any]]) -> str:
    head = "| architecture | searchable | frozen | narrowest child | main reason groups are frozen |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        b = before.get(r["architecture"])
        cells = [f"{f.format(b[k])} → {f.format(r[k])}" if b else f.format(r[k])
                 for k, f in (("searchable", "{}"), ("frozen", "{}"), ("narrowest", "{:.2f}"))]
        lines.append(f"| {r['architecture']} | {' | '.join(cells)} | {r['reason'] or '—'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--before", type=Path, help="rows of an earlier run (--json) to show beside these")
    args = parser.parse_args(argv)
    rows = [measure(name, args.size) for name in ARCHITECTURES]
    before = {r["architecture"]: r for r in json.loads(args.before.read_text())} if args.before else {}
    print(f"sanas from {Path(sanas.__file__).parent}, input {args.size}×{args.size}")
    print(table(rows, before))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
