"""The replay of every fine-tune without cutout on compress_models' committed searches (benchmarks/no_cutout.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import compress_models as cm  # noqa: E402
import no_cutout as nc  # noqa: E402


def test_every_fine_tune_of_the_benchmark_is_the_product_s_and_trains_without_cutout() -> None:
    """compress_models' final fine-tune (every method's) and sanas' search recipe are the product's inherit
    defaults, which now train without cutout: a replay that kept DARTS' 16 would measure yesterday's product."""
    assert cm.final_recipe(0, 6).cutout == 0
    assert cm.final_recipe(0, 6, "l1").to_dict() == {**cm.final_recipe(0, 6).to_dict(), "importance": "l1"}


def method(top1: float, before: float, epochs: float = 1.0) -> dict:
    return {"test_top1": top1, "before": before, "params": 100, "macs": 1000, "search": {"epochs": epochs},
            "final": {"epochs": 6.0}, "switched": False}


def test_the_table_pairs_each_method_with_itself_before_and_keeps_compress_models_layout(tmp_path: Path) -> None:
    runs, base = tmp_path / "runs", tmp_path / "base"
    for seed, (a1, a2, ours, ctl) in enumerate([(0.900, 0.899, 0.905, 0.910), (0.902, 0.898, 0.908, 0.909),
                                                (0.901, 0.900, 0.906, 0.911)]):
        folder = runs / "resnet20" / "0.7x"
        folder.mkdir(parents=True, exist_ok=True)
        record = {"seed": seed, "tp_uniform": method(a1, a1 - 0.001), "tp_global": method(a2, a2),
                  "sanas": {**method(ours, ours - 0.004, 15.0), "switched": seed == 1},
                  nc.UNIFORM: {**method(0.903, 0.901), "importance": "l1"},
                  f"{nc.UNIFORM}_group_l2": {**method(0.904 + 0.001 * seed, 0.0), "importance": "group_l2"}}
        if seed == 2:  # a criterion not run on every seed has no row
            record[f"{nc.UNIFORM}_bn"] = {**method(0.95, 0.0), "importance": "bn"}
        (folder / f"seed-{seed}.json").write_text(json.dumps(record))
        for where, top1 in ((runs, ctl), (base, ctl - 0.002)):  # a control names no earlier result: the base has it
            (where / "resnet20" / "control").mkdir(parents=True, exist_ok=True)
            (where / "resnet20" / "control" / f"seed-{seed}.json").write_text(json.dumps(
                {"seed": seed, cm.CONTROL: {"test_top1": top1, "params": 100, "macs": 1000}}))
        searched = base / "resnet20" / "0.7x"  # a search run as today's product, read beside the replays
        searched.mkdir(parents=True, exist_ok=True)
        (searched / f"seed-{seed}.json").write_text(json.dumps({"seed": seed, "sanas_group_l2": {
            **method((0.907, 0.909, 0.908)[seed], 0.0, 15.0), "cutout": 0, "importance": "group_l2",
            "candidates": 30}, "sanas_quarter": {  # the ¼-epoch schedule at (g)'s epochs
            **method((0.909, 0.910, 0.911)[seed], 0.0, 14.0), "cutout": 0, "importance": "group_l2",
            "candidates": 18}}))
    (base / "resnet20" / "parent.json").write_text(json.dumps({"test_top1": 0.9101}))
    out = tmp_path / "no_cutout"
    assert nc.main(["--summary", "--budget-ratio", "0.7,0.5", "--runs-dir", str(runs), "--base-runs-dir", str(base),
                    "--out", str(out)]) == 0
    text = out.with_suffix(".md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 0.7× | resnet20 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0,1,2"
    cells = cells[:2] + cells[3:]
    assert cells[3:7] == ["91.00 ± 0.10", "90.10 ± 0.10", "89.90 ± 0.10", "90.63 ± 0.15"]
    assert cells[7] == "+0.53 ± 0.06 (beats)" and cells[9].endswith("(NOT within one std)")  # parent 91.01
    assert cells[10] == "-0.37 ± 0.23 (NOT within one std)" and cells[11] == "3.0×" and cells[13] == "1"
    assert "| 0.7× | resnet20 | +0.20 ± 0.00 | +0.10 ± 0.00 | +0.00 ± 0.00 | +0.40 ± 0.00 |" in text
    assert ("| 0.7× | resnet20 | l1 | 0,1,2 | 90.10 ± 0.10 | 90.30 ± 0.00 | 90.63 ± 0.15 | 100 / 100 | "
            "+0.20 ± 0.10 (beats) | +0.33 ± 0.15 (beats) | 90.10 ± 0.00 |") in text  # (u): channels, widths
    assert ("| 0.7× | resnet20 | group_l2 | 0,1,2 | 90.10 ± 0.10 | 90.50 ± 0.10 | 90.63 ± 0.15 | 100 / 100 | "
            "+0.40 ± 0.10 (beats) | +0.13 ± 0.15 |") in text and "| bn |" not in text
    assert "* 0.7×: not measured yet (1 of 3 networks with three seeds)." in text
    assert ("| 0.7× | resnet20 | (g) | 0,1,2 | 91.01 | 90.10 ± 0.10 | 89.90 ± 0.10 | 90.63 ± 0.15 | 90.80 ± 0.10 | "
            "+0.70 ± 0.00 (beats) | +0.90 ± 0.17 (beats) | +0.17 ± 0.06 (beats) | -0.21 ± 0.10 (NOT within one std) | "
            "100 / 100 | 3.0× |") in text
    assert "(g) against issue 19's targets" in text and "| 0.7× | resnet20 | (q) | 0,1,2 |" in text
    assert ("* 0.7× resnet20: (q) − (g) +0.20 ± 0.10 (beats) points (paired by seed) at 0.95× its total epochs, "
            "with 0.60× its candidates.") in text
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["budgets"]["0.7"]["models"]["resnet20"]["seeds"][1]["sanas_group_l2"]["test_top1"] == 0.909
    # a search that fine-tuned with cutout is not today's product: not read beside the replays
    for seed in range(3):
        path = base / "resnet20" / "0.7x" / f"seed-{seed}.json"
        path.write_text(path.read_text().replace('"cutout": 0', '"cutout": 16'))
    assert nc.main(["--summary", "--budget-ratio", "0.7", "--runs-dir", str(runs), "--base-runs-dir", str(base),
                    "--out", str(out)]) == 0
    assert "| (g) |" not in out.with_suffix(".md").read_text() and "(q) − (g)" not in out.with_suffix(".md").read_text()
    record = json.loads(out.with_suffix(".json").read_text())
    budget = record["budgets"]["0.7"]
    assert budget["settings"]["budget_ratio"] == 0.7 and "0.5" not in record["budgets"]
    assert [s["sanas"]["test_top1"] for s in budget["models"]["resnet20"]["seeds"]] == [0.905, 0.908, 0.906]
    assert budget["models"]["resnet20"]["seeds"][0][cm.CONTROL] == {"test_top1": 0.910, "params": 100, "macs": 1000,
                                                                     "before": 0.908}


def test_bad_budgets_and_models_are_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    import pytest

    for argv, message in ([["--budget-ratio", "0.7,half"], "--budget-ratio is '0.7,half'"],
                          [["--budget-ratio", "1.5"], "--budget-ratio is '1.5', expected comma-separated numbers in "
                                                      "(0, 1]"],
                          [["--models", "resnet21"], "--models resnet21: expected names among"]):
        with pytest.raises(SystemExit) as stop:
            nc.main([*argv, "--runs-dir", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "work").exists()


def budget(ratio: float, results: dict[str, list[tuple[float, float, float]]], parent: float = 0.91) -> dict:
    """A summary's budget payload: per network, (a1, a2, sanas) test top-1 per seed."""
    return {"settings": {"budget_ratio": ratio}, "models": {
        name: {"parent_top1": parent, "seeds": [{"seed": i, "tp_uniform": {"test_top1": a1},
                                                 "tp_global": {"test_top1": a2}, "sanas": {"test_top1": ours}}
                                                for i, (a1, a2, ours) in enumerate(seeds)]}
        for name, seeds in results.items()}}


