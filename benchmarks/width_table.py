"""Generate the tabular width benchmark: every network of a small PlainCNNSpace trained on real Fashion-MNIST.

Each of the 5**4 = 625 width configurations is trained with the same recipe, split and seed through sanas' own
trainer (``sanas.training.Trainer``), and its parameters, MACs, held-out validation accuracy (the search's
objective) and test accuracy (touched once, for reporting the selected model) are recorded. The search-strategy
harness (``benchmarks/strategies.py``) then replays searches against the table in milliseconds.

    .venv/bin/python benchmarks/width_table.py --jobs 2        # all rows, 2 processes, then merge (~1.2 h, 2 cores)
    .venv/bin/python benchmarks/width_table.py --shard 0/4     # one shard (e.g. on another machine), resumable
    .venv/bin/python benchmarks/width_table.py --merge         # shards -> benchmarks/data/width_table.{csv,json}
    .venv/bin/python benchmarks/width_table.py --check 0,1,2   # retrain rows and compare with the committed table

Work is resumable: each shard appends one JSON line per finished row to ``--work-dir`` and skips rows already
there, so a killed run loses at most the row in progress. Training is single-threaded and seeded, so a row is
reproducible on the same machine; ``--check`` says how closely a rerun matches.

Two shapes are defined (``--shape``): ``4x5``, the committed main table (4 cells × widths 8/16/24/32/48, 4 epochs,
625 rows), and ``3x6``, a second table of another shape (3 cells × widths 8/12/16/24/32/48, 3 epochs, 216 rows)
that checks whether a search strategy's defaults carry over without tuning::

    nice -n 10 .venv/bin/python benchmarks/width_table.py --shape 3x6 --shard 0/1 && \
        .venv/bin/python benchmarks/width_table.py --shape 3x6 --merge
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sanas.atomic import atomic_write_bytes
from sanas.spaces import PlainCNNSpace
from sanas.training import Recipe, prepare_data
from sanas.training.trainer import Trainer

HERE = Path(__file__).resolve().parent
TABLE = HERE / "data" / "width_table.csv"
PROVENANCE = HERE / "data" / "width_table.json"
WORK_DIR = HERE / "results" / "width_table"

#: Everything that defines a row of the main table. Changing any of it means regenerating the whole table.
SETTINGS: dict[str, Any] = {
    "space": PlainCNNSpace().config(),
    "data": {"dataset": "fashion-mnist", "split_seed": 0, "val_fraction": 0.1, "train_subset": 5000,
             "val_subset": 2000},
    "recipe": {"retain_epoch": 4, "batch_size": 64, "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 3e-4,
               "grad_clip": 5.0, "aux_weight": 0.0, "drop_path_prob": 0.0, "cutout": 0, "seed": 0, "device": "cpu",
               "channels_last": True},
    "torch_threads": 1,
}


@dataclass(frozen=True)
class Shape:
    """One table: the settings that define its rows, and where it lives."""

    name: str
    settings: dict[str, Any]
    table: Path
    provenance: Path
    work_dir: Path

    def space(self) -> PlainCNNSpace:
        return PlainCNNSpace(**{k: v for k, v in self.settings["space"].items() if k != "name"})


#: The tables: ``4x5`` is the main one; ``3x6`` has another stage count, other widths and a shorter training, so
#: a strategy's defaults can be checked on a table they were not developed on.
SHAPES: dict[str, Shape] = {
    "4x5": Shape("4x5", SETTINGS, TABLE, PROVENANCE, WORK_DIR),
    "3x6": Shape("3x6", {**SETTINGS,
                         "space": PlainCNNSpace(filter_num=(8, 12, 16, 24, 32, 48), layers=3).config(),
                         "recipe": {**SETTINGS["recipe"], "retain_epoch": 3}},
                 HERE / "data" / "width_table_3x6.csv", HERE / "data" / "width_table_3x6.json",
                 HERE / "results" / "width_table_3x6"),
}
COLUMNS = ["index", "tokens", "widths", "params", "macs", "val_acc", "val_reward", "test_acc", "train_loss",
           "seconds"]


def all_tokens(space: PlainCNNSpace) -> list[list[int]]:
    """Every token vector of ``space`` in lexicographic order; row ``i`` of the table is ``all_tokens()[i]``."""
    return [list(t) for t in itertools.product(*(range(r) for r in space.range_table()))]


def token_key(tokens: list[int]) -> str:
    return "-".join(str(t) for t in tokens)


def train_row(index: int, tokens: list[int], space: PlainCNNSpace, data: Any,
              settings: dict[str, Any] = SETTINGS) -> dict[str, Any]:
    """Train one configuration and return its table row."""
    start = time.perf_counter()
    trainer = Trainer(space, tokens, data, Recipe(**settings["recipe"]))
    for _ in range(trainer.recipe.retain_epoch):
        last = trainer.run_epoch()
    _, test_top1, _ = trainer.evaluate(*data.test())
    return {"index": index, "tokens": token_key(tokens), "widths": "-".join(map(str, space.widths(tokens))),
            "params": space.count_params(tokens), "macs": space.count_macs(tokens, (32, 32)),
            "val_acc": round(last.val_top1, 6), "val_reward": round(trainer.reward(), 6),
            "test_acc": round(test_top1, 6), "train_loss": round(last.train_loss, 6),
            "seconds": round(time.perf_counter() - start, 2)}


def load_data(settings: dict[str, Any] = SETTINGS) -> Any:
    d = settings["data"]
    return prepare_data(d["dataset"], val_fraction=d["val_fraction"], seed=d["split_seed"],
                        train_subset=d["train_subset"], val_subset=d["val_subset"])


def read_rows(path: Path) -> dict[int, dict[str, Any]]:
    """Rows of one shard file; a torn last line (the process died mid-write) is ignored."""
    rows: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[int(row["index"])] = row
    return rows


def run_shard(shard: int, shards: int, work_dir: Path, shape: Shape = SHAPES["4x5"]) -> None:
    torch.set_num_threads(shape.settings["torch_threads"])
    space = shape.space()
    todo = [(i, t) for i, t in enumerate(all_tokens(space)) if i % shards == shard]
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"shard-{shard}-of-{shards}.jsonl"
    done = read_rows(path)
    todo = [(i, t) for i, t in todo if i not in done]
    print(f"shard {shard}/{shards}: {len(done)} rows done, {len(todo)} to train -> {path}", flush=True)
    if not todo:
        return
    data = load_data(shape.settings)
    start = time.perf_counter()
    with path.open("a") as f:
        if f.tell() and not path.read_text().endswith("\n"):
            f.write("\n")  # end a torn line so the next row starts clean
        for n, (i, tokens) in enumerate(todo, 1):
            row = train_row(i, tokens, space, data, shape.settings)
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
            rate = (time.perf_counter() - start) / n
            print(f"shard {shard}: row {i} {row['tokens']} val {row['val_acc']:.4f} test {row['test_acc']:.4f} "
                  f"({row['seconds']:.1f}s) {n}/{len(todo)}, ~{rate * (len(todo) - n) / 60:.0f} min left",
                  flush=True)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def merge(work_dir: Path, shape: Shape = SHAPES["4x5"]) -> None:
    space = shape.space()
    expected = len(all_tokens(space))
    rows: dict[int, dict[str, Any]] = {}
    for path in sorted(work_dir.glob("shard-*.jsonl")):
        rows.update(read_rows(path))
    missing = sorted(set(range(expected)) - set(rows))
    if missing:
        raise SystemExit(f"error: {len(missing)} of {expected} rows are missing in {work_dir} "
                         f"(first: {missing[:5]}); run the shards to completion first")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for i in range(expected):
        writer.writerow({k: rows[i][k] for k in COLUMNS})
    shape.table.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(shape.table, out.getvalue().encode())
    provenance = {
        "script": "benchmarks/width_table.py", "shape": shape.name, "git_commit": git_commit(),
        "settings": shape.settings,
        "rows": expected, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or None,
        "cpu_seconds_total": round(sum(r["seconds"] for r in rows.values()), 1),
        "generated": time.strftime("%Y-%m-%d", time.gmtime()),
        "columns": {"val_acc": "top-1 on the held-out split after the last epoch (the search objective)",
                    "val_reward": "mean top-1 of the last two epochs (sanas' reward definition)",
                    "test_acc": "top-1 on the 10,000 test images, evaluated once after training"},
    }
    atomic_write_bytes(shape.provenance, (json.dumps(provenance, indent=2) + "\n").encode())
    print(f"wrote {shape.table} ({expected} rows) and {shape.provenance}")


def load_table(path: Path = TABLE) -> list[dict[str, Any]]:
    """The committed table as a list of rows with typed values."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("index", "params", "macs"):
            r[k] = int(r[k])
        for k in ("val_acc", "val_reward", "test_acc", "train_loss", "seconds"):
            r[k] = float(r[k])
    return rows


