"""The ModelSpace compression benchmark (benchmarks/compress_models.py): its harness, and the committed numbers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import compress_models as cm  # noqa: E402
from sanas.spaces import ModelSpace  # noqa: E402
from sanas.training import prepare_data  # noqa: E402


def test_the_search_starts_from_the_widest_network_that_fits():
    space = ModelSpace(cm.ResNet20(), example_input=[1, 32, 32], granularity="stage", ratio_step=0.0625)
    budget = int(0.7 * space.count_params(space.init_tokens()))
    tokens = cm.start_tokens(space, budget)
    assert space.count_params(tokens) <= budget
    for i, r in enumerate(space.range_table()):  # no single token can grow any further
        if tokens[i] + 1 < r:
            assert space.count_params([*tokens[:i], tokens[i] + 1, *tokens[i + 1:]]) > budget


def test_pruned_networks_are_fine_tuned_like_sanas_children():
    torch.manual_seed(0)
    parent = cm.MobileNetV2().eval()
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    args = argparse.Namespace(final_epochs=1, final_lr=0.02, bn_batches=2, batch_size=16, stop_checks=2)
    out = cm.finetune(cm.FixedNet(parent), [0], parent, data, 0, args)
    assert out["params"] == cm.params(parent) and out["final_epochs"] == 1.0 and 0 <= out["test_top1"] <= 1


def test_torch_pruning_baseline_fits_the_budget():
    parent = cm.ResNet20().eval()
    budget = int(0.7 * cm.params(parent))
    pruned, ratio = cm.tp_prune(parent, budget, global_pruning=False)
    assert cm.params(pruned) <= budget and 0 < ratio < 0.5 and pruned(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("stem", ["compress_models", "compress_models_0.4"])
def test_committed_results_hold_together(stem):
    results = json.loads((BENCHMARKS / "data" / f"{stem}.json").read_text())
    settings = results["settings"]
    assert results["torch_pruning"] == "1.6.1" and set(results["models"]) == set(cm.MODELS)
    table = (BENCHMARKS / "data" / f"{stem}.md").read_text()
    for name, model in results["models"].items():
        net = cm.MODELS[name]()
        parent = model["parent"]
        assert parent["params"] == cm.params(net) and parent["macs"] == cm.macs(net)
        space = ModelSpace(net, example_input=[1, 32, 32], granularity=settings["granularity"],
                           ratio_step=settings["ratio_step"])
        assert len(model["seeds"]) == 3
        for st in model["seeds"]:
            assert st["budget"] == int(settings["budget_ratio"] * parent["params"])
            for method in cm.METHODS:
                assert st[method]["params"] <= st["budget"] and 0.5 < st[method]["test_top1"] <= 1
            tokens = st["sanas"]["tokens"]
            assert space.count_params(tokens) == st["sanas"]["params"]
            assert space.count_macs(tokens) == st["sanas"]["macs"]
            log = st["search"]["log"]
            assert len(log) == settings["candidates"] and all(r["params"] <= st["budget"] for r in log)
            assert st["sanas"]["search_epochs"] == pytest.approx(sum(r["epochs"] for r in log))
            assert f"{100 * st['sanas']['test_top1']:.2f}" in table
