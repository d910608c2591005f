"""The benchmarks' harness (benchmarks/harness.py): run records that resume, parallel seeds, and the verdicts."""

from __future__ import annotations

import json
import shutil
import statistics
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


def test_one_seed_has_no_std_to_print() -> None:
    """Row A of the DARTS miniature had one seed and read "90.55 ± 0.00", a std nobody measured."""
    assert harness.mean_std([0.5, 0.7], 100, 1) == "60.0 ± 14.1"
    assert harness.mean_std([0.9055], 100) == "90.55 (one seed)"


def test_a_difference_is_written_with_its_sign() -> None:
    """The tables wrote a gain as "0.27 ± 0.08" beside a loss "-0.41 ± 0.20": a difference carries its sign."""
    assert harness.mean_std([0.0025, 0.0029], 100, signed=True) == "+0.27 ± 0.03"
    assert harness.mean_std([-0.0041], 100, signed=True) == "-0.41 (one seed)"
    assert harness.mean_std([0.0025, 0.0029], 100) == "0.27 ± 0.03"  # an accuracy has none


def test_the_miniature_s_table_needs_rows_b_and_u_and_states_a_s_seeds(tmp_path: Path) -> None:
    """Row A costs an hour or more per seed here: the table (the targets are about B and U) is written from the
    seeds that have B and U, row A from those that have it, its count stated."""
    import inherit_e2e

    runs = tmp_path / "runs"
    runs.mkdir()
    for seed in range(3):
        record = json.loads((BENCHMARKS / "data" / "inherit_e2e_runs" / f"seed-{seed}.json").read_text())
        if seed > 0:
            record.pop("A", None)
        else:
            assert "A" in record
        (runs / f"seed-{seed}.json").write_text(json.dumps(record))
    out = tmp_path / "table"
    assert inherit_e2e.main(["--summary", "--runs-dir", str(runs), "--out", str(out)]) == 0
    table = out.with_suffix(".md").read_text()
    assert "(1 of 3 seeds: 0)" in table and "(one seed)" in table and "Seeds 0, 1, 2;" in table
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line[:4] in ("| 0 ", "| 1 ", "| 2 ")}
    assert "| – |" not in rows["| 0"] and all(rows[f"| {s}"].count("| – |") == 2 for s in (1, 2))  # no A
    for seed in (1, 2):
        (runs / f"seed-{seed}.json").unlink()
    (runs / "seed-0.json").write_text(json.dumps({**json.loads((runs / "seed-0.json").read_text()), "A": {}}))
    assert inherit_e2e.main(["--summary", "--runs-dir", str(runs), "--out", str(out)]) == 0
    assert "A not run yet" in out.with_suffix(".md").read_text()


def test_the_miniature_s_table_says_whether_b_fine_tuned_its_start_among_the_finalists() -> None:
    """B's records from before ``finalist_start`` ran without it: the table says so only where the records do."""
    import inherit_e2e

    before, after = {"B": {}}, {"B": {"finalist_start": True}}
    assert inherit_e2e.start_text([before, before]) == ""
    assert inherit_e2e.start_text([after, after]) == " and the search's start"
    assert "some seeds" in inherit_e2e.start_text([before, after])