def test_the_targets_are_judged_only_on_complete_budgets_and_by_the_issue_s_rules() -> None:
    wins = [(0.900, 0.899, 0.905), (0.902, 0.898, 0.908), (0.901, 0.900, 0.906)]
    tie = [(0.900, 0.899, 0.901), (0.902, 0.898, 0.901), (0.901, 0.900, 0.902)]
    beats_one = [(0.900, 0.905, 0.905), (0.902, 0.906, 0.908), (0.901, 0.904, 0.906)]  # (a2) as good as sanas
    lines = nc.target_lines({
        "0.5": budget(0.5, {"resnet20": wins, "mobilenetv2": tie, "vgg11": beats_one}),
        "0.3": budget(0.3, {"resnet20": wins, "mobilenetv2": wins, "vgg11": tie}),
        "0.4": budget(0.4, {"resnet20": wins, "mobilenetv2": wins, "vgg11": wins[:2]}),
        "0.7": budget(0.7, {"resnet20": wins, "mobilenetv2": tie, "vgg11": wins}, parent=0.9061)}, 3)
    text = "\n".join(lines)
    assert ("* 0.5×: (c+s) beats both Torch-Pruning methods by more than one std on 1 of 3 networks (resnet20; "
            "target 2) — NOT met.") in text
    assert "* 0.3×: (c+s) beats both Torch-Pruning methods by more than one std on 2 of 3 networks (resnet20, " \
           "mobilenetv2; target 2) — met." in text
    assert "* 0.4×: not measured yet (2 of 3 networks with three seeds)." in text
    # 0.7×: within one std of the parent (0.9061) on every network; mobilenetv2's 90.13 ± 0.06 is not
    assert ("* 0.7×: (c+s) within one std of the parent on 2 of 3 networks (resnet20, vgg11; target 3) — NOT met."
            in text)
    # Another method is judged on its own results, and only where every network has three seeds of it
    searched = budget(0.5, {"resnet20": tie, "mobilenetv2": wins, "vgg11": wins})
    for name, model in searched["models"].items():
        for seed, row in zip(model["seeds"], {"resnet20": wins, "mobilenetv2": tie, "vgg11": wins}[name], strict=True):
            seed["sanas_group_l2"] = {"test_top1": row[2]}
    text = "\n".join(nc.target_lines({"0.5": searched}, 3, "sanas_group_l2", "(g)"))
    assert ("* 0.5×: (g) beats both Torch-Pruning methods by more than one std on 2 of 3 networks (resnet20, vgg11; "
            "target 2) — met.") in text
    del searched["models"]["vgg11"]["seeds"][2]["sanas_group_l2"]
    text = "\n".join(nc.target_lines({"0.5": searched}, 3, "sanas_group_l2", "(g)"))
    assert "* 0.5×: not measured yet (2 of 3 networks with three seeds)." in text


