"""The benchmarks' harness (benchmarks/harness.py): run records that resume, parallel seeds, and the verdicts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness  # noqa: E402


def test_a_committed_run_record_is_written_back_byte_for_byte(tmp_path: Path) -> None:
    """Runs still going elsewhere (an older commit) and committed runs must stay readable and resumable."""
    for source in (BENCHMARKS / "data" / "compress_models_runs" / "vgg11" / "0.5x" / "seed-0.json",
                   BENCHMARKS / "data" / "inherit_e2e_runs" / "seed-0.json"):
        path = tmp_path / source.name
        shutil.copy(source, path)
        record = harness.Record(path, seed=99)
        assert record["seed"] == json.loads(source.read_text())["seed"]
        record.save()
        assert path.read_bytes() == source.read_bytes()


def test_a_method_runs_until_its_record_has_a_test_result(tmp_path: Path) -> None:
    record = harness.Record(tmp_path / "runs" / "seed-3.json", seed=3)
    assert record == {"seed": 3} and not harness.done(record, "B")
    record["B"] = {"search": {"candidates": 30}}  # searched, not yet fine-tuned
    record.save()
    assert not harness.done(harness.Record(record.path, seed=3), "B")
    record["B"]["test_top1"] = 0.9
    record["A"] = {"test_top1": 0.8}
    record.save()
    (tmp_path / "runs" / "seed-1.json").write_text(json.dumps({"seed": 1, "A": {"test_top1": 0.7}, "B": {}}))
    (tmp_path / "runs" / "seed-0.json").write_text(json.dumps({"seed": 0, "A": {"test_top1": 0.7},
                                                                "B": {"test_top1": 0.8}}))
    assert [r["seed"] for r in harness.finished(tmp_path / "runs", ["A", "B"])] == [0, 3]
    assert [r["seed"] for r in harness.finished(tmp_path / "runs", ["A"])] == [0, 1, 3]


def test_seeds_in_processes_fail_when_one_fails(tmp_path: Path) -> None:
    script = tmp_path / "exit.py"
    script.write_text("import sys\nsys.exit(int(sys.argv[1]))\n")
    assert harness.in_processes(str(script), [["0"], ["0"]])
    assert not harness.in_processes(str(script), [["0"], ["3"]])


def test_within_one_std_reads_the_mean_difference_against_our_std() -> None:
    diff, sd, ok = harness.within_one_std([0.90, 0.92], [0.915, 0.915])
    assert diff == pytest.approx([-0.015, 0.005]) and sd == pytest.approx(0.01414, abs=1e-5) and ok
    assert not harness.within_one_std([0.88, 0.89], [0.9, 0.9])[2]
    assert not harness.within_one_std([0.89], [0.9])[2] and harness.within_one_std([0.9], [0.9])[2]  # no std


def test_a_method_left_half_run_by_an_earlier_process_is_refused(tmp_path: Path) -> None:
    # A resumed journal or checkpoint holds passes this process' meter never saw: rerunning must start from empty.
    harness.start_fresh(tmp_path / "never-made", tmp_path)  # missing and empty folders are fresh
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "sanas.journal").write_text("{}\n")
    with pytest.raises(SystemExit, match=r"study: left by an earlier run .* delete it to run the method again"):
        harness.start_fresh(tmp_path / "final", tmp_path / "study")