def test_the_miniature_s_extra_rows_show_only_where_every_seed_has_them(tmp_path: Path, capsys) -> None:
    """G (B with group_l2 channels), P and Q (the parent through B's and L's fine-tunes) are run on request: a row
    every seed has is read against the parent, B and U (Q against L), paired by seed; one seed short, no row. Unknown
    rows are refused."""
    import inherit_e2e

    runs = tmp_path / "runs"
    runs.mkdir()
    for seed in range(3):
        record = json.loads((BENCHMARKS / "data" / "inherit_e2e_runs" / f"seed-{seed}.json").read_text())
        for row in inherit_e2e.EXTRA:  # the committed rows, replaced by ones this test controls
            record.pop(row, None)
        b = record["B"]["test_top1"]
        record["G"] = {**record["B"], "test_top1": b + 0.002, "importance": "group_l2"}
        # L's fine-tune costs what U's does here: with B's search added, its cost is B's
        record["L"] = {**record["U"], "tokens": record["B"]["tokens"], "test_top1": b + 0.003, "final_epochs": 10}
        record["V"] = {**record["U"], "test_top1": record["U"]["test_top1"] + 0.004, "final_epochs": 10}
        record["C"] = {**record["B"], "search": {**record["B"]["search"], "candidates": 100}, "test_top1": b - 0.001}
        if seed < 2:
            record["P"] = {**record["U"], "test_top1": record["parent"]["test_top1"] + 0.001}
            record["Q"] = {**record["V"], "tokens": record["parent"]["tokens"],
                           "test_top1": record["parent"]["test_top1"] + 0.005}
        (runs / f"seed-{seed}.json").write_text(json.dumps(record))
    out = tmp_path / "table"
    assert inherit_e2e.main(["--summary", "--runs-dir", str(runs), "--out", str(out)]) == 0
    table = out.with_suffix(".md").read_text()
    assert "| G: B with importance = group_l2 |" in table and "the parent itself" not in table
    assert "* G − B: +0.20 ± 0.00 points (paired)" in table and "* G − parent:" in table and "* B − P" not in table
    label = ("| L: B's choice fine-tuned 10 epochs (half the parent's) (today's default) (cost: B's search + this "
             "fine-tune) |")
    assert label in table
    epochs = {line.split(" | ")[0]: line.split(" | ")[4] for line in table.splitlines() if line.startswith("| ")}
    b_row = next(k for k in epochs if k.startswith("| B: sanas' defaults"))
    assert epochs[label.removesuffix(" |")] == epochs[b_row]
    assert "| C: B searching 100 candidates |" in table
    assert "* L − B: +0.30 ± 0.00 points (paired)" in table and "* C − B: -0.10 ± 0.00 points (paired)" in table
    assert "* L − parent:" in table and "* C − U:" in table
    # B and U ran with the quarter-length fine-tune of before: today's defaults are L and V, and the table says so
    assert "fine-tuned 0.25 of the parent's epochs, the default when run)" in table
    assert ("* With today's default fine-tune (10 epochs, 0.5 of the parent's), B is row L and U row V: target B ≥ "
            "parent − one std: met; B > U by more than one std: met") in table
    assert "| V: the uniform-width child, fine-tuned like L |" in table
    l_u = statistics.mean(s["B"]["test_top1"] - s["U"]["test_top1"] for s in map(json.loads, (
        (runs / f"seed-{seed}.json").read_text() for seed in range(3))))
    assert f"* L − V: +{100 * l_u - 0.1:.2f} ± " in table  # L = B + 0.3, V = U + 0.4
    record = json.loads((runs / "seed-2.json").read_text())
    record["P"] = {**record["U"], "test_top1": record["parent"]["test_top1"] + 0.001}
    record["Q"] = {**record["V"], "tokens": record["parent"]["tokens"],
                   "test_top1": record["parent"]["test_top1"] + 0.005}
    (runs / "seed-2.json").write_text(json.dumps(record))
    assert inherit_e2e.main(["--summary", "--runs-dir", str(runs), "--out", str(out)]) == 0
    table = out.with_suffix(".md").read_text()
    assert "| P: the parent itself, fine-tuned like B (control) |" in table
    assert "* P − parent: +0.10 ± 0.00 points (paired)" in table and "* B − P:" in table
    # Q, L's control: the parent through L's fine-tune; L = B + 0.3 against Q = parent + 0.5
    assert "| Q: the parent itself, fine-tuned like L (10 epochs) (control) |" in table
    assert "* Q − parent: +0.50 ± 0.00 points (paired): what L's final fine-tune does" in table
    l_q = statistics.mean(s["B"]["test_top1"] - s["parent"]["test_top1"] for s in map(json.loads, (
        (runs / f"seed-{seed}.json").read_text() for seed in range(3))))
    assert f"* L − Q: {100 * l_q - 0.2:+.2f} ± " in table
    with pytest.raises(SystemExit) as stop:
        inherit_e2e.main(["--rows", "B,Z", "--runs-dir", str(runs), "--out", str(out)])
    assert stop.value.code == 2 and "--rows Z: expected rows among A,B,U,G,P,L,V,Q,C" in capsys.readouterr().err


def test_the_miniature_s_row_l_needs_row_b_before_anything_runs(tmp_path: Path) -> None:
    """Row L fine-tunes B's choice longer: asked of a seed without B (and without B in ``--rows``), it is refused
    before the data is read or a parent trained, nothing written."""
    import inherit_e2e

    runs, work = tmp_path / "runs", tmp_path / "work"
    runs.mkdir()
    with pytest.raises(SystemExit, match="row L fine-tunes row B's choice, which seed 0 does not have yet"):
        inherit_e2e.main(["--seed", "0", "--rows", "L", "--runs-dir", str(runs), "--work-dir", str(work)])
    assert not any(runs.iterdir()) and not work.exists()


def test_the_miniature_trains_no_parent_for_a_seed_whose_rows_are_all_done(tmp_path: Path) -> None:
    """The parents' weights are not committed: a checkout asked only for rows the record has returns at once
    (it trained the parent again, up to half an hour, before)."""
    import inherit_e2e

    runs, work = tmp_path / "runs", tmp_path / "work"
    runs.mkdir()
    record = (BENCHMARKS / "data" / "inherit_e2e_runs" / "seed-0.json").read_text()
    (runs / "seed-0.json").write_text(record)
    tiny = ["--train-subset", "64", "--val-subset", "32", "--parent-epochs", "2"]  # quick to fail without the check
    assert inherit_e2e.main(["--seed", "0", "--rows", "B,U", "--runs-dir", str(runs), "--work-dir", str(work),
                             *tiny]) == 0
    assert not work.exists() and (runs / "seed-0.json").read_text() == record


def test_the_miniature_s_parent_trained_again_must_be_the_recorded_one(tmp_path: Path) -> None:
    """The parents' weights are not committed: a checkout trains them again before rows G and P, and those rows
    pair with the committed B and U only if it is the same parent."""
    import inherit_e2e

    recorded = json.loads((BENCHMARKS / "data" / "inherit_e2e_runs" / "seed-0.json").read_text())["parent"]
    inherit_e2e.check_parent(recorded, dict(recorded), tmp_path / "seed-0.json", tmp_path / "parent")
    other = {**recorded, "val_curve": [*recorded["val_curve"][:-1], recorded["val_curve"][-1] + 0.001]}
    with pytest.raises(SystemExit, match="differs from the one"):
        inherit_e2e.check_parent(recorded, other, tmp_path / "seed-0.json", tmp_path / "parent")
