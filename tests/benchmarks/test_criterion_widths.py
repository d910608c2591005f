"""The criterion-or-widths diagnostic (benchmarks/criterion_widths.py): its table reads the right records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import compress_models as cm  # noqa: E402
import criterion_widths as cw  # noqa: E402


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_the_table_pairs_sanas_uniform_child_with_the_compress_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    compress, ours = tmp_path / "compress", tmp_path / "ours"
    monkeypatch.setattr(cm, "RUNS_DIR", compress)
    for seed, (a1, u, b) in enumerate([(0.900, 0.905, 0.904), (0.902, 0.906, 0.907), (0.899, 0.905, 0.903)]):
        _write(compress / "vgg11" / "0.5x" / f"seed-{seed}.json",
               {"seed": seed, "tp_uniform": {"test_top1": a1, "params": 1000},
                "sanas": {"test_top1": b, "params": 990}})
        _write(ours / "vgg11" / "0.5x" / f"seed-{seed}.json", {"seed": seed, "u": {"test_top1": u, "params": 980}})
    _write(compress / "vgg11" / "0.5x" / "seed-3.json", {"seed": 3, "tp_uniform": {"test_top1": 0.1, "params": 1}})
    args = argparse.Namespace(models="vgg11,resnet20", budget_ratio=0.5, runs_dir=ours, out=tmp_path / "cw",
                              work_dir=tmp_path)
    assert cw.summarise(args) == 0
    row = next(line for line in (tmp_path / "cw.md").read_text().splitlines() if line.startswith("| vgg11"))
    # seed 3 has no (u) and no (b): left out; (u) − (a1) = +0.50 ± 0.10 beats every std; (b) − (u) is a tie
    assert "| 0,1,2 |" in row and "1,000 / 980 / 990" in row
    assert "0.50 ± 0.10 (beats)" in row and row.endswith("-0.07 ± 0.15 | – | – |")  # no l1 child yet
    assert json.loads((tmp_path / "cw.json").read_text())["models"].keys() == {"vgg11"}
    assert "resnet20" not in capsys.readouterr().out
