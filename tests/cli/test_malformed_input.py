"""A typo on a new run directory: one line, exit 2, nothing written — and the corrected command then runs.

Before, ``sanas search`` wrote ``config.json`` (and an empty study) before it checked the data, the SA settings,
the storage URL and the server address, so the corrected command was refused as "a different config".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
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


# --- issue 39: the sweep's failing categories --------------------------------------------------------------------
MODELS = '''
import torch.nn as nn


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def boom():
    raise RuntimeError("my weights file is missing")


def needs(path):
    return net()
'''
SEARCH = ["search", "--run-dir", "{tmp}/run", *TINY, *SYNTHETIC]
MODEL_SEARCH = ["search", "--run-dir", "{tmp}/run", "--retain-epoch", "2", "--device", "cpu", "--search-steps", "1",
                "--progress", "none", "--no-report", *SYNTHETIC]
TRAIN_OUT = [*TRAIN, "--retain-epoch", "2", "--out", "{tmp}/out"]
# (command line, what its one-line error says); files the cases read are made by `fixtures` below.
REFUSED = {
    "unknown key in [space]": ([*SEARCH, "--config", "{tmp}/space-typo.toml"],
                               "unknown space setting(s) layerz for DartsSpace; expected some of"),
    "unknown key in [data]": ([*SEARCH, "--config", "{tmp}/data-typo.toml"],
                              "unknown data setting(s) train_subsett; expected some of"),
    "unknown key in [space], existing run directory": (
        ["search", "--run-dir", "{tmp}/existing", *TINY, *SYNTHETIC, "--config", "{tmp}/space-typo.toml"],
        "unknown space setting(s) layerz for DartsSpace"),
    "a DARTS setting for a ModelSpace": ([*MODEL_SEARCH, "--model", "{models}:net", "--layers", "3"],
                                         "unknown space setting(s) layers for ModelSpace"),
    "example input larger than the data": ([*MODEL_SEARCH, "--config", "{tmp}/example-64.toml"],
                                           "example_input is [3, 64, 64], but dataset 'synthetic' has 3×32×32 "
                                           "images; expected [3, 32, 32]"),
    # Checked before the model is loaded (this entry point raises) or traced.
    "in_channels of another dataset, ModelSpace": ([*MODEL_SEARCH, "--model", "{models}:boom",
                                                    "--in-channels", "1"],
                                                   "in_channels is 1, but dataset 'synthetic' has 3×32×32 images"),
    "in_channels of another dataset, train": ([*TRAIN_OUT, "--dataset", "fashion-mnist", "--in-channels", "3"],
                                              "in_channels is 3, but dataset 'fashion-mnist' has 1×32×32 images"),
    "model function raises": ([*MODEL_SEARCH, "--model", "{models}:boom"],
                              "raised RuntimeError: my weights file is missing"),
    "model function needs an argument": ([*MODEL_SEARCH, "--model", "{models}:needs"],
                                         "raised TypeError: needs() missing 1 required positional argument"),
    "nccl without a GPU": ([*TRAIN_OUT, "--backend", "nccl"], "backend 'nccl' needs CUDA devices"),
    "run directory is a file": (["search", "--run-dir", "{tmp}/a-file", *TINY, *SYNTHETIC],
                                "run directory {tmp}/a-file is a file; expected a folder"),
    "run directory under a file": (["search", "--run-dir", "{tmp}/a-file/sub", *TINY, *SYNTHETIC],
                                   "run directory {tmp}/a-file/sub: {tmp}/a-file is a file, not a folder"),
    "status of a file": (["status", "{tmp}/a-file"], "run directory {tmp}/a-file is a file"),
    "report of a file": (["report", "{tmp}/a-file"], "run directory {tmp}/a-file is a file"),
    "train --out is a file": ([*TRAIN, "--retain-epoch", "2", "--out", "{tmp}/a-file"],
                              "--out {tmp}/a-file is a file; expected a folder"),
    "train --out holds a checkpoint": ([*TRAIN, "--retain-epoch", "2", "--out", "{tmp}/trained"],
                                       "{tmp}/trained/checkpoint.pt exists: pass --resume to continue that training, "
                                       "or choose another --out"),
    "train one epoch from scratch": ([*TRAIN_OUT[:-2], "--retain-epoch", "1", "--out", "{tmp}/out"],
                                     "--retain-epoch is 1, expected a whole number >= 2: sanas train from scratch"),
    # The error first and alone: no header or table before it.
    "search header before a data error": (["search", "--run-dir", "{tmp}/run", *TINY, "--dataset", "cifar10",
                                           "--data-root", "{tmp}/nowhere"], "cifar-10-batches-py"),
    "info table before a bad token": (["info", "--layers", "3", "--filter-num", "4,8,16", "--init-channels", "4",
                                       "--token", "1", "1", "1", "--token", "1", "1"],
                                      "expected 3 tokens for DartsSpace, got 2"),
    "train note before an error": (["train", "--uniform", "--run-dir", "{tmp}/existing", "--backend",
                                    "nccl", "--device", "cpu", "--out", "{tmp}/out"], "backend 'nccl' needs CUDA"),
}


def fixtures(tmp: Path) -> Path:
    """The files REFUSED's cases read; returns the models file (a new module name each time: Python imports a
    name once)."""
    from sanas.runs.config import RunConfig

    models = tmp / f"models_{uuid.uuid4().hex[:12]}.py"
    models.write_text(MODELS)
    (tmp / "space-typo.toml").write_text("[space]\nlayerz = 3\n")
    (tmp / "data-typo.toml").write_text("[data]\ntrain_subsett = 30\n")
    (tmp / "example-64.toml").write_text('[space]\nname = "ModelSpace"\nmodel = "{models}:net"\n'
                                         'example_input = [3, 64, 64]\n'.replace("{models}", str(models)))
    (tmp / "a-file").write_text("not a folder\n")
    (tmp / "trained").mkdir()
    (tmp / "trained" / "checkpoint.pt").write_bytes(b"")
    space = {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4}
    RunConfig.from_sources(overrides={"space": space, "data": {"dataset": "synthetic", "train_subset": 40},
                                      "recipe": {"retain_epoch": 2, "batch_size": 16}}).save(tmp / "existing")
    return models


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))
            if "__pycache__" not in p.parts}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_malformed_input_is_one_line_first_and_alone_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                                          case) -> None:
    argv, message = REFUSED[case]
    models = fixtures(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    assert main([a.replace("{tmp}", str(tmp_path)).replace("{models}", str(models)) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message.replace("{tmp}", str(tmp_path)) in err, (out, err)
    assert err.startswith("sanas"), err
    assert tree(tmp_path) == before


def test_a_parent_of_unknown_provenance_is_trusted_with_val_indices(tmp_path) -> None:
    """The warning asked for --val-indices FILE even when it was given."""
    from sanas.runs.config import RunConfig
    from sanas.runs.parent import parent_provenance
    from sanas.training.data import load_dataset, split_data

    dataset = load_dataset("synthetic", train_size=100, test_size=20)
    (tmp_path / "held-out.txt").write_text("1\n2\n3\n")
    given = split_data(dataset, val_indices=tmp_path / "held-out.txt").split
    config = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "recipe": {"evaluation": "inherit"}})
    assert parent_provenance(config, None, object(), given) is None  # a ModelSpace's own model: the user's word
    assert "--val-indices FILE" in parent_provenance(config, None, object(), split_data(dataset).split)
    folder = tmp_path / "parent"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"split": split_data(dataset).split}))
    config.search["parent"] = str(folder)
    warning = parent_provenance(config, None, object(), given)  # trained by sanas on another split: still said
    assert warning is not None and "trained on another split" in warning
    assert "give --val-indices" not in warning and "held-out.txt' lists only training-set positions it never saw" \
        in warning


def test_resuming_with_another_budget_names_the_setting(tmp_path) -> None:
    from sanas import SANAS

    space = [("DartsSpace", {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4})]
    SANAS(space, save_checkpoint=tmp_path, max_params="1.0x", search_steps=1).close()
    with pytest.raises(ValueError) as refused:
        SANAS(space, save_checkpoint=tmp_path, max_params="0.9x", search_steps=1)
    text = str(refused.value)
    assert "settings.max_params: study has" in text and "seed" not in text, text


def test_the_api_refuses_a_bad_server_port_before_it_makes_the_study(tmp_path) -> None:
    from sanas import SANAS

    for addr, is_server in ((("127.0.0.1", 70000), True), (("127.0.0.1", 70000), False), (("127.0.0.1", 0), True)):
        with pytest.raises(ValueError, match="port must be an integer in"):
            SANAS("DartsSpace", server_addr=addr, is_server=is_server, save_checkpoint=tmp_path / "study")
        assert not (tmp_path / "study").exists()


# Permissions, as a user who cannot write the folder. Root writes anywhere: as root the test runs the CLI without the
# capabilities that override file permissions (still root, so it reads the checkout wherever it was cloned, even in
# a folder only root may enter, as CI's is).
WITHOUT_OVERRIDE = ["--bounding-set=-dac_override,-dac_read_search,-fowner"]
UNWRITABLE = {
    "new run directory": (["search", "--run-dir", "ro/new", *TINY, *SYNTHETIC],
                          "run directory ro/new: folder ro is not writable by this user"),
    "existing run directory": (["search", "--run-dir", "ro/run", *TINY, *SYNTHETIC],
                               "run directory ro/run: it is not writable by this user"),
    "worker": (["worker", "ro/run", "--device", "cpu", "--progress", "none"],
               "run directory ro/run: it is not writable by this user"),
    "report": (["report", "ro/run"], "report folder ro/run/report: folder ro/run is not writable by this user"),
    "train --out": ([*TRAIN, "--retain-epoch", "2", "--out", "ro/final"],
                    "--out ro/final: folder ro is not writable by this user"),
    "train --run-dir": (["train", "--run-dir", "ro/run", "--token", "1", "1", "1", "--device", "cpu", "--no-onnx",
                         "--progress", "none"], "--out ro/run/final: folder ro/run is not writable by this user"),
}


@pytest.fixture(scope="module")
def unwritable() -> Iterator[tuple[Path, list[str]]]:
    """A folder holding ``ro/`` (read-only: a run directory with its study inside) and the command prefix that runs
    Python as a user who cannot write it."""
    from sanas.runs.config import RunConfig
    from sanas.runs.study import open_search

    prefix = [sys.executable]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no way to drop the permission override")
        prefix = [setpriv, *WITHOUT_OVERRIDE, "--", sys.executable]
        probe = subprocess.run([*prefix, "-c", "import os, tempfile, sanas.cli; d = tempfile.mkdtemp(); "
                                "os.chmod(d, 0o555); print(os.access(d, os.W_OK)); os.rmdir(d)"],
                               capture_output=True, text=True)
        assert probe.returncode == 0 and probe.stdout.strip() == "False", \
            f"setpriv could not drop root's permission override: {probe.stdout}{probe.stderr[-500:]}"
    base = Path(tempfile.mkdtemp(prefix="sanas-unwritable-"))
    try:
        base.chmod(0o755)
        (base / "home").mkdir(mode=0o777)
        (base / "home").chmod(0o777)
        config = RunConfig.from_sources(overrides={
            "space": {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4},
            "data": {"dataset": "synthetic", "train_subset": 40, "val_subset": 20},
            "recipe": {"retain_epoch": 2, "batch_size": 16, "cutout": 0, "device": "cpu"},
            "search": {"search_steps": 1}})
        open_search(config, base / "ro" / "run")[0].close()
        for folder in (base / "ro" / "run", base / "ro"):
            for p in folder.rglob("*"):
                p.chmod(0o444 if p.is_file() else 0o555)
            folder.chmod(0o555)
        yield base, prefix
    finally:
        for p in [base, *base.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_a_folder_the_user_cannot_write_is_refused_in_one_line_before_any_work(unwritable, case) -> None:
    base, prefix = unwritable
    argv, message = UNWRITABLE[case]
    before = tree(base / "ro")
    env = {**os.environ, "HOME": str(base / "home"), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([*prefix, "-m", "sanas.cli", *argv], cwd=base, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr[-2000:])
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr[-2000:]
    assert tree(base / "ro") == before


def test_a_storage_url_without_its_password_says_so(capsys) -> None:
    """It was reported as 'cannot reach storage', on a server that answered. Needs the test PostgreSQL server
    (scripts/ensure_postgres.sh), which asks for a password; the URL's is left out."""
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get("SANAS_TEST_POSTGRES_URL",
                                  "postgresql+psycopg2://sanas:sanas@127.0.0.1:5432/sanas_test"))
    no_password = f"{url.drivername}://{url.username}@{url.host}:{url.port or 5432}/{url.database}"
    assert main(["status", "--storage", no_password]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert "asks for a password and the URL gives none" in err and "cannot reach" not in err, err
