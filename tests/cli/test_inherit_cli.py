"""The inherit evaluation from the CLI: a parent trained into the run directory or given, early stops recorded in the
study, the final model fine-tuned from the parent, and bad parents refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from _configs import inherit_toml
from sanas.cli import main
from sanas.search.chain import CURVE_KEY, STATUS_KEY, STOPPED
from sanas.search.storage import open_storage

TINY = inherit_toml(retain_epoch=1, recipe="stop_checks = 2\n",
                    search='search_steps = {steps}\nmax_params = "1.0x"\nparent_epochs = 2\ninit_temperature = 0.001\n')


def write_config(tmp_path: Path, steps: int = 8) -> Path:
    path = tmp_path / "inherit.toml"
    path.write_text(TINY.format(steps=steps))
    return path


def study_trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="sanas", storage=open_storage(run_dir=run_dir))
    return [t for t in study.get_trials() if "tokens" in t.user_attrs]


@pytest.mark.slow
def test_inherit_search_trains_its_parent_stops_early_and_fine_tunes_the_final_model(tmp_path, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path)
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--progress", "none"]) == 0
    out = capsys.readouterr().out
    assert (run / "parent" / "model.json").is_file() and (run / "parent" / "model.safetensors").is_file()
    parent_info = json.loads((run / "parent" / "model.json").read_text())
    assert len(parent_info["metrics"]) == 2 and parent_info["recipe"]["evaluation"] == "scratch"

    trials = study_trials(run)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8
    assert all(CURVE_KEY in t.user_attrs for t in complete)
    stopped = [t for t in complete if t.system_attrs.get(STATUS_KEY) == STOPPED]
    assert stopped  # this tiny search stops two of its eight candidates at their first check
    records = {json.loads(p.read_text())["trial"]: json.loads(p.read_text())
               for p in (run / "candidates").glob("trial-*.json")}
    for t in complete:
        rec = records[t.number]
        assert rec["stopped"] == (t in stopped)
        assert rec["epochs"] <= 1.0 + 1e-9 and rec["bn_batches"] == 3
        if rec["stopped"]:
            assert rec["reward"] < rec["threshold"] and rec["epochs"] < 1.0
    # No candidate can be stopped before three curves exist to learn the margins from.
    first_three = sorted(complete, key=lambda t: t.datetime_complete)[:3]
    assert not any(t in stopped for t in first_three)
    assert "evaluations finished" in out

    # Final model: fine-tuned from the search's parent, a fraction of a scratch training.
    final = tmp_path / "final"
    assert main(["train", "--run-dir", str(run), "--retain-epoch", "2", "--out", str(final), "--no-onnx",
                 "--progress", "none"]) == 0
    info = json.loads((final / "model.json").read_text())
    assert info["recipe"]["evaluation"] == "inherit" and len(info["metrics"]) == 2 and "parent" in info
    # Without --retain-epoch: half of the parent's training (2 epochs here: 1)
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--out", str(tmp_path / "f2"), "--no-onnx", "--progress", "none"]) == 0
    assert "fine-tuning 1 epochs: 0.5 of the parent's 2" in " ".join(capsys.readouterr().out.split())
    assert len(json.loads((tmp_path / "f2" / "model.json").read_text())["metrics"]) == 1


@pytest.mark.slow
def test_a_given_parent_is_used_and_bad_parents_are_refused_before_anything_is_written(tmp_path, capsys):
    parent = tmp_path / "parent"
    scratch = TINY.format(steps=2).replace('evaluation = "inherit"', "").replace("retain_epoch = 1", "retain_epoch = 2")
    (tmp_path / "scratch.toml").write_text(scratch)
    assert main(["train", "--config", str(tmp_path / "scratch.toml"), "--token", "3", "3", "3", "--out", str(parent),
                 "--no-onnx", "--progress", "none"]) == 0

    config = write_config(tmp_path, steps=2)
    run = tmp_path / "run"
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--parent", str(parent),
                 "--progress", "none", "--no-report"]) == 0
    assert not (run / "parent").exists() and len(study_trials(run)) == 2
    capsys.readouterr()

    bad_cases = [
        (["--parent", str(tmp_path / "nowhere")], "model.json is missing"),
        (["--parent", str(parent), "--num-classes", "7"], "num_classes 10 (parent) vs 7 (child)"),
        (["--parent", str(parent), "--layers", "4"], "layers 3 (parent) vs 4 (child)"),
        (["--retain-epoch", "-1"], "retain_epoch is -1, expected a number of fine-tuning epochs >= 0"),
        # the parent an inherit search trains: refused before the run directory is made (it once held a config
        # that then refused the corrected command as "a different config")
        (["--parent-epochs", "1"], "parent_epochs is 1, expected an integer >= 2"),
        (["--parent-epochs", "-1"], "parent_epochs is -1, expected an integer >= 2"),
    ]
    for extra, message in bad_cases:
        fresh = tmp_path / "fresh"
        code = main(["search", "--config", str(config), "--run-dir", str(fresh), "--progress", "none", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not fresh.exists(), extra

    # A corrupt weights file: one line naming the folder.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((parent / "model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    code = main(["search", "--config", str(config), "--run-dir", str(tmp_path / "fresh"), "--parent", str(broken)])
    err = capsys.readouterr().err
    assert code == 2 and f"parent {broken} cannot be loaded" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fresh").exists()


def test_a_fine_tune_says_when_its_cutout_differs_from_the_parent_s(tmp_path, capsys):
    """A fine-tune from the parent trains without cutout by default; a parent whose model.json says it trained with
    cutout gets one line saying so, naming the flag that fine-tunes it as it was trained — and nothing is said when
    they agree."""
    parent = tmp_path / "parent"
    scratch = TINY.format(steps=2).replace('evaluation = "inherit"', "").replace("retain_epoch = 1", "retain_epoch = 2")
    (tmp_path / "scratch.toml").write_text(scratch.replace("cutout = 0\n", ""))  # scratch: DARTS' 16
    assert main(["train", "--config", str(tmp_path / "scratch.toml"), "--token", "3", "3", "3", "--out", str(parent),
                 "--no-onnx", "--progress", "none"]) == 0
    assert json.loads((parent / "model.json").read_text())["recipe"]["cutout"] == 16
    (tmp_path / "inherit.toml").write_text(TINY.format(steps=2).replace("cutout = 0\n", ""))  # inherit: none
    capsys.readouterr()
    for extra, said in (([], True), (["--cutout", "16"], False)):
        out = tmp_path / f"child{len(extra)}"
        assert main(["train", "--config", str(tmp_path / "inherit.toml"), "--parent", str(parent), "--token", "2", "2",
                     "2", "--retain-epoch", "1", "--out", str(out), "--no-onnx", "--progress", "none", *extra]) == 0
        text = " ".join(capsys.readouterr().out.split())
        note = ("sanas: note: the parent was trained with cutout 16, its fine-tunes use 0 (the default for a "
                "fine-tune from the parent); --cutout 16 fine-tunes it as it was trained")
        assert (note in text) == said, text
        assert json.loads((out / "model.json").read_text())["recipe"]["cutout"] == (16 if extra else 0)
    from types import SimpleNamespace

    from sanas.runs.parent import cutout_note

    assert cutout_note(object(), 0) is None  # a model given with the space records no recipe: nothing to compare
    assert cutout_note(SimpleNamespace(sanas_info={"recipe": {"cutout": 8}}), 8) is None
    assert "trained with cutout 0, its fine-tunes use 16; --cutout 0" in str(
        cutout_note(SimpleNamespace(sanas_info={"recipe": {"cutout": 0}}), 16))
