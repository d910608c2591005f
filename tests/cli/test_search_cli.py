"""The sanas CLI end to end at tiny scale: search → report → train → resume → export → load; workers; errors;
Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from sanas.cli import main
from sanas.search.storage import open_storage

TINY = """
[space]
layers = 3
filter_num = [4, 8, 16]
init_channels = 4

[data]
dataset = "synthetic"
train_size = 120
test_size = 40

[recipe]
retain_epoch = 2
batch_size = 16
cutout = 0
device = "cpu"

[search]
search_steps = {steps}
max_params = "1.0x"
"""


def write_config(tmp_path: Path, steps: int = 3) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(steps=steps))
    return path


def sanas(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "sanas.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="sanas", storage=open_storage(run_dir=run_dir))
    return [t for t in study.get_trials() if "tokens" in t.user_attrs and t.system_attrs.get("sanas:status")
            not in ("surplus", "collision", "exhausted")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_size(path: Path) -> tuple[int, int]:
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", blob[16:24])


@pytest.mark.slow
def test_search_report_train_resume_export_load(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--config", str(write_config(tmp_path)), "--run-dir", str(run), "--progress", "none"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 evaluations finished" in out and "top 10 candidates" in out

    # Run directory layout.
    assert json.loads((run / "config.json").read_text())["search"]["search_steps"] == 3
    assert (run / "sanas.journal").is_file()
    assert len(list((run / "candidates").glob("trial-*.json"))) == 3
    for name in ("reward.png", "pareto.png"):
        assert png_size(run / "report" / name) == (800, 450)
    md = (run / "report" / "report.md").read_text()
    assert "Best vs init: params" in md and "-epoch proxy trainings" in md and "sanas train" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert len(rows) >= 3
    first = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert len(first) == 7 and 0.0 <= float(first[5]) <= 1.0  # trial, tokens, params, vs init, MACs, reward, state
    csv_lines = (run / "report" / "candidates.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,state,accepted,reward") and len(csv_lines) == 4
    evaluated = trials(run)
    assert evaluated[0].user_attrs["tokens"] == [0, 1, 2]  # the init tokens come first

    # Status and report on the finished search.
    assert main(["status", str(run)]) == 0
    assert "finished 3/3" in capsys.readouterr().out
    assert main(["report", str(run), "--top", "2"]) == 0

    # Final training of the best candidate, interrupted after its first epoch (by asking for 2, then 3 epochs
    # is a different recipe, so simulate the stop with a 2-epoch run and a resume of the completed checkpoint).
    final = tmp_path / "final"
    assert main(["train", "--run-dir", str(run), "--out", str(final), "--retain-epoch", "2", "--no-onnx",
                 "--progress", "none"]) == 0
    assert "test top-1" in capsys.readouterr().out
    assert main(["train", "--run-dir", str(run), "--out", str(final), "--retain-epoch", "2", "--no-onnx",
                 "--progress", "none"]) == 2  # refuses to overwrite without --resume
    assert "exists: pass --resume to continue" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run), "--out", str(final), "--retain-epoch", "2", "--no-onnx",
                 "--progress", "none", "--resume"]) == 0
    assert main(["export", str(final)]) == 0
    assert "model in" in capsys.readouterr().out

    from sanas import load_model

    net = load_model(final)
    import torch

    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_sigint_mid_search_then_resume(tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path, steps=4)
    proc = sanas("search", "--config", str(config), "--run-dir", str(run), "--progress", "lines")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list((run / "candidates").glob("*.json"))) < 1:
        time.sleep(0.2)
    time.sleep(1.0)  # the next candidate is now training
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Rerun the same command to resume" in err
    interrupted = [t for t in trials(run) if t.state.name == "FAIL"]
    assert any("interrupted" in t.user_attrs.get("fail_reason", "") for t in interrupted), err

    again = sanas("search", "--config", str(config), "--run-dir", str(run), "--progress", "none")
    _out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    done = [t for t in trials(run) if t.state.name == "COMPLETE"]
    assert len(done) == 4
    # The interrupted candidate was no verdict: the resumed search trained it; nothing else was proposed twice.
    again = [t for t in interrupted if "interrupted" in t.user_attrs.get("fail_reason", "")]
    assert all(t.user_attrs["tokens"] in [d.user_attrs["tokens"] for d in done] for t in again)
    kept = [t for t in trials(run) if t not in again]
    assert len({tuple(t.user_attrs["tokens"]) for t in kept}) == len(kept)


@pytest.mark.slow
def test_worker_joins_and_local_workers(tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path, steps=4)
    first = sanas("search", "--config", str(config), "--run-dir", str(run), "--progress", "none")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "sanas.journal").exists():
        time.sleep(0.1)
    second = sanas("worker", str(run), "--worker-id", "1", "--progress", "none")
    _out2, err2 = second.communicate(timeout=600)
    _out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert sum(t.state.name == "COMPLETE" for t in trials(run)) == 4
    workers = {json.loads(p.read_text())["worker"] for p in (run / "candidates").glob("*.json")}
    assert workers == {0, 1}, workers

    run2 = tmp_path / "run2"
    proc = sanas("search", "--config", str(config), "--run-dir", str(run2), "--workers", "2", "--progress", "none")
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert sum(t.state.name == "COMPLETE" for t in trials(run2)) == 4
    assert (run2 / "logs" / "worker-0.log").is_file() and (run2 / "logs" / "worker-1.log").is_file()
    assert {json.loads(p.read_text())["worker"] for p in (run2 / "candidates").glob("*.json")} == {0, 1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--space", "Nope"], "unknown search space 'Nope'"),
        (["search", "--max-params", "lots"], "max_params is 'lots', expected a count"),
        (["search", "--max-params", "0x"], "max_params is '0x', expected a positive budget"),
        (["search", "--search-steps", "0"], "search_steps is 0, expected a positive integer"),
        (["search", "--max-params", "3.77"], "write '3.77M' or 3770000"),
        (["search", "--init-temperature", "hot"], "init_temperature is 'hot', expected 'auto'"),
        (["search", "--init-temperature", "nan"], "init_temperature is nan, expected 'auto'"),
        (["search", "--dataset", "cifar10", "--data-root", "{tmp}/nowhere"], "cifar-10-batches-py"),
        (["search", "--storage", "postgresql+psycopg2://u:secret@127.0.0.1:1/db"], "127.0.0.1"),
        (["search", "--storage", "not-a-url"], "is not a database URL"),
        (["train", "--token", "1", "x", "2"], "token 1 is 'x', expected an integer"),
        (["train", "--token", "1", "2", "--layers", "3", "--filter-num", "4,8,16", "--init-channels", "4"],
         "expected 3 tokens for DartsSpace, got 2"),
        (["status", "{tmp}/missing"], "does not exist"),
        (["search", "--config", "{tmp}/missing.toml"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "search":
        argv += ["--run-dir", str(tmp_path / "run"), "--layers", "3", "--filter-num", "4,8,16", "--init-channels", "4",
                 "--progress", "none"]
    start = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1, err
    assert "secret" not in err
    assert time.monotonic() - start < 60  # unreachable storage: a bounded wait, not a hang


def test_run_dir_from_a_different_config_is_refused_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path, steps=1)
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--progress", "none", "--no-report"]) == 0
    saved = (run / "config.json").read_bytes()
    journal = (run / "sanas.journal").read_bytes()
    capsys.readouterr()
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--progress", "none",
                 "--retain-epoch", "3"]) == 2
    err = capsys.readouterr().err
    assert "was created with a different config (recipe.retain_epoch: 2 there, 3 now)" in err
    assert err.count("\n") == 1
    assert (run / "config.json").read_bytes() == saved
    assert (run / "sanas.journal").read_bytes() == journal
    # The same settings resume (here: nothing left to do) and report.
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--progress", "none"]) == 0
    assert "1 of 1 evaluations finished" in capsys.readouterr().out


@pytest.mark.slow
def test_server_mode_as_the_readme_writes_it_ends_with_its_report(tmp_path):
    # README: sanas search --config ... --run-dir runs/c10 --server-addr 0.0.0.0:8377
    #         sanas worker --server-addr server-host:8377
    run = tmp_path / "run"
    config = write_config(tmp_path, steps=4)
    port = free_port()
    # The worker starts first and waits for its server (a worker that comes after its server has finished cannot
    # connect, and says so): then it is certain to take part, whatever the machine's load.
    client = sanas("worker", "--server-addr", f"127.0.0.1:{port}", "--worker-id", "1", "--progress", "lines",
                   "--connect-timeout", "300")
    time.sleep(1)
    server = sanas("search", "--config", str(config), "--run-dir", str(run), "--server-addr", f"0.0.0.0:{port}",
                   "--progress", "none")
    _out_c, err_c = client.communicate(timeout=900)
    out_s, err_s = server.communicate(timeout=900)
    assert server.returncode == 0, err_s
    assert client.returncode == 0, err_c
    assert "Traceback" not in err_s + err_c
    assert "[worker 1] trial" in err_c  # the client evaluated candidates of the server's search
    assert err_s.count("unauthenticated and unencrypted") == 1 and "the whole study" in err_s
    assert "report written to" in out_s and (run / "report" / "report.md").is_file()
    assert (run / "report" / "candidates.csv").read_text().count("\n") >= 4
    study = optuna.load_study(study_name="sanas", storage=open_storage(run_dir=run, server=True))
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 4


@pytest.mark.slow
def test_train_takes_the_best_of_a_search_whose_study_lives_in_a_storage(tmp_path, capsys) -> None:
    """A search started with --storage keeps no study in its run directory: sanas train --run-dir needs the same
    --storage (it said so, but had no such flag)."""
    run = tmp_path / "run"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = write_config(tmp_path, steps=2)
    assert main(["search", "--config", str(config), "--run-dir", str(run), "--storage", url, "--progress", "none",
                 "--no-report"]) == 0
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run), "--out", str(tmp_path / "final"), "--no-onnx",
                 "--progress", "none"]) == 2
    assert "pass the same --storage" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run), "--storage", url, "--out", str(tmp_path / "final"), "--no-onnx",
                 "--progress", "none"]) == 0
    best = json.loads((tmp_path / "final" / "model.json").read_text())["tokens"]
    done = [t for t in optuna.load_study(study_name="sanas", storage=url).trials if t.value is not None]
    top = max(t.value for t in done)
    assert best in [t.user_attrs["tokens"] for t in done if t.value == top]
