"""A typo on a new run directory: one line, exit 2, nothing written — and the corrected command then runs.

Before, ``sanas search`` wrote ``config.json`` (and an empty study) before it checked the data, the SA settings,
the storage URL and the server address, so the corrected command was refused as "a different config".
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from _cifar_files import write_cifar10
from sanas.cli import main

TINY = ["--layers", "3", "--filter-num", "4,8,16", "--init-channels", "4", "--retain-epoch", "2", "--batch-size", "16",
        "--cutout", "0", "--device", "cpu", "--search-steps", "1", "--progress", "none", "--no-report"]
SYNTHETIC = ["--dataset", "synthetic", "--train-subset", "40", "--val-subset", "20"]


def tiny_cifar(root: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = [i % 10 for i in range(60)]
    write_cifar10(root, (rng.integers(0, 256, (60, 3, 32, 32), dtype=np.uint8), labels),
                  (rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8), labels[:20]))
    return root


# (typo, its correction, what the one-line error says)
CASES = {
    "data root": (["--dataset", "cifar10", "--data-root", "{tmp}/nowhere"],
                  ["--dataset", "cifar10", "--data-root", "{tmp}/cifar"], "cifar-10-batches-py"),
    "data root, 2 workers": (["--dataset", "cifar10", "--data-root", "{tmp}/nowhere", "--workers", "2"],
                             ["--dataset", "cifar10", "--data-root", "{tmp}/cifar"], "cifar-10-batches-py"),
    "reduce rate 0": ([*SYNTHETIC, "--reduce-rate", "0"], [*SYNTHETIC, "--reduce-rate", "0.5"],
                      "reduce_rate is 0.0, expected a number in (0, 1]"),
    "negative T0": ([*SYNTHETIC, "--init-temperature", "-1"], [*SYNTHETIC, "--init-temperature", "0.5"],
                    "init_temperature is -1.0, expected 'auto'"),
    "reduce rate nan": ([*SYNTHETIC, "--reduce-rate", "nan"], [*SYNTHETIC, "--reduce-rate", "0.5"],
                        "search.reduce_rate is nan, expected a finite number"),
    "T0 nan": ([*SYNTHETIC, "--init-temperature", "nan"], [*SYNTHETIC, "--init-temperature", "0.5"],
               "init_temperature is nan, expected 'auto'"),
    "port 70000": ([*SYNTHETIC, "--server-addr", "127.0.0.1:70000"],
                   [*SYNTHETIC, "--server-addr", "127.0.0.1:{port}"],
                   "port 70000 is not in [1, 65535]"),
    "unknown scheme": ([*SYNTHETIC, "--storage", "nosuchdb://u:pw@host/x"], SYNTHETIC,
                       "unknown database scheme 'nosuchdb'"),
    "sqlite folder missing": ([*SYNTHETIC, "--storage", "sqlite:///{tmp}/no/such/folder/x.db"],
                              [*SYNTHETIC, "--storage", "sqlite:///{tmp}/x.db"], "does not exist"),
    "val indices out of range": ([*SYNTHETIC, "--val-indices", "{tmp}/bad-indices.txt"],
                                 [*SYNTHETIC, "--val-indices", "{tmp}/indices.txt"], "is outside the training set"),
    "budget below the smallest network": ([*SYNTHETIC, "--max-params", "10"], [*SYNTHETIC, "--max-params", "1.0x"],
                                          "below the smallest network of the space"),
    "band edge 0": ([*SYNTHETIC, "--fill", "0"], [*SYNTHETIC, "--fill", "0.9"],
                    "budget fill is 0.0, expected the band's lower edge as a fraction of the budget in (0, 1]"),
    "band edge above the budget": ([*SYNTHETIC, "--fill", "1.2"], [*SYNTHETIC, "--fill", "1"],
                                   "budget fill is 1.2, expected the band's lower edge"),
    "MAC budget in millions": ([*SYNTHETIC, "--max-macs", "3.5"], [*SYNTHETIC, "--max-macs", "1.0x"],
                               "max_macs is '3.5', which is not a whole number of MACs"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], tmp_path: Path, port: int) -> int:
    return main([a.replace("{tmp}", str(tmp_path)).replace("{port}", str(port)) for a in argv])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_typo_writes_nothing_and_the_corrected_command_runs(tmp_path, capsys, case) -> None:
    typo, fixed, message = CASES[case]
    tiny_cifar(tmp_path / "cifar")
    (tmp_path / "indices.txt").write_text("\n".join(str(i) for i in range(0, 400, 4)) + "\n")
    (tmp_path / "bad-indices.txt").write_text("0\n4\n# a comment\n99999\n")
    run_dir = tmp_path / "run"
    common = ["search", "--run-dir", str(run_dir), *TINY]
    port = free_port()
    assert run([*common, *typo], tmp_path, port) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not run_dir.exists(), sorted(p.name for p in run_dir.iterdir())
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "no").exists()
    assert run([*common, *fixed], tmp_path, port) == 0, capsys.readouterr().err
    assert json.loads((run_dir / "config.json").read_text())["search"]["search_steps"] == 1


@pytest.mark.parametrize("argv", [["--reduce-rate", "inf"], ["--learning-rate", "nan"], ["--val-fraction", "nan"]])
def test_other_non_finite_settings_are_refused_before_anything_is_written(tmp_path, capsys, argv) -> None:
    assert main(["search", "--run-dir", str(tmp_path / "run"), *TINY, *SYNTHETIC, *argv]) == 2
    err = capsys.readouterr().err
    assert "nan" in err.lower() or "inf" in err.lower(), err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_bad_server_address_is_one_line(tmp_path, capsys) -> None:
    for addr in ("host", "host:port", "host:0", "host:70000"):
        assert main(["search", "--run-dir", str(tmp_path / "run"), "--server-addr", addr]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sanas: error: server address") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


TRAIN = ["train", "--token", "1", "1", "1", "--layers", "3", "--filter-num", "4,8,16", "--init-channels", "4",
         "--device", "cpu", "--no-onnx", "--progress", "none", *SYNTHETIC]
# Distillation from the parent (--distill): a bad weight or temperature, or no parent to distil from.
DISTILL_CASES = {
    "search, distill 1.5": (["search", *TINY, *SYNTHETIC, "--evaluation", "inherit", "--distill", "1.5"],
                            "distill is 1.5, expected a weight in [0, 1] (0 = off)"),
    "search, distill -0.1": (["search", *TINY, *SYNTHETIC, "--evaluation", "inherit", "--distill", "-0.1"],
                             "distill is -0.1, expected a weight in [0, 1] (0 = off)"),
    "search, temperature 0": (["search", *TINY, *SYNTHETIC, "--evaluation", "inherit", "--distill", "0.5",
                               "--distill-temperature", "0"], "distill_temperature is 0.0, expected a temperature > 0"),
    "scratch search": (["search", *TINY, *SYNTHETIC, "--distill", "0.5"],
                       "distill is 0.5 but the scratch evaluation has no parent to distil from: distillation needs "
                       "--evaluation inherit with a trained parent (--parent)"),
    "train, distill 1.5": ([*TRAIN, "--retain-epoch", "2", "--distill", "1.5"],
                           "distill is 1.5, expected a weight in [0, 1]"),
    "train from scratch": ([*TRAIN, "--retain-epoch", "2", "--distill", "0.5"],
                           "distill is 0.5 but the scratch evaluation has no parent to distil from"),
    "train inherit without a parent": ([*TRAIN, "--evaluation", "inherit", "--retain-epoch", "1", "--distill", "0.5"],
                                       "fine-tuning from the parent needs --parent DIR"),
}


@pytest.mark.parametrize("case", list(DISTILL_CASES))
def test_a_bad_distillation_request_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, case) -> None:
    argv, message = DISTILL_CASES[case]
    monkeypatch.chdir(tmp_path)  # sanas train's default output folder is ./final
    where = ["--run-dir", str(tmp_path / "run")] if argv[0] == "search" else ["--out", str(tmp_path / "out")]
    assert main([*argv, *where]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
