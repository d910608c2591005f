"""Damaged model folders and half-written files: one line naming the file and the tensor; stale temporaries of
a killed writer are removed on the next run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sanas import get_space
from sanas.cli import main
from sanas.training import Recipe, load_model, prepare_data, train_final

SPACE = {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4, "auxiliary": False}
RECIPE = {"retain_epoch": 2, "batch_size": 16, "cutout": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    space = get_space("DartsSpace", **SPACE)
    data = prepare_data("synthetic", train_size=60, test_size=20)
    train_final(space.init_tokens(), space, data, Recipe(**RECIPE), out, progress="none", onnx=False)
    return out


def damaged(model_dir: Path, tmp_path: Path, change) -> Path:
    out = tmp_path / "damaged"
    shutil.copytree(model_dir, out)
    change(out / "model.safetensors", out / "model.json")
    return out


def _extra(weights: Path, _meta: Path) -> None:
    tensors = load_file(weights)
    save_file({**tensors, "head.extra": torch.zeros(3)}, weights)


def _missing(weights: Path, _meta: Path) -> None:
    tensors = load_file(weights)
    del tensors["classifier.weight"]
    save_file(tensors, weights)


def _reshaped(weights: Path, _meta: Path) -> None:
    tensors = load_file(weights)
    save_file({**tensors, "classifier.bias": torch.zeros(11)}, weights)


def _truncated(weights: Path, _meta: Path) -> None:
    blob = weights.read_bytes()
    weights.write_bytes(blob[:len(blob) - 2])  # the header is whole; the last tensor is cut


def _garbage(weights: Path, _meta: Path) -> None:
    weights.write_bytes(b"\x07" * 5)


def _bad_json(_weights: Path, meta: Path) -> None:
    meta.write_text(meta.read_text()[:40])


def _last_tensor(weights: Path) -> str:
    header = json.loads(weights.read_bytes()[8:8 + int.from_bytes(weights.read_bytes()[:8], "little")])
    return max((v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__")[1]


CASES = {
    "extra tensor": (_extra, "holds tensor 'head.extra', which the network of model.json does not have"),
    "missing tensor": (_missing, "lacks tensor 'classifier.weight' of the network of model.json"),
    "wrong shape": (_reshaped, "tensor 'classifier.bias' has shape [11], the network of model.json expects [10]"),
    "truncated": (_truncated, "is cut short: the file is truncated"),
    "not safetensors": (_garbage, "cannot be read"),
    "corrupt model.json": (_bad_json, "model.json is corrupt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_weights_name_the_file_and_the_tensor(model_dir, tmp_path, capsys, case) -> None:
    change, message = CASES[case]
    out = damaged(model_dir, tmp_path, change)
    file = out / ("model.json" if case == "corrupt model.json" else "model.safetensors")
    if case == "truncated":
        message = f"tensor {_last_tensor(model_dir / 'model.safetensors')!r} {message}"
    with pytest.raises(ValueError) as info:
        load_model(out)
    assert str(file) in str(info.value) and message in str(info.value), info.value
    assert main(["export", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(file) in err and message in err, err


def test_intact_weights_still_load(model_dir) -> None:
    assert not load_model(model_dir).training


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from sanas import atomic
os.fsync = lambda fd: (print("WRITING", flush=True), time.sleep(600))  # the kill lands mid-write
atomic.atomic_write_bytes(Path(sys.argv[1]) / "checkpoint.pt", b"x" * 1000)
"""


def test_a_killed_writers_temporary_is_removed_when_the_training_resumes(tmp_path) -> None:
    out = tmp_path / "final"
    space = get_space("DartsSpace", **SPACE)
    data = prepare_data("synthetic", train_size=60, test_size=20)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(out)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "WRITING"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    left = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(left) == 1 and f"~{writer.pid}." in left[0].name
    train_final(space.init_tokens(), space, data, Recipe(**RECIPE), out, progress="none", onnx=False)
    assert not list(out.glob(".*.tmp")), "the killed writer's temporary is still there"
