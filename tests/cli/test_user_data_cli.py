"""A user's own model, data and loop through the CLI, as the README's "Compress your own model" runs them: a folder
of 64×64 PNG images, a model module, the search at 0.5×, the chosen child and the uniform child trained, both
exported at 64×64; the user's evaluate as the reward."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from sanas.cli import main

MODEL = textwrap.dedent("""
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16)
            self.c2, self.b2 = nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32)
            self.fc = nn.Linear(32, 3)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = torch.relu(self.b2(self.c2(x)))
            return self.fc(x.mean((2, 3)))


    def trained():
        torch.manual_seed(0)
        return Net()


    def params_score(model):
        return sum(p.numel() for p in model.parameters()) / 1e5
""")


def write_images(root, per_class: int = 12) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(["circle", "square", "stripe"]):
        for split, count in (("train", per_class), ("test", 4)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (64, 64, 3), dtype=np.uint8)
                pixels[:, c * 20:(c + 1) * 20] += 120
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.slow
def test_a_folder_of_64px_images_a_model_module_and_an_evaluate_entry_point(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images")
    (tmp_path / "shapes_model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    common = ["--model", "shapes_model.py:trained", "--dataset", "folder", "--data-root", "images", "--batch-size",
              "8", "--device", "cpu", "--progress", "none"]
    assert main(["search", *common, "--max-params", "0.5x", "--run-dir", "run", "--evaluation", "inherit",
                 "--search-steps", "3", "--bn-batches", "1", "--evaluate", "shapes_model:params_score"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"]["evaluate"] == "shapes_model:params_score"
    records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "candidates").glob("*.json")]
    assert len(records) == 3 and all(r["reward"] == r["params"] / 1e5 for r in records)  # the user's score
    for extra, folder in (([], "final"), (["--uniform"], "uniform")):
        assert main(["train", "--run-dir", "run", "--retain-epoch", "1", "--progress", "none", *extra]) == 0
        out = tmp_path / "run" / folder
        info = json.loads((out / "model.json").read_text())
        assert info["space"]["example_input"] == [3, 64, 64]
        program = torch.export.load(out / "model.pt2").module()
        assert program(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    capsys.readouterr()
    budget = int(0.5 * sum(p.numel() for p in __import__("shapes_model").trained().parameters()))
    uniform = json.loads((tmp_path / "run" / "uniform" / "model.json").read_text())["params"]
    assert 0.9 * budget <= uniform <= budget  # the uniform child fills the budget


def test_input_size_is_recorded_and_a_mismatched_example_input_is_one_line(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", per_class=2)
    (tmp_path / "shapes_model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "c.toml"
    toml.write_text('[space]\nname = "ModelSpace"\nmodel = "shapes_model:trained"\nexample_input = [3, 32, 32]\n'
                    '[data]\ndataset = "folder"\nroot = "images"\n')
    assert main(["search", "--config", str(toml), "--run-dir", "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("sanas search: error: example_input is [3, 32, 32], but dataset 'folder' has 3×64×64 images; "
                   "expected [3, 64, 64] (or leave it out: it follows the data)")
    assert main(["search", "--config", str(toml), "--run-dir", "run", "--input-size", "0", "0"]) == 2
    assert capsys.readouterr().err == ("sanas search: error: input_size is [0, 0], expected two positive integers H W "
                                       "(e.g. 32 32)\n")
    assert not (tmp_path / "run").exists()


def test_the_class_names_are_recorded_and_a_changed_folder_is_refused_on_resume(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", per_class=2)
    monkeypatch.chdir(tmp_path)
    from sanas.runs.config import RunConfig

    config = RunConfig.from_sources(overrides={"data": {"dataset": "folder", "root": "images"},
                                               "space": {"name": "PlainCNNSpace", "in_channels": 3}})
    assert config.data["classes"] == ["circle", "square", "stripe"]
    assert "classes" not in config.data_kwargs()
    for split in ("train", "test"):  # a class added to the folder since the run began
        (tmp_path / "images" / split / "zigzag").mkdir()
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "images" / split / "zigzag" / "0.png")
    with pytest.raises(ValueError, match=r"dataset 'images' has classes \['circle', 'square', 'stripe', 'zigzag'\], "
                                         r"but the run was made with \['circle', 'square', 'stripe'\]"):
        RunConfig.from_dict(config.to_dict())
