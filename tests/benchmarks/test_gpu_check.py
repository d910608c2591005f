"""The GPU check keeps working where CI runs: on the CPU, at its tiniest size, through its shell wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", "--json", str(out), *args],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads(out.read_text())


def test_the_cpu_run_writes_every_section(tmp_path: Path) -> None:
    run, record = _run(tmp_path, "--no-tests")
    for key in ("command", "torch", "device", "device_name", "git_commit", "git_dirty", "settings", "epoch_setup",
                "largest_batch", "epochs", "ddp", "ok", "complete", "seconds"):
        assert key in record, key
    assert record["device"] == "cpu" and record["ok"] and record["complete"]
    assert record["torch"] and isinstance(record["git_dirty"], bool) and len(record["git_commit"]) == 40
    rows = record["epochs"]
    assert [r["batch"] for r in rows] == [8, 16] and record["largest_batch"]["batch"] == 16
    for r in rows:
        assert r["img_s"] > 0 and r["epoch_s"] > 0 and r["step_s"] > 0 and r["compile"] is False
        assert r["config"] == "fp32, channels_last, eager"
    assert "skipped" in record["ddp"]
    assert "img/s" in run.stdout and "s/epoch" in run.stdout and "extrapolated" in run.stdout


@pytest.mark.slow
def test_the_cuda_tests_and_the_ddp_step_run_on_cpu(tmp_path: Path) -> None:
    # pytest -m cuda selects the CUDA tests (they skip here); the 2-process gloo step runs for real.
    run, record = _run(tmp_path, "--ddp", "--max-batch", "8")
    tests = record["tests"]
    assert tests["ok"] and tests["returncode"] == 0 and tests["skipped"] >= 2 and "failed" not in tests
    ddp = record["ddp"]
    assert "error" not in ddp, ddp
    rows = {r["config"]: r for r in ddp["rows"]}
    parallel = [r for name, r in rows.items() if name.startswith("2 processes")]
    assert len(parallel) == 2 and all(r["step_s"] > 0 and r["overhead_s"] is not None for r in parallel)
    assert "ddp (tiny DARTS" in run.stdout


def test_the_largest_batch_is_the_last_that_fitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check

    real = gpu_check._trainer
    built = []

    class Exhausting:  # what a trainer too large for the GPU does: its first step runs out of memory
        def train_epoch(self, *args: object) -> None:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def trainer(space: Any, data: Any, batch: int, device: str, compile_: bool) -> Any:
        built.append(batch)
        return Exhausting() if batch > 32 else real(space, data, batch, device, compile_)

    monkeypatch.setattr(gpu_check, "_trainer", trainer)
    out = tmp_path / "check.json"
    threads = torch.get_num_threads()
    try:
        assert gpu_check.main(["--cpu", "--no-tests", "--max-batch", "256", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)  # a CPU run sets one thread; the tests after this one keep theirs
    record = json.loads(out.read_text())
    search = record["largest_batch"]
    assert search["batch"] == 32 and search["limited_by"] == "out of memory"
    assert [(t["batch"], t["fits"]) for t in search["tried"]] == [(16, True), (32, True), (64, False)]
    assert "out of memory" in search["tried"][-1]["why"]
    assert [r["batch"] for r in record["epochs"]] == [8, 32] and record["ok"]
    assert built == [8, 16, 32, 64, 32]
