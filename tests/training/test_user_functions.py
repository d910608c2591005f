"""The user's own evaluate(model) and finetune(model, epochs) in place of sanas' (Recipe.evaluate, .finetune)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from sanas import get_space
from sanas.runs.config import RunConfig
from sanas.runs.worker import run_worker
from sanas.training import Recipe, evaluate_candidate, prepare_data, train_final
from sanas.training.user import UserFunctions

CALLS: list[tuple[str, float]] = []


def constant(model: torch.nn.Module) -> float:
    CALLS.append(("evaluate", model.training))
    return 0.42


def train_a_little(model: torch.nn.Module, epochs: float) -> None:
    CALLS.append(("finetune", epochs))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.99)


@pytest.fixture
def setting():
    CALLS.clear()
    space = get_space("PlainCNNSpace", layers=3, filter_num=[4, 8], in_channels=1)
    data = prepare_data("synthetic", train_size=48, test_size=16, channels=1)
    return space, data, space.token2arch(space.init_tokens())


@pytest.mark.parametrize("evaluation", ["scratch", "inherit"])
def test_evaluate_is_the_reward_and_finetune_trains_in_place_of_sanas(setting, evaluation):
    space, data, parent = setting
    recipe = Recipe(evaluation=evaluation, retain_epoch=2, batch_size=16, device="cpu", evaluate=constant,
                    finetune=train_a_little)
    result = evaluate_candidate([0, 1, 0], space, data, recipe, progress="none",
                                parent=parent if evaluation == "inherit" else None)
    assert result.ok and result.reward == 0.42
    assert CALLS == [("finetune", 2), ("evaluate", False)]  # evaluated in eval mode
    assert result.metrics == [] and result.epochs == 2.0  # sanas' own loop did not run


def test_evaluate_alone_scores_after_sanas_own_training(setting):
    space, data, parent = setting
    recipe = Recipe(evaluation="inherit", retain_epoch=1, batch_size=16, device="cpu", evaluate=constant)
    result = evaluate_candidate([0, 1, 0], space, data, recipe, progress="none", parent=parent)
    assert result.ok and result.reward == 0.42 and result.metrics and result.epochs == 1.0
    assert all(score == 0.42 for _, score in result.curve)  # the early stop's checks use the same score


def nan(model):
    return math.nan


def text(model):
    return "0.9"


def broken(model):
    raise KeyError("val_loader")


@pytest.mark.parametrize(("evaluate", "reason"), [
    (nan, r"evaluate '.*:nan' returned nan \(float\), expected a finite number \(higher is better\)"),
    (text, r"evaluate '.*:text' returned '0.9' \(str\), expected a finite number \(higher is better\)"),
    (broken, r"evaluate '.*:broken' raised KeyError: 'val_loader' \(at test_user_functions.py:\d+\)"),
])
def test_a_bad_evaluate_fails_the_candidate_with_the_reason(setting, evaluate, reason):
    space, data, parent = setting
    recipe = Recipe(evaluation="inherit", retain_epoch=0, batch_size=16, device="cpu", evaluate=evaluate)
    result = evaluate_candidate([0, 1, 0], space, data, recipe, progress="none", parent=parent)
    assert not result.ok and result.reward is None
    assert re.fullmatch(reason, result.reason), result.reason


def test_entry_points_resolve_and_bad_ones_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "my_loop_xyz.py").write_text("def evaluate(model):\n    return 1.5\n")
    monkeypatch.chdir(tmp_path)
    assert UserFunctions.of("my_loop_xyz:evaluate", None).reward(torch.nn.Linear(1, 1)) == 1.5
    with pytest.raises(ValueError, match="--finetune 'my_loop_xyz:missing': my_loop_xyz has no function 'missing'"):
        UserFunctions.of(None, "my_loop_xyz:missing")
    with pytest.raises(ValueError, match="evaluate is 'my_loop_xyz', expected a function or an entry point"):
        Recipe(evaluate="my_loop_xyz")
    assert Recipe(evaluate=constant).to_dict()["evaluate"] == f"{__name__}:constant"


def test_the_final_model_is_trained_by_finetune_and_scored_by_evaluate(setting, tmp_path):
    space, data, _ = setting
    result = train_final(space.init_tokens(), space, data, Recipe(retain_epoch=3, batch_size=16, device="cpu",
                                                                   evaluate=constant, finetune=train_a_little),
                         tmp_path / "final", progress="none", onnx=False)
    assert CALLS == [("finetune", 3), ("evaluate", False)] and result.metrics == []
    assert json.loads((tmp_path / "final" / "model.json").read_text())["evaluate"] == 0.42


@pytest.mark.slow
def test_a_search_with_an_evaluate_entry_point_that_fails_once_goes_on(tmp_path, monkeypatch):
    """From the config, as `--evaluate my_eval:score` records it: the entry point imports in every candidate's
    process; the candidate whose evaluation raises fails with the reason and the search finishes."""
    (tmp_path / "my_eval_xyz.py").write_text(
        "from pathlib import Path\n\n"
        "def score(model):\n"
        "    marker = Path(__file__).with_name('failed-once')\n"
        "    if not marker.exists():\n"
        "        marker.write_text('x')\n"
        "        raise RuntimeError('validation set not mounted')\n"
        "    return float(sum(p.numel() for p in model.parameters())) / 1e4\n")
    monkeypatch.chdir(tmp_path)
    config = RunConfig.from_sources(overrides={
        "space": {"name": "PlainCNNSpace", "layers": 3, "filter_num": [4, 8], "in_channels": 1},
        "data": {"dataset": "synthetic", "train_size": 48, "test_size": 16, "channels": 1},
        "recipe": {"retain_epoch": 2, "batch_size": 16, "device": "cpu", "evaluate": "my_eval_xyz:score"},
        "search": {"search_steps": 3, "max_params": "4x"}})
    summary = run_worker(config, tmp_path / "run", progress="none")
    assert summary.evaluated == 3 and summary.failed == 1
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "candidates").glob("*.json"))]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"].startswith(
        "evaluate 'my_eval_xyz:score' raised RuntimeError: validation set not mounted (at my_eval_xyz.py:7)")
