"""The tabular width benchmarks and the search-strategy harness (benchmarks/width_table.py, strategies.py)."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import strategies  # noqa: E402
import width_table  # noqa: E402
from sanas.spaces import PlainCNNSpace  # noqa: E402


@pytest.fixture(scope="module")
def table() -> strategies.Table:
    return strategies.Table.load()


@pytest.fixture(scope="module")
def second() -> strategies.Table:
    return strategies.Table.load(width_table.SHAPES["3x6"].table)


def test_committed_table_is_complete_and_consistent(table):
    space = PlainCNNSpace()
    assert len(table.rows) == 625 == len(width_table.all_tokens(space))
    for i, (row, tokens) in enumerate(zip(table.rows, width_table.all_tokens(space), strict=True)):
        assert row["index"] == i and row["tokens"] == width_table.token_key(tokens)
        assert row["params"] == space.count_params(tokens) and row["macs"] == space.count_macs(tokens)
        assert 0.1 < row["val_acc"] <= 1 and 0.1 < row["test_acc"] <= 1
    provenance = json.loads(width_table.PROVENANCE.read_text())
    assert provenance["settings"] == json.loads(json.dumps(width_table.SETTINGS))
    assert provenance["rows"] == 625 and provenance["torch"]
    # The budget leaves a real search: about half the configurations, the init tokens among them.
    assert 250 < len(table.feasible) < 375
    assert space.count_params(space.init_tokens()) <= table.budget


def test_second_table_is_complete_consistent_and_of_another_shape(second):
    shape = width_table.SHAPES["3x6"]
    space = shape.space()
    assert space.range_table() == [6, 6, 6] and space.filter_num == [8, 12, 16, 24, 32, 48]
    assert len(second.rows) == 216 == len(width_table.all_tokens(space))
    for i, (row, tokens) in enumerate(zip(second.rows, width_table.all_tokens(space), strict=True)):
        assert row["index"] == i and row["tokens"] == width_table.token_key(tokens)
        assert row["params"] == space.count_params(tokens) and row["macs"] == space.count_macs(tokens)
        assert 0.1 < row["val_acc"] <= 1 and 0.1 < row["test_acc"] <= 1
    provenance = json.loads(shape.provenance.read_text())
    assert provenance["settings"] == json.loads(json.dumps(shape.settings)) and provenance["shape"] == "3x6"
    assert provenance["settings"]["recipe"]["retain_epoch"] == 3 and provenance["rows"] == 216
    assert space.count_params(space.init_tokens()) <= second.budget and 80 < len(second.feasible) < 140


def test_scoring(table):
    best, worst = table.feasible[0], table.feasible[-1]
    hit = strategies.score(table, [worst["tokens"], best["tokens"]], 2)
    assert hit.regret == 0 and hit.top1 and hit.test_acc == best["test_acc"]
    miss = strategies.score(table, [worst["tokens"], best["tokens"]], 1)
    assert miss.regret == pytest.approx(best["val_acc"] - worst["val_acc"]) and not miss.top1
    over = next(r for r in table.rows if r["params"] > table.budget)
    with pytest.raises(AssertionError, match="budget"):
        strategies.score(table, [over["tokens"]], 1)


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_every_strategy_searches_through_sanas_within_budget(table, strategy):
    strategies._setup({str(table.path): table.budget})
    task, evaluated = strategies.run_search(strategies.Task(strategy, 3, 30, str(table.path)))
    assert task.strategy == strategy
    assert len(set(evaluated)) == len(evaluated)
    if strategy == "sa-paddleslim":  # ends when its one-token neighbourhood is used up, maybe before 30 steps
        assert 1 <= len(evaluated) <= 30
    else:  # the others run all their steps (sanas' SA widens its move instead of stopping)
        assert len(evaluated) == 30
    assert evaluated[0] == width_table.token_key(table.space.init_tokens())
    assert all(table.by_key[k]["params"] <= table.budget for k in evaluated)


def test_permutation_and_ratio_tests():
    assert strategies.permutation_test([0.1, 0.2, 0.3] * 5, [0.1, 0.2, 0.3] * 5, rounds=500) > 0.9
    assert strategies.permutation_test([0.0] * 20, [1.0] * 20, rounds=500) < 0.01
    assert strategies.permutation_test([0.0] * 20, [1.0] * 20, rounds=500, alternative="less") < 0.01
    assert strategies.permutation_test([1.0] * 20, [0.0] * 20, rounds=500, alternative="less") > 0.99
    ratio, upper, p = strategies.ratio_test([0.2, 0.3, 0.25] * 20, [1.0, 0.9, 1.1] * 20, 0.6, rounds=2000)
    assert ratio == pytest.approx(0.25) and ratio <= upper < 0.6 and p < 0.01
    assert strategies.ratio_test([0.7, 0.5] * 20, [1.0, 1.0] * 20, 0.6, rounds=2000)[2] > 0.5


def test_the_default_sa_is_the_same_search_in_percent(table):
    strategies._setup({str(table.path): table.budget})
    runs = {scale: strategies.run_search(strategies.Task("sa", 7, 40, str(table.path), scale))[1]
            for scale in (1.0, 100.0)}
    assert runs[1.0] == runs[100.0]  # the auto temperature: the same candidates, the same decisions
    fixed = {scale: strategies.run_search(strategies.Task("sa-t0-1", 7, 40, str(table.path), scale))[1]
             for scale in (1.0, 100.0)}
    assert fixed[1.0] != fixed[100.0]  # PaddleSlim's fixed T0 is another search in percent


def test_harness_at_ci_size(tmp_path, table):
    argv = ["--tables", str(table.path), width_table.SHAPES["3x6"].table.as_posix(), "--seeds", "2", "--n", "5",
            "10", "--jobs", "1", "--out", str(tmp_path)]
    assert strategies.main(argv) == 0
    md = (tmp_path / "strategies.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.split("|")[1].strip()
            in strategies.STRATEGIES]
    # tables × N × (every strategy with rewards × 1, the scaled ones × 100)
    assert len(rows) == 2 * 2 * (len(strategies.STRATEGIES) + len(strategies.SCALED))
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] in ("5", "10") and float(cells[2]) >= 0 and 0 <= float(cells[4]) <= 1
    targets = [line for line in md.splitlines() if line.startswith("| width_table")]
    assert len(targets) == 2 * 2 * 2 and all(line.rstrip(" |").endswith(("yes", "**no**")) for line in targets)
    png = (tmp_path / "strategies.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1200, 450)


@pytest.mark.slow
def test_tune_auto_picks_the_largest_p0_within_one_standard_error(table):
    text, chosen = strategies.tune_auto(table, jobs=1, grid=(0.01, 0.5), seeds=range(1000, 1006))
    assert chosen in (0.01, 0.5) and "**chosen**" in text


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        strategies.main(["--table", str(tmp_path / "missing.csv")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        strategies.main(["--budget", "100"])
    assert e.value.code == 2 and "has at most 100 parameters" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["4x5", "3x6"])
def test_rows_regenerate_from_the_committed_script(shape):
    # Single-threaded, seeded training: exact on the machine that generated the table; the tolerance allows for
    # another CPU's kernels summing in another order.
    assert width_table.main(["--shape", shape, "--check", "0,1,2", "--tolerance", "0.02"]) == 0
