"""compress_models' comparison with today's final fine-tune (benchmarks/final_today.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import compress_models as cm  # noqa: E402
import final_today as ft  # noqa: E402


def result(top1: float, params: int = 100, search_epochs: float = 0.0) -> dict[str, Any]:
    return {"test_top1": top1, "params": params, "macs": 1000, "search": {"epochs": search_epochs, "seconds": 1.0},
            "final": {"epochs": 6.0, "seconds": 1.0}}


def committed(folder: Path, seed: int, g: float = 0.905, cutout: int = 0, key: str = ft.SEARCH,
              **settings: Any) -> None:
    """compress_models' record of one seed: both Torch-Pruning children and a search of (g) under ``key``."""
    folder.mkdir(parents=True, exist_ok=True)
    search = {**result(g, 90, 15.0), "cutout": cutout, "tokens": [3, 4], "importance": "group_l2",
              "granularity": "group", "candidates": 30, "finalist_start": True, **settings}
    (folder / f"seed-{seed}.json").write_text(json.dumps(
        {"seed": seed, "budget": 95, "tp_uniform": result(0.90, 94), "tp_global": result(0.89, 93), key: search}))


class Space(dict):
    """ModelSpace's stand-in: the settings it was built with, and a child of ``params`` parameters."""

    params = 90

    def inherit(self, parent, tokens, importance):
        return nn.Linear(self.params - 1, 1)


