"""Finalists: the search screens cheaply, then fine-tunes its few best and chooses among them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from _configs import inherit_toml
from sanas.cli import main
from sanas.runs.config import RunConfig, check_finalists
from sanas.runs.finalists import FINALISTS_FILE, chosen, describe, pick_finalists, run_finalists
from sanas.search.chain import STATUS_KEY, STOPPED, TOKENS_KEY
from sanas.spaces import uniform_tokens


def trial(number: int, tokens: list[int], reward: float, stopped: bool = False) -> optuna.trial.FrozenTrial:
    t = create_trial(state=TrialState.COMPLETE, value=reward, params={"t0": tokens[0]},
                     distributions={"t0": IntDistribution(0, 9)}, user_attrs={TOKENS_KEY: tokens},
                     system_attrs={STATUS_KEY: STOPPED} if stopped else {})
    t.number = number
    t.datetime_complete = datetime(2026, 1, 1) + timedelta(seconds=number)
    return t


def test_finalists_are_the_best_distinct_unstopped_evaluations_in_reward_order() -> None:
    trials = [trial(0, [5], 0.70), trial(1, [4], 0.80), trial(2, [3], 0.95, stopped=True), trial(3, [2], 0.80),
              trial(4, [1], 0.60)]
    picked = pick_finalists(trials, 3)
    assert [f["trial"] for f in picked] == [1, 3, 0]  # 0.80 (earlier first), 0.80, 0.70; the stopped 0.95 is partial
    assert picked[0] == {"trial": 1, "tokens": [4], "screen_reward": 0.80}
    assert len(pick_finalists(trials, 10)) == 4


def test_the_search_s_start_is_a_finalist_whatever_its_screening_reward() -> None:
    """At 0.3x the screening reward led ResNet-20's chain to candidates that fine-tuned 3 points below its start;
    with the start among the finalists the search can no longer choose below it."""
    trials = [trial(0, [5], 0.10), trial(1, [4], 0.80), trial(2, [3], 0.90), trial(3, [2], 0.70)]
    picked = pick_finalists(trials, 2)
    assert [f["trial"] for f in picked] == [2, 1, 0]  # the two best, then the start
    assert picked[-1] == {"trial": 0, "tokens": [5], "screen_reward": 0.10, "start": True}
    assert not any(f.get("start") for f in picked[:2])
    assert [f["trial"] for f in pick_finalists(trials, 2, start=False)] == [2, 1]  # PaddleSlim-like: the best only
    among = pick_finalists(trials, 4)  # the start is among the best: marked, not repeated
    assert [f["trial"] for f in among] == [2, 1, 3, 0] and among[3]["start"] and len(among) == 4
    assert pick_finalists(trials, 0) == []  # no finalists stage, no start either
    # a start the search stopped early is still the start: it is fine-tuned anew as a finalist
    stopped = [trial(0, [5], 0.95, stopped=True), *trials[1:]]
    assert [(f["trial"], f.get("start", False)) for f in pick_finalists(stopped, 1)] == [(2, False), (0, True)]
    assert describe(picked, 2, 4) == "the 2 best of 4 screened candidates and the search's start"
    assert describe(among, 4) == "the 4 best screened candidates (the search's start among them)"
    assert describe(pick_finalists(trials, 2, start=False), 2) == "the 2 best screened candidates"


def test_a_finished_stage_from_before_the_start_setting_is_not_trained_again(tmp_path: Path) -> None:
    """A run saved before ``finalist_start`` loads with it off, and its finished finalists keep their settings: a
    rerun trains nothing (here it could not: there is no space, data or parent to train with)."""
    from sanas.training import Recipe

    recipe = Recipe(evaluation="inherit", device="cpu")
    trials = [trial(0, [5], 0.10), trial(1, [4], 0.80)]
    record = {"settings": {"count": 1, "epochs": 1.0, "recipe": {k: v for k, v in recipe.to_dict().items()
                                                                  if k not in ("device", "compile")}},
              "finalists": [{"trial": 1, "tokens": [4], "screen_reward": 0.8, "reward": 0.85, "done": True}]}
    record["settings"]["recipe"]["retain_epoch"], record["settings"]["recipe"]["early_stop"] = 1.0, False
    (tmp_path / FINALISTS_FILE).write_text(json.dumps(record))
    assert run_finalists(tmp_path, None, None, recipe, None, trials, 1, 1.0, progress="none", start=False) == record
    with pytest.raises(ValueError, match="finalist_start is 'yes', expected true or false"):
        run_finalists(tmp_path, None, None, recipe, None, trials, 1, 1.0, progress="none", start="yes")


def test_the_choice_waits_for_every_finalist_and_skips_failed_ones() -> None:
    record = {"settings": {"epochs": 1.0}, "finalists": [
        {"trial": 1, "tokens": [4], "screen_reward": 0.8, "reward": 0.81, "done": True},
        {"trial": 3, "tokens": [2], "screen_reward": 0.8, "reward": None}]}
    assert chosen(record) is None
    record["finalists"][1].update(reward=0.84, done=True)
    assert chosen(record)["trial"] == 3
    record["finalists"][1].update(reward=None, failed="out of memory")
    assert chosen(record)["trial"] == 1
    assert chosen(None) is None and chosen({"finalists": []}) is None


@pytest.mark.parametrize(("count", "epochs", "message"), [(-1, 1.0, "finalists is -1"), (2.5, 1.0, "finalists is 2.5"),
                                                         (2, 0, "finalist_epochs is 0"),
                                                         (2, float("inf"), "finalist_epochs is inf")])
def test_bad_finalist_settings_name_the_value(count: object, epochs: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_finalists(count, epochs)


TINY = inherit_toml(retain_epoch=0, search='search_steps = 6\nmax_params = "0.8x"\nparent_epochs = 2\nfinalists = 2\n'
                                          'finalist_epochs = 0.5\n')


@pytest.mark.slow
def test_a_search_screens_then_fine_tunes_its_finalists_and_train_takes_the_chosen_one(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    (tmp_path / "c.toml").write_text(TINY)
    search = ["search", "--config", str(tmp_path / "c.toml"), "--run-dir", str(run), "--progress", "none"]
    assert main(search) == 0
    record = json.loads((run / FINALISTS_FILE).read_text())
    candidates = [json.loads(p.read_text()) for p in (run / "candidates").glob("trial-*.json")]
    assert len(candidates) == 6 and all(c["epochs"] == 0 for c in candidates)  # screening: BatchNorm only
    best_two = [c["trial"] for c in sorted(candidates, key=lambda c: (-c["reward"], c["trial"]))[:2]]
    # the two best screened, and the search's start (trial 0) where it is not one of them
    assert [f["trial"] for f in record["finalists"]] == best_two + ([] if 0 in best_two else [0])
    assert [f["trial"] for f in record["finalists"] if f.get("start")] == [0]
    assert all(f["done"] and f["epochs"] == pytest.approx(0.5, abs=0.07) for f in record["finalists"])
    pick = max(record["finalists"], key=lambda f: f["reward"])
    report = (run / "report" / "report.md").read_text()
    assert "## Finalists" in report and f"Chosen: trial {pick['trial']}" in report
    assert "and the search's start" in report or "the search's start among them" in report
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    assert f"Chosen: trial {pick['trial']}" in " ".join(capsys.readouterr().out.split())
    capsys.readouterr()

    # a rerun trains no finalist again
    before = (run / FINALISTS_FILE).read_text()
    assert main(search) == 0
    assert (run / FINALISTS_FILE).read_text() == before

    # an interrupted stage resumes: the finished finalist is kept, the other is trained
    record["finalists"][1] = {k: record["finalists"][1][k] for k in ("trial", "tokens", "screen_reward")}
    (run / FINALISTS_FILE).write_text(json.dumps(record))
    assert main(search) == 0
    again = json.loads((run / FINALISTS_FILE).read_text())
    assert again["finalists"][0] == record["finalists"][0] and again["finalists"][1]["done"]

    # the uniform-width child at the same budget, then the chosen one, compared with it
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--uniform", "--retain-epoch", "1", "--no-onnx",
                 "--progress", "none"]) == 0
    uniform = json.loads((run / "uniform" / "model.json").read_text())
    space = RunConfig.load(run).build_space()
    assert uniform["tokens"] == uniform_tokens(space, RunConfig.load(run).budget(space))
    assert "training the uniform-width child" in " ".join(capsys.readouterr().out.split())
    assert main(["train", "--run-dir", str(run), "--retain-epoch", "1", "--no-onnx", "--progress", "none"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "vs the uniform-width child at the same budget: test top-1" in out
    assert f"({100 * uniform['test']['top1']:.2f} %)" in out
    pick = max(again["finalists"], key=lambda f: f["reward"])
    assert f"chosen candidate (the best of its finalists): tokens {' '.join(str(pick['tokens']).split())}" in out
    assert json.loads((run / "final" / "model.json").read_text())["tokens"] == pick["tokens"]


def test_finalists_need_a_finished_search(tmp_path: Path) -> None:
    from sanas.runs.config import RunConfig
    from sanas.runs.finalists import finalists_stage

    config = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "recipe": {"evaluation": "scratch"}})
    assert finalists_stage(config, tmp_path) is None  # scratch searches have no finalists stage
