"""A compressed child of a ModelSpace made from a model object comes back in one call: `load_model(folder)` loads its
`torch.export` program (in a fresh process, without the model's code), `load_model(folder, model=net)` rebuilds it
as the user's own class; `train_final` no longer fails after writing the weights."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from sanas import get_space
from sanas.training import Recipe, load_model, prepare_data, train_final


class UserNet(nn.Module):
    """A user's model, defined here (in a test module no fresh process can import without its folder on the path)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


def test_a_child_of_a_model_object_trains_saves_and_loads_back(tmp_path) -> None:
    torch.manual_seed(0)
    net = UserNet()
    space = get_space("ModelSpace", model=net, example_input=[1, 32, 32])
    tokens = [0] * len(space.range_table())
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    out = tmp_path / "child"
    # Before: the weights were written, then the ONNX step failed ("ModelSpace needs model= ...").
    result = train_final(tokens, space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu", cutout=0), out,
                         progress="none")
    x = torch.randn(3, 1, 32, 32)
    program = load_model(out)  # no model code needed: the torch.export program
    as_class = load_model(out, model=net)  # the user's own class, widths of the child
    assert type(as_class) is UserNet and as_class.c1.out_channels == space.widths(tokens)[0]
    with torch.no_grad():
        expected = as_class(x)
        assert torch.allclose(program(x), expected, atol=1e-5)
    assert program.sanas_info["tokens"] == result.tokens == as_class.sanas_info["tokens"]
    # A fresh process that has neither sanas' search code nor this test module loads the program and gets the same.
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        program = torch.export.load({str(out / "model.pt2")!r}).module()
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        assert torch.allclose(program(x), expected, atol=1e-5)
        assert "sanas" not in sys.modules and "test_saved_children" not in sys.modules
        print("same outputs")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "same outputs", done.stderr[-2000:]


def test_a_child_of_a_model_object_without_its_program_says_what_to_pass(tmp_path) -> None:
    net = UserNet()
    space = get_space("ModelSpace", model=net, example_input=[1, 32, 32])
    data = prepare_data("synthetic", train_size=32, test_size=16, channels=1)
    out = tmp_path / "child"
    train_final(space.init_tokens(), space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu", cutout=0), out,
                progress="none", onnx=False)
    (out / "model.pt2").unlink()


    with pytest.raises(ValueError, match=r"model.pt2 is missing: pass the trained model, load_model\(.*, "
                                         r"model=trained_model\)"):
        load_model(out)
    assert type(load_model(out, model=net)) is UserNet


def test_a_child_of_an_entry_point_loads_from_anywhere_and_without_its_code(tmp_path, monkeypatch, capsys) -> None:
    """model.json names the folder the model's module came from (model_root), so load_model finds it from another
    folder; where the module is gone, it loads the program instead and says so."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "saved_child_models.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def net():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))\n")
    monkeypatch.chdir(folder)
    from sanas.runs.config import RunConfig

    config = RunConfig.from_sources(overrides={"space": {"name": "ModelSpace", "model": "saved_child_models:net"},
                                               "data": {"dataset": "synthetic", "channels": 1}})
    space = config.build_space()
    data = prepare_data("synthetic", train_size=32, test_size=16, channels=1)
    out = tmp_path / "child"
    train_final([0], space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu", cutout=0), out,
                progress="none", onnx=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delitem(sys.modules, "saved_child_models")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(folder)])
    rebuilt = load_model(out)
    assert isinstance(rebuilt, nn.Sequential) and rebuilt[0].out_channels == space.widths([0])[0]
    (folder / "saved_child_models.py").unlink()
    monkeypatch.delitem(sys.modules, "saved_child_models")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(folder)])
    program = load_model(out)
    assert "loaded the exported program" in capsys.readouterr().err
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(program(x), rebuilt(x), atol=1e-5)
