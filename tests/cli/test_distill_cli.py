"""Distillation from the CLI: an inherit search with --distill trains its own parent without distillation (there is
no parent to distil from yet), distils its candidates, and the final model fine-tuned from the parent is distilled
too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _configs import inherit_toml
from sanas.cli import main

TINY = inherit_toml(recipe="distill = 0.5\ndistill_temperature = 2.0\n",
                    search='search_steps = 2\nmax_params = "1.0x"\nparent_epochs = 2\n')


@pytest.mark.slow
def test_an_inherit_search_with_distillation_trains_its_parent_without_it(tmp_path: Path) -> None:
    config, run = tmp_path / "distill.toml", tmp_path / "run"
    config.write_text(TINY)
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--progress", "none", "--no-report"]) == 0
    parent = json.loads((run / "parent" / "model.json").read_text())["recipe"]
    assert parent["evaluation"] == "scratch" and parent["distill"] == 0.0
    assert json.loads((run / "config.json").read_text())["recipe"]["distill"] == 0.5
    records = [json.loads(p.read_text()) for p in (run / "candidates").glob("trial-*.json")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)

    final = tmp_path / "final"
    assert main(["train", "--run-dir", str(run), "--token", "1", "1", "1", "--retain-epoch", "1", "--out", str(final),
                 "--no-onnx", "--progress", "none", "--distill-temperature", "3"]) == 0
    recipe = json.loads((final / "model.json").read_text())["recipe"]
    assert (recipe["evaluation"], recipe["distill"], recipe["distill_temperature"]) == ("inherit", 0.5, 3.0)