def args_for(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(base_runs_dir=tmp_path / "base", before_runs_dir=tmp_path / "before",
                           runs_dir=tmp_path / "runs", work_dir=tmp_path / "work")


def test_each_method_gets_today_s_fine_tune_of_the_committed_child_and_keeps_its_search_s_cost(
        tmp_path: Path, monkeypatch) -> None:
    """(g)'s committed tokens, criterion and granularity are fine-tuned half the parent's epochs (12 of 24, not the
    committed 6); its record keeps the committed search's cost and the 6-epoch result as 'before'; Torch-Pruning's
    children must reproduce the committed parameters and pair with no_cutout's 6-epoch result."""
    calls: list[tuple[Any, ...]] = []

    def finetune(space, tokens, parent, data, seed, epochs, work, importance=None, committed_params=None, label=""):
        calls.append(("sanas", space, tokens, epochs, importance, committed_params))
        return result(0.912, 90)

    def tp_finetuned(parent, budget, global_pruning, data, seed, epochs, work, committed_params, label):
        calls.append(("tp", global_pruning, epochs, committed_params))
        return result(0.901, committed_params)

    monkeypatch.setattr(cm, "finetune", finetune)
    monkeypatch.setattr(cm, "tp_finetuned", tp_finetuned)
    monkeypatch.setattr(ft, "ModelSpace", lambda parent, **kw: Space(kw))
    args = args_for(tmp_path)
    committed(args.base_runs_dir / "resnet20" / "0.7x", 1)
    before = args.before_runs_dir / "resnet20" / "0.7x"
    before.mkdir(parents=True)
    (before / "seed-1.json").write_text(json.dumps({"seed": 1, "tp_uniform": result(0.897, 94)}))
    for method in ft.METHODS:
        if method != cm.CONTROL:
            ft.run("resnet20", 0.7, 1, method, None, {"epochs": 24}, None, args)
    record = json.loads((args.runs_dir / "resnet20" / "0.7x" / "seed-1.json").read_text())
    assert record["final_epochs"] == 12 and record["budget"] == 95
    assert calls[0] == ("sanas", {"example_input": [1, 32, 32], "granularity": "group"}, [3, 4], 12, "group_l2", 90)
    assert calls[1:] == [("tp", False, 12, 94), ("tp", True, 12, 93)]
    g = record[ft.SEARCH]
    assert g["before"] == 0.905 and g["search"]["epochs"] == 15.0 and g["tokens"] == [3, 4] and g["test_top1"] == 0.912
    assert record["tp_uniform"]["before"] == 0.897 and "before" not in record["tp_global"]  # no_cutout has none
    ft.run("resnet20", 0.7, 1, ft.SEARCH, None, {"epochs": 24}, None, args)  # done: nothing runs again
    assert len(calls) == 3


def test_a_child_that_does_not_match_the_committed_one_stops_and_a_search_with_cutout_is_skipped(
        tmp_path: Path, monkeypatch, capsys) -> None:
    fine_tunes: list[Any] = []  # compress_models.finetune checks the child, then trains
    monkeypatch.setattr(cm, "train_final", lambda *a, **k: fine_tunes.append(a))
    monkeypatch.setattr(Space, "params", 91)  # one parameter more than committed
    monkeypatch.setattr(ft, "ModelSpace", lambda parent, **kw: Space(kw))
    args = args_for(tmp_path)
    committed(args.base_runs_dir / "resnet20" / "0.7x", 0)
    with pytest.raises(RuntimeError, match="the child has 91 params, committed 90"):
        ft.run("resnet20", 0.7, 0, ft.SEARCH, None, {"epochs": 24}, None, args)
    record = json.loads((args.runs_dir / "resnet20" / "0.7x" / "seed-0.json").read_text()) \
        if (args.runs_dir / "resnet20" / "0.7x" / "seed-0.json").exists() else {}
    assert ft.SEARCH not in record and not fine_tunes  # stopped before the fine-tune
    committed(args.base_runs_dir / "resnet20" / "0.5x", 0, cutout=16)  # an older search: not today's product
    ft.run("resnet20", 0.5, 0, ft.SEARCH, None, {"epochs": 24}, None, args)
    assert "no finished search of sanas_group_l2 without cutout" in capsys.readouterr().out
    assert not (args.runs_dir / "resnet20" / "0.5x").exists()


def test_a_run_since_today_s_defaults_takes_b_as_the_search_when_it_ran_with_them(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """Records made since today's defaults: (b) is the search of (g) where its record names the same settings, so
    ``--variants sanas_group_l2`` need not run it twice; a (b) with another criterion or granularity is not."""
    tokens: list[Any] = []
    monkeypatch.setattr(cm, "finetune", lambda space, toks, *a, **k: tokens.append(toks) or result(0.91, 90))
    monkeypatch.setattr(ft, "ModelSpace", lambda parent, **kw: Space(kw))
    args = args_for(tmp_path)
    committed(args.base_runs_dir / "resnet20" / "0.3x", 2, key="sanas", g=0.899)
    ft.run("resnet20", 0.3, 2, ft.SEARCH, None, {"epochs": 24}, None, args)
    record = json.loads((args.runs_dir / "resnet20" / "0.3x" / "seed-2.json").read_text())
    assert tokens == [[3, 4]] and record[ft.SEARCH]["before"] == 0.899 and record[ft.SEARCH]["importance"] == "group_l2"
    for changed in ({"importance": "bn"}, {"granularity": "stage"}, {"finalist_start": False}, {"cutout": 16}):
        committed(args.base_runs_dir / "resnet20" / "0.5x", 2, key="sanas", **changed)
        ft.run("resnet20", 0.5, 2, ft.SEARCH, None, {"epochs": 24}, None, args)
        assert "no finished search of sanas_group_l2 without cutout" in capsys.readouterr().out
    assert len(tokens) == 1 and not (args.runs_dir / "resnet20" / "0.5x").exists()


def write(folder: Path, seed: int, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{seed}.json").write_text(json.dumps({"seed": seed, "final_epochs": 12, **record}))


def test_the_table_judges_0_7_on_sanas_alone_and_waits_for_the_baselines_below(tmp_path: Path) -> None:
    """0.7× is judged against the parent as soon as (g) has three seeds on every network; below, the targets need
    both Torch-Pruning methods, and a column a seed lacks reads —."""
    runs, base = tmp_path / "runs", tmp_path / "base"
    for name, parent in (("resnet20", 0.9101), ("mobilenetv2", 0.9053), ("vgg11", 0.9041)):
        (base / name).mkdir(parents=True)
        (base / name / "parent.json").write_text(json.dumps({"test_top1": parent}))
        for seed in range(3):
            g = parent + (-0.0005, 0.0005, 0.0)[seed] - (0.004 if name == "vgg11" else 0.0)  # vgg11 misses
            write(runs / name / "0.7x", seed, {ft.SEARCH: {**result(g, 90, 15.0), "before": g - 0.002}})
            write(runs / name / "0.5x", seed, {ft.SEARCH: result(g)})
    for seed in range(2):  # resnet20's baselines on two seeds only: their columns wait for the third
        write(runs / "resnet20" / "0.7x", seed, {ft.SEARCH: {**result(0.911, 90, 15.0), "before": 0.909},
                                                 "tp_uniform": {**result(0.905), "before": 0.904}})
    write(runs / "resnet20" / "control", 0, {cm.CONTROL: result(0.912)})
    out = tmp_path / "final_today"
    assert ft.main(["--summary", "--budget-ratio", "0.7,0.5", "--runs-dir", str(runs), "--base-runs-dir", str(base),
                    "--retrained", str(tmp_path / "none"), "--out", str(out)]) == 0
    text = out.with_suffix(".md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 0.7× | resnet20 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:5] == ["0,1,2", "12", "91.01"]
    assert cells[5:8] == ["—", "—", "—"]  # (p) on one seed, (a1) on two, (a2) on none
    assert "* 0.7×: (g) within one std of the parent on 2 of 3 networks (resnet20, mobilenetv2; target 3) — NOT met." \
        in text
    assert "* 0.5×: not measured yet (0 of 3 networks with three seeds)." in text
    gains = [line for line in text.splitlines() if line.startswith("| 0.7× | resnet20 |")][-1]  # its own table
    assert gains.split("|")[3].strip() == "+0.20 ± 0.00"  # (g): 91.1 against 90.9, on all three seeds
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["budgets"]["0.7"]["models"]["vgg11"]["seeds"][0][ft.SEARCH]["test_top1"] < 0.90


def test_a_network_measured_on_a_retrained_parent_shows_beside_and_counts_where_the_committed_one_lacks_seeds(
        tmp_path: Path) -> None:
    """A parent retrained on another machine is another parent: its network's row stands beside the committed
    parent's, named so, and the targets judge the network on it only where the committed parent's runs lack three
    seeds — never twice."""
    runs, base, second = tmp_path / "runs", tmp_path / "base", tmp_path / "second"
    parents = {"resnet20": 0.9101, "mobilenetv2": 0.9053, "vgg11": 0.9041}
    for name, parent in parents.items():
        (base / name).mkdir(parents=True)
        (base / name / "parent.json").write_text(json.dumps({"test_top1": parent}))
        for seed in range(1 if name == "resnet20" else 3):  # resnet20: one seed on the committed parent
            g = parent + (-0.0005, 0.0005, 0.0)[seed] - (0.004 if name == "vgg11" else 0.0)  # vgg11 loses
            write(runs / name / "0.3x", seed, {ft.SEARCH: result(g), "tp_uniform": result(g - 0.002),
                                               "tp_global": result(g - 0.003 + (0.006 if name == "vgg11" else 0))})
    (second / "compress_models_runs" / "resnet20").mkdir(parents=True)
    (second / "compress_models_runs" / "resnet20" / "parent.json").write_text(json.dumps({"test_top1": 0.9117}))

    def judged(seeds: int) -> str:
        for seed in range(seeds):
            g = 0.9117 + (-0.0005, 0.0005, 0.0)[seed]
            write(second / "final_today_runs" / "resnet20" / "0.3x", seed,
                  {ft.SEARCH: result(g), "tp_uniform": result(g - 0.002), "tp_global": result(g - 0.003)})
        out = tmp_path / "final_today"
        assert ft.main(["--summary", "--budget-ratio", "0.3", "--runs-dir", str(runs), "--base-runs-dir", str(base),
                        "--retrained", str(second), "--out", str(out)]) == 0
        return out.with_suffix(".md").read_text()

    text = judged(2)  # two seeds on the retrained parent: neither row has three, nothing judged
    assert "| 0.3× | resnet20 | 0 | 12 | 91.01 |" in text
    assert "| 0.3× | resnet20 (retrained parent) | 0,1 | 12 | 91.17 |" in text
    assert "* 0.3×: not measured yet (2 of 3 networks with three seeds)." in text
    text = judged(3)
    assert "* 0.3×: (g) beats both Torch-Pruning methods by more than one std on 2 of 3 networks " \
        "(resnet20 (retrained parent), mobilenetv2; target 2) — met." in text
    row = next(line for line in text.splitlines() if line.startswith("| 0.3× | resnet20 (retrained parent) |"))
    assert row.split("|")[10].strip() == "+0.20 ± 0.00 (beats)"  # (g) − (a1), against its own parent's baselines
    payload = json.loads((tmp_path / "final_today.json").read_text())["budgets"]["0.3"]["models"]
    assert sorted(payload) == ["mobilenetv2", "resnet20 (retrained parent)", "vgg11"]
    # three seeds on the committed parent too: it judges the network, the retrained row only stands beside
    for seed in (1, 2):
        write(runs / "resnet20" / "0.3x", seed, {ft.SEARCH: result(0.9101), "tp_uniform": result(0.9101),
                                                 "tp_global": result(0.9101)})
    text = judged(3)
    assert "| 0.3× | resnet20 (retrained parent) |" in text
    assert "on 1 of 3 networks (mobilenetv2; target 2) — NOT met." in text
    # the retrained parent's own table: its rows once, under the network's name
    assert ft.main(["--summary", "--budget-ratio", "0.3", "--runs-dir", str(second / "final_today_runs"),
                    "--base-runs-dir", str(second / "compress_models_runs"), "--retrained", str(second),
                    "--out", str(tmp_path / "own")]) == 0
    rows = [line for line in (tmp_path / "own.md").read_text().splitlines() if line.startswith("| 0.3× |")]
    assert rows[0].startswith("| 0.3× | resnet20 | 0,1,2 | 12 | 91.17 |") and "retrained" not in "".join(rows)


def test_bad_methods_are_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        ft.main(["--methods", "sanas_group_l2,tp_unifrom", "--runs-dir", str(tmp_path / "runs")])
    assert stop.value.code == 2
    assert "'sanas_group_l2,tp_unifrom': expected methods among sanas_group_l2" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_committed_runs_fine_tuned_today_s_length() -> None:
    """Every committed record here ran the product's default fine-tune for its parent (half its epochs), not the
    quarter of compress_models' tables that it is compared with."""
    from sanas.training.final import final_epochs

    second = BENCHMARKS / "data" / "second_parent"  # a parent retrained on another machine, its records apart
    for runs, base in ((ft.RUNS_DIR, cm.RUNS_DIR), (second / "final_today_runs", second / "compress_models_runs")):
        for path in sorted(runs.glob("*/*/seed-*.json")):
            parent = json.loads((base / path.parents[1].name / "parent.json").read_text())
            assert json.loads(path.read_text())["final_epochs"] == final_epochs(parent["epochs"]) == 12, path