def check(indices: list[int], tolerance: float, shape: Shape = SHAPES["4x5"]) -> int:
    """Retrain ``indices`` and compare with the committed table; returns the number of mismatching rows."""
    torch.set_num_threads(shape.settings["torch_threads"])
    table = load_table(shape.table)
    space = shape.space()
    data = load_data(shape.settings)
    bad = 0
    for i in indices:
        want = table[i]
        got = train_row(i, [int(t) for t in want["tokens"].split("-")], space, data, shape.settings)
        diffs = {k: got[k] - want[k] for k in ("val_acc", "test_acc")}
        same = got["params"] == want["params"] and got["macs"] == want["macs"]
        ok = same and all(abs(d) <= tolerance for d in diffs.values())
        bad += not ok
        print(f"row {i} {want['tokens']}: val {got['val_acc']:.4f} (table {want['val_acc']:.4f}), "
              f"test {got['test_acc']:.4f} (table {want['test_acc']:.4f}), params {got['params']} "
              f"(table {want['params']}) -> {'ok' if ok else 'MISMATCH'}")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shard", help="K/N: train rows with index %% N == K")
    p.add_argument("--jobs", type=int, default=0, help="run N shards as local processes, then merge")
    p.add_argument("--merge", action="store_true", help="merge finished shards into the committed table")
    p.add_argument("--check", help="comma-separated row indices to retrain and compare with the table")
    p.add_argument("--tolerance", type=float, default=0.0, help="allowed accuracy difference for --check")
    p.add_argument("--shape", choices=sorted(SHAPES), default="4x5", help="which table (default: 4x5, the main one)")
    p.add_argument("--work-dir", type=Path, help="shard files (default: benchmarks/results/<table name>)")
    args = p.parse_args(argv)
    shape = SHAPES[args.shape]
    args.work_dir = args.work_dir or shape.work_dir
    if args.check:
        return 1 if check([int(i) for i in args.check.split(",")], args.tolerance, shape) else 0
    if args.shard:
        try:
            k, n = (int(x) for x in args.shard.split("/"))
            if not 0 <= k < n:
                raise ValueError
        except ValueError:
            p.error(f"--shard is {args.shard!r}, expected K/N with 0 <= K < N")
        run_shard(k, n, args.work_dir, shape)
        return 0
    if args.jobs:
        procs = [subprocess.Popen([sys.executable, __file__, "--shape", shape.name, "--shard", f"{k}/{args.jobs}",
                                   "--work-dir", str(args.work_dir)]) for k in range(args.jobs)]
        codes = [proc.wait() for proc in procs]
        if any(codes):
            print(f"error: shard exit codes {codes}", file=sys.stderr)
            return 1
    if args.jobs or args.merge:
        merge(args.work_dir, shape)
        return 0
    p.error("give --jobs N, --shard K/N, --merge or --check ROWS")
    return 2


if __name__ == "__main__":
    sys.exit(main())
