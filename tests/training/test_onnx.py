"""ONNX export: the exported file computes what the PyTorch network computes (checked with onnxruntime).

onnx, onnxscript and onnxruntime come with the ``dev`` extra (the ``onnx`` extra); without them these tests fail
at import, never skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from _weights import randomise
from sanas import get_space
from sanas.cli import main
from sanas.training import Recipe, load_model, normalize, prepare_data, train_final
from sanas.training import final as final_module
from sanas.training.final import export_onnx

SMALL = {"filter_num": [4, 8, 12, 16, 24, 32, 48, 64], "init_channels": 8}


def _run(path: Path, images: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    return session.run(None, {"images": images.numpy()})[0]


def test_darts_network_exports_and_matches_pytorch(tmp_path: Path) -> None:
    # Three cells (two of them reductions), every op kind of both genotypes, the auxiliary head (left out in eval).
    space = get_space("DartsSpace", layers=3, auxiliary=True, **SMALL)
    torch.manual_seed(0)
    net = randomise(space.token2arch([1, 5, 3]))
    path = tmp_path / "darts.onnx"
    assert export_onnx(net, 3, path) == f"wrote {path}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["darts.onnx"]  # weights inside, no temporary left
    onnx.checker.check_model(str(path))
    for batch in (1, 5):  # the batch dimension is dynamic; the export traced batch 2
        images = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            expected = net(images).numpy()
        np.testing.assert_allclose(_run(path, images), expected, rtol=1e-4, atol=1e-4)


def test_cli_export_of_a_trained_plain_cnn_matches_pytorch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = get_space("PlainCNNSpace", filter_num=[4, 8, 16], layers=3, stem_channels=8)
    data = prepare_data("synthetic", train_size=200, test_size=40, channels=1, seed=0)
    model = tmp_path / "final"
    train_final([2, 0, 1], space, data, Recipe(retain_epoch=2, batch_size=32, device="cpu", cutout=0), model,
                progress="none", onnx=False)
    out = tmp_path / "export" / "plain.onnx"  # a new folder is created
    assert main(["export", str(model), "--onnx", str(out)]) == 0
    assert f"wrote{out}" in "".join(capsys.readouterr().out.split())  # as rich wraps it
    images = normalize(data.test()[0], data.dataset.mean, data.dataset.std)
    with torch.inference_mode():
        expected = load_model(model)(images).numpy()
    np.testing.assert_allclose(_run(out, images), expected, rtol=1e-4, atol=1e-4)


def test_cli_export_refuses_bad_requests_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    missing_model = tmp_path / "no-model"  # never read: the --onnx checks come first
    assert main(["export", str(missing_model), "--onnx", str(tmp_path)]) == 2
    assert f"--onnx {str(tmp_path)!r} is a folder" in capsys.readouterr().err
    monkeypatch.setattr(final_module, "missing_onnx_packages", lambda: ["onnxscript"])
    assert main(["export", str(missing_model), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "--onnx: onnxscript not installed; pip install 'sanas[onnx]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


class _Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this network cannot be traced")


def test_a_failed_or_skipped_export_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.onnx"
    message = export_onnx(_Unexportable(), 3, path)
    assert message.startswith("ONNX export failed (") and "this network cannot be traced" in message
    monkeypatch.setattr(final_module, "missing_onnx_packages", lambda: ["onnx", "onnxscript"])
    message = export_onnx(get_space("PlainCNNSpace").token2arch([0, 0, 0, 0]), 1, path)
    assert message == "skipped ONNX export: onnx and onnxscript not installed (pip install 'sanas[onnx]')"
    assert list(tmp_path.iterdir()) == []


def test_cli_export_whose_exporter_fails_exits_1_and_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    space = get_space("PlainCNNSpace", filter_num=[4, 8, 16], layers=3, stem_channels=4)
    data = prepare_data("synthetic", train_size=40, test_size=10, channels=1, seed=0)
    model = tmp_path / "final"
    train_final([1, 1, 1], space, data, Recipe(retain_epoch=2, batch_size=20, device="cpu", cutout=0), model,
                progress="none", onnx=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("wrote nothing: the exporter broke")  # the status, not the text, says it failed

    monkeypatch.setattr(torch.onnx, "export", broken)
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "--onnx", str(out)]) == 1
    assert "ONNX export failed (RuntimeError: wrote nothing" in " ".join(capsys.readouterr().out.split())
    assert not out.exists()
    outcome = final_module.write_onnx(load_model(model), 1, out)
    assert not outcome.written and outcome.message.startswith("ONNX export failed")