def test_sanas_uniform_child_fills_the_budget_and_pairs_only_with_the_same_child_run_before(
        tmp_path: Path, monkeypatch) -> None:
    """(u) is criterion_widths' child (one ratio on its 1/32 grid, the search's criterion) through the final
    fine-tune; its 'before' is criterion_widths' record only where that fine-tuned the same widths; a finished (u) is
    not trained again."""
    import argparse

    import torch

    import criterion_widths as cw
    from harness import Record
    from sanas.spaces import ModelSpace, uniform_tokens

    torch.manual_seed(0)
    parent = cm.MODELS["resnet20"]().eval()
    budget = int(0.5 * cm.params(parent))
    calls = []

    def finetune(space, tokens, parent, data, seed, epochs, work, importance):
        calls.append((tuple(tokens), seed, epochs, importance))
        return {"test_top1": 0.9, "params": space.count_params(tokens)}

    monkeypatch.setattr(cm, "finetune", finetune)
    monkeypatch.setattr(cw, "RUNS_DIR", tmp_path / "cw")
    fine = uniform_tokens(ModelSpace(parent, example_input=[1, 32, 32], ratio_step=1 / 32), budget)
    for seed, tokens in ((0, fine), (1, [0] * len(fine))):
        (tmp_path / "cw" / "resnet20" / "0.5x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "cw" / "resnet20" / "0.5x" / f"seed-{seed}.json").write_text(json.dumps(
            {"seed": seed, "u_l1": {"tokens": tokens, "test_top1": 0.89}}))
    args = argparse.Namespace(method="sanas_l1", work_dir=tmp_path / "work")
    base = {"budget": budget, "sanas_l1": {"importance": "l1"}}
    for seed in (0, 1, 0):
        record = Record(tmp_path / "runs" / f"seed-{seed}.json", seed)
        nc.uniform("resnet20", 0.5, seed, parent, {"epochs": 24}, None, base, record, args)
    assert calls == [(tuple(fine), 0, 6, "l1"), (tuple(fine), 1, 6, "l1")]  # seed 0 once
    first, second = (json.loads((tmp_path / "runs" / f"seed-{s}.json").read_text())[nc.UNIFORM] for s in (0, 1))
    assert 0.9 * budget <= first["params"] <= budget and first["tokens"] == fine and first["importance"] == "l1"
    assert first["before"] == 0.89 and "before" not in second
    calls.clear()  # another criterion is another child, under its own key; the search's own one is not redone
    args.uniform_importance = ["l1", "group_l2"]
    record = Record(tmp_path / "runs" / "seed-0.json", 0)
    nc.uniform("resnet20", 0.5, 0, parent, {"epochs": 24}, None, base, record, args)
    assert calls == [(tuple(fine), 0, 6, "group_l2")]
    other = json.loads((tmp_path / "runs" / "seed-0.json").read_text())[f"{nc.UNIFORM}_group_l2"]
    assert other["importance"] == "group_l2" and other["tokens"] == fine and "before" not in other
    assert nc.importances("group_l2,l1") == ["group_l2", "l1"]
    with pytest.raises(argparse.ArgumentTypeError, match="'l3': expected criteria among bn, l1, group_l2"):
        nc.importances("l3")
