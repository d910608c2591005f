"""``--workers N`` starts worker processes through the worker's Python entry point, not the CLI's flags, and keeps
the storage URL (which may hold a password) out of their command lines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna

from sanas.runs import launcher
from sanas.runs.config import RunConfig
from sanas.runs.study import open_search
from sanas.runs.worker import worker_main

TINY = {
    "space": {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4},
    "data": {"dataset": "synthetic", "train_size": 80, "test_size": 20},
    "recipe": {"retain_epoch": 2, "batch_size": 16, "cutout": 0, "device": "cpu"},
    "search": {"search_steps": 3},
}


def test_two_workers_finish_a_search_with_the_storage_url_only_in_their_environment(tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = RunConfig.from_sources(overrides=TINY)
    sa, _ = open_search(config, run, storage=storage)
    sa.close()
    started: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    def recording_popen(cmd, **kwargs):
        started.append((list(cmd), dict(kwargs["env"])))
        return real_popen(cmd, **kwargs)

    monkeypatch.setattr(launcher.subprocess, "Popen", recording_popen)
    bad = launcher.launch_workers(run, 2, storage=storage, device="cpu")
    logs = {p.name: p.read_text() for p in (run / "logs").glob("*.log")}
    assert bad == 0, logs
    assert len(started) == 2
    for k, (cmd, env) in enumerate(started):
        assert "sanas.cli" not in " ".join(cmd) and storage not in " ".join(cmd)
        args = json.loads(env[launcher._ARGS_VAR])
        assert args["storage"] == storage and args["worker_id"] == k and args["threads"] >= 1
    study = optuna.load_study(study_name="sanas", storage=storage)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3
    assert {json.loads(p.read_text())["worker"] for p in (run / "candidates").glob("*.json")} <= {0, 1}
    assert all(f"worker {k}:" in logs[f"worker-{k}.log"] for k in range(2))  # each printed its summary line


def test_a_worker_on_a_directory_that_is_no_search_says_so_in_one_line_and_status_2(tmp_path: Path, capsys) -> None:
    assert worker_main(tmp_path / "nothing-here", worker_id=3) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sanas worker 3: error:") and "nothing-here" in err[0], err


def test_the_launcher_reports_a_worker_that_fails(tmp_path: Path, capsys) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    assert launcher.launch_workers(run, 1, device="cpu") == 1
    log = (run / "logs" / "worker-0.log").read_text()
    assert "sanas worker 0: error:" in log and "holds no study" in log
    assert "exited with status 2" in capsys.readouterr().err


class _Finished:
    """A worker process that has already exited cleanly (the launcher only polls it)."""

    returncode = 0

    def poll(self) -> int:
        return 0


def test_workers_are_spread_over_the_gpus_this_process_may_use(tmp_path: Path, monkeypatch) -> None:
    """A scheduler that gave the job GPUs 4-7 keeps its workers on them (they were pinned to 0-3)."""
    envs: list[dict[str, str]] = []
    monkeypatch.setattr(launcher, "_gpu_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setattr(launcher.subprocess, "Popen", lambda cmd, **kw: envs.append(kw["env"]) or _Finished())
    assert launcher.launch_workers(tmp_path, 6, storage="sqlite:///x.db") == 0
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["4", "5", "6", "7", "4", "5"]
    assert all("threads" not in json.loads(e[launcher._ARGS_VAR]) for e in envs)
    envs.clear()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(launcher, "_gpu_count", lambda: 2)
    launcher.launch_workers(tmp_path, 3, storage="sqlite:///x.db", first_worker_id=8)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0"]
    assert [json.loads(e[launcher._ARGS_VAR])["worker_id"] for e in envs] == [8, 9, 10]
    assert {p.name for p in (tmp_path / "logs").iterdir()} >= {"worker-8.log", "worker-9.log", "worker-10.log"}


def test_sanas_worker_with_workers_n_joins_a_search_by_storage(tmp_path: Path, capsys) -> None:
    """A second machine's ``sanas worker --storage URL --workers 2``: two processes, ids from --worker-id."""
    from sanas.cli import main

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sa, _ = open_search(RunConfig.from_sources(overrides=TINY), tmp_path / "run", storage=storage)
    sa.close()
    logs = tmp_path / "machine-2-logs"
    assert main(["worker", "--storage", storage, "--workers", "2", "--worker-id", "4", "--device", "cpu",
                 "--logs", str(logs)]) == 0
    assert sorted(p.name for p in logs.iterdir()) == ["worker-4.log", "worker-5.log"]
    study = optuna.load_study(study_name="sanas", storage=storage)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3
    assert main(["worker", "--storage", storage, "--workers", "0"]) == 2
    assert "--workers is 0, expected an integer >= 1" in capsys.readouterr().err
