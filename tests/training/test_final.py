"""Final training: per-epoch checkpoints, exact resume (also after kill -9), export and load_model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnxruntime
import pytest
import torch
from safetensors.torch import load_file

from sanas import get_space
from sanas.training import EpochMetrics, Recipe, load_model, prepare_data, train_final
from sanas.training.augment import normalize

SPACE = {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4, "auxiliary": True}
DATA = {"train_size": 300, "test_size": 60, "seed": 0}


def _recipe(epochs: int) -> Recipe:
    return Recipe(retain_epoch=epochs, batch_size=32, learning_rate=0.05, device="cpu")


class _Crash(Exception):
    pass


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    space = get_space("DartsSpace", **SPACE)
    data = prepare_data("synthetic", **DATA)
    tokens = space.init_tokens()
    straight = train_final(tokens, space, data, _recipe(3), tmp_path / "straight", progress="none", onnx=False)

    def crash_after_second(m: EpochMetrics) -> None:
        if m.epoch == 1:
            raise _Crash

    with pytest.raises(_Crash):
        train_final(tokens, space, data, _recipe(3), tmp_path / "resumed", progress="none", onnx=False,
                    on_epoch=crash_after_second)
    assert not (tmp_path / "resumed" / "model.json").exists()
    with pytest.raises(FileExistsError, match="pass resume=True"):
        train_final(tokens, space, data, _recipe(3), tmp_path / "resumed", progress="none", onnx=False)
    resumed = train_final(tokens, space, data, _recipe(3), tmp_path / "resumed", resume=True, progress="none",
                          onnx=False)
    assert resumed.resumed_from_epoch == 2 and straight.resumed_from_epoch == 0
    # Same weights, optimizer, schedule and RNG streams: the resumed run is the uninterrupted run.
    strip = [{k: v for k, v in m.to_dict().items() if k != "seconds"} for m in straight.metrics]
    assert [{k: v for k, v in m.to_dict().items() if k != "seconds"} for m in resumed.metrics] == strip
    assert resumed.test_top1 == straight.test_top1
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_run(tmp_path: Path) -> None:
    space = get_space("DartsSpace", **SPACE)
    data = prepare_data("synthetic", **DATA)
    train_final(space.init_tokens(), space, data, _recipe(2), tmp_path, progress="none", onnx=False)
    with pytest.raises(ValueError, match=r"belongs to a different run \(differs in: tokens\)"):
        train_final([0, 0, 0], space, data, _recipe(2), tmp_path, resume=True, progress="none", onnx=False)


def test_export_loads_back_and_reproduces_the_test_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = get_space("DartsSpace", **SPACE)
    data = prepare_data("synthetic", **DATA)
    result = train_final([2, 1, 0], space, data, _recipe(2), tmp_path, progress="lines", onnx=True)
    err = capsys.readouterr().err
    assert "final: test top1" in err
    assert f"wrote {tmp_path / 'model.onnx'}" in err  # the onnx extra is part of dev; tests/training/test_onnx.py
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["tokens"] == [2, 1, 0] and info["space"] == space.config() and info["params"] == result.params
    assert info["test"]["top1"] == result.test_top1 and len(info["metrics"]) == 2
    assert info["split"]["train_size"] == len(data.train_indices)
    net = load_model(tmp_path)
    assert not net.training and net.count_params() == space.count_params([2, 1, 0])
    images, labels = data.test()
    with torch.inference_mode():
        logits = net(normalize(images, data.dataset.mean, data.dataset.std))
    assert (logits.argmax(1) == labels).float().mean().item() == pytest.approx(result.test_top1)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": normalize(images, data.dataset.mean, data.dataset.std).numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(exported), logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(FileNotFoundError, match=r"model\.json is missing"):
        load_model(tmp_path / "nowhere")


CHILD = """
import sys
from sanas import get_space
from sanas.training import Recipe, prepare_data, train_final

space = get_space("DartsSpace", **{space})
data = prepare_data("synthetic", **{data})
recipe = Recipe(retain_epoch={epochs}, batch_size=32, learning_rate=0.05, device="cpu")
result = train_final(space.init_tokens(), space, data, recipe, sys.argv[1], resume=True, progress="lines",
                     onnx=False)
print("resumed_from", result.resumed_from_epoch, "test_top1", result.test_top1)
"""


@pytest.mark.slow
def test_kill_9_during_final_training_then_resume(tmp_path: Path) -> None:
    epochs = 8
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(space=SPACE, data=DATA, epochs=epochs)))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, f"the child ended before it could be killed: {child.communicate()}"
    time.sleep(0.3)  # land somewhere inside a later epoch, possibly mid-write of the next checkpoint
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "model.json").exists()
    killed_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= killed_at < epochs

    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    resumed_from = int(done.stdout.split()[1])
    assert resumed_from >= killed_at  # at most the epoch in progress was lost
    info = json.loads((out / "model.json").read_text())
    assert [m["epoch"] for m in info["metrics"]] == list(range(epochs))
    assert f"epoch {resumed_from + 1}/{epochs}" in done.stderr and f"epoch {resumed_from}/{epochs}" not in done.stderr
    assert not list(out.glob(".*.tmp")), "no temporary files left behind"
    net = load_model(out)
    assert net.count_params() == get_space("DartsSpace", **SPACE).count_params(info["tokens"])
