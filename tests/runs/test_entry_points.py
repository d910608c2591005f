"""A model given as an entry point (``--model module:function``) imports the same way in every process a search
starts: its candidates and finalists (isolated children), ``sanas train`` from another folder, other workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sanas.runs.config import RunConfig
from sanas.runs.isolate import IsolatedRunner

MODULE = textwrap.dedent("""
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = torch.relu(self.b2(self.c2(x)))
            return self.fc(x.mean((2, 3)))


    def trained():
        torch.manual_seed(0)
        return Net()
""")


def overrides(model: str) -> dict:
    return {"space": {"name": "ModelSpace", "model": model},
            "data": {"dataset": "synthetic", "train_size": 60, "test_size": 20},
            "recipe": {"evaluation": "inherit", "retain_epoch": 0.5, "batch_size": 16, "device": "cpu",
                       "bn_batches": 1},
            "search": {"search_steps": 2, "max_params": "0.7x"}}


def count_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder holding the user's model module, the working directory, and not on sys.path."""
    folder = tmp_path / "project"
    folder.mkdir()
    name = f"user_models_{os.getpid()}_{len(list(tmp_path.parent.iterdir()))}"  # a fresh module name per test
    (folder / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(folder)
    yield folder, name
    sys.modules.pop(name, None)
    while str(folder) in sys.path:
        sys.path.remove(str(folder))


def test_the_folder_of_the_model_module_is_recorded_and_used_from_elsewhere(user_folder, tmp_path, monkeypatch):
    folder, name = user_folder
    config = RunConfig.from_sources(overrides=overrides(f"{name}:trained"))
    assert config.space["model_root"] == str(folder.resolve())
    # The same search from another folder (sanas train, status, a worker): the recorded folder is where it imports.
    sys.modules.pop(name)
    sys.path.remove(str(folder.resolve()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = RunConfig.from_dict(config.to_dict())
    assert again.build_space().fingerprint() == config.build_space().fingerprint()
    # The recorded folder is where this machine found it, not what the search is: it never makes a config change.
    moved = RunConfig.from_dict({**config.to_dict(), "space": {**config.space, "model_root": "/elsewhere"}})
    moved.check_matches(config, "run directory r")


def test_a_model_object_from_a_module_in_the_working_directory_reaches_the_candidates_process(user_folder):
    """The bug: the module imported in the main process (its folder added to sys.path for the import, then removed)
    and not in the forkserver child, so every candidate failed with ModuleNotFoundError."""
    _, name = user_folder
    space = RunConfig.from_sources(overrides=overrides(f"{name}:trained")).build_space()
    tokens = space.init_tokens()
    with IsolatedRunner() as runner:
        outcome = runner.run(count_params, space.token2arch(tokens))
    assert outcome.ok and outcome.value == space.count_params(tokens)


def test_a_file_entry_point_imports_by_its_name_so_its_models_pickle(user_folder):
    folder, name = user_folder
    space = RunConfig.from_sources(overrides=overrides(f"{folder / name}.py:trained")).build_space()
    assert type(space.model).__module__ == name
    with IsolatedRunner() as runner:
        assert runner.run(count_params, space.model).value == count_params(space.model)


@pytest.mark.slow
def test_the_sanas_command_searches_and_trains_a_model_module_of_the_working_directory(tmp_path):
    """The README's ModelSpace commands exactly as a user runs them: the installed `sanas` command (whose sys.path
    does not hold the working directory), from the model's folder, then `sanas train` from another folder."""
    sanas = Path(sys.executable).with_name("sanas")
    if not sanas.exists():
        sanas = Path(shutil.which("sanas") or "sanas")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "plain_models.py").write_text(MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SANAS_ISOLATION")}
    search = subprocess.run(
        [str(sanas), "search", "--model", "plain_models:trained", "--dataset", "synthetic", "--max-params", "0.7x",
         "--run-dir", "runs/mine", "--evaluation", "inherit", "--retain-epoch", "0.5", "--search-steps", "2",
         "--train-subset", "60", "--val-subset", "20", "--batch-size", "16", "--device", "cpu", "--bn-batches", "1",
         "--progress", "lines"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "ModuleNotFoundError" not in search.stderr and "crashed" not in search.stderr
    assert "2 of 2 evaluations finished, 0 failed" in search.stdout.replace("\n", " ")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    train = subprocess.run([str(sanas), "train", "--run-dir", str(folder / "runs/mine"), "--retain-epoch", "1",
                            "--no-onnx", "--progress", "none"], cwd=elsewhere, env=env, capture_output=True,
                           text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (folder / "runs/mine/final/model.json").exists()
