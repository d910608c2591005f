"""Data-parallel final training on CPU (gloo, 2 processes, a tiny DARTS network), the way a user starts it:
``sanas train --nproc 2`` (torchrun's elastic agent on this machine) and ``torchrun ... -m sanas.cli train``.

(i) with augmentation off, drop path 0 and SyncBatchNorm the weights equal a 1-process run at the same global
batch to 1e-4 (and without SyncBatchNorm they do not: the tolerance can tell); (ii) only rank 0 writes files;
(iii) kill -9 of one rank mid-epoch with ``--max-restarts 1``: the job restarts, resumes the last checkpoint and
finishes, losing less than one epoch; a checkpoint of either world size resumes at the other; (iv) a malformed
launch is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sanas.training.distributed import CPUSyncBatchNorm, check_launch, launch_from_env, rank_seed

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")

TINY = ["--token", "1", "1", "1", "--layers", "3", "--filter-num", "4,8,16", "--init-channels", "4",
        "--dataset", "synthetic", "--device", "cpu", "--no-onnx"]
# Two steps (one an epoch): float rounding alone moves weights ~1e-5 (1 vs 2 threads in one process: 1.3e-5).
EXACT = [*TINY, "--train-subset", "32", "--val-subset", "20", "--retain-epoch", "2", "--batch-size", "32",
         "--no-augment", "--drop-path-prob", "0", "--progress", "none"]
# Epochs of a few seconds, so that a kill lands inside one.
LONG = [*TINY, "--train-subset", "1536", "--val-subset", "64", "--retain-epoch", "3", "--batch-size", "32"]


def sanas(*args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sanas.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def torchrun(*args: str, cwd: Path, nproc: int = 2, script: str | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    target = [script] if script else ["-m", "sanas.cli"]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), *target, *args], cwd=cwd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def weight_gap(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].is_floating_point())


@pytest.mark.slow
def test_two_processes_with_sync_bn_train_the_weights_of_one_at_the_same_global_batch(tmp_path: Path) -> None:
    one = sanas("train", *EXACT, "--out", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = sanas("train", *EXACT, "--out", "two", "--nproc", "2", "--sync-bn", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert weight_gap(tmp_path / "one", tmp_path / "two") < 1e-4
    a, b = (json.loads((tmp_path / d / "model.json").read_text()) for d in ("one", "two"))
    for m1, m2 in zip(a["metrics"], b["metrics"], strict=True):  # metrics mean what one process means by them
        assert m1["lr"] == m2["lr"]
        assert m1["train_loss"] == pytest.approx(m2["train_loss"], abs=1e-4)
        assert (m1["train_top1"], m1["val_top1"], m1["val_top5"]) == (m2["train_top1"], m2["val_top1"],
                                                                      m2["val_top5"])
        assert m1["val_loss"] == pytest.approx(m2["val_loss"], abs=1e-4)
    assert a["test"] == pytest.approx(b["test"], abs=1e-4)
    assert "distributed" not in a
    assert b["distributed"]["world_size"] == 2 and b["distributed"]["sync_bn"] is True
    assert b["distributed"]["seeds_epoch0"]["drop_path"] == [rank_seed(0, r, 0, "drop_path") for r in (0, 1)]
    # The tolerance can tell: per-rank BatchNorm statistics (no --sync-bn) train other weights.
    apart = sanas("train", *EXACT, "--out", "apart", "--nproc", "2", cwd=tmp_path)
    assert apart.returncode == 0, apart.stderr
    assert weight_gap(tmp_path / "one", tmp_path / "apart") > 1e-3


@pytest.mark.slow
def test_distillation_from_the_parent_keeps_two_processes_equal_to_one(tmp_path: Path) -> None:
    """Fine-tuning from a parent with --distill: every rank's teacher scores its slice, and the distillation term is
    that rank's share of the global batch like the cross-entropy. 37 images at batch 32: the second step's global
    batch of 5 is split 3 + 2 across the ranks, where a per-rank batch mean would weigh them wrongly."""
    parent = sanas("train", *EXACT, "--out", "parent", cwd=tmp_path)
    assert parent.returncode == 0, parent.stderr
    child = [*TINY, "--token", "0", "1", "0", "--train-subset", "37", "--val-subset", "20", "--retain-epoch", "1",
             "--batch-size", "32", "--no-augment", "--progress", "none", "--evaluation", "inherit", "--parent",
             "parent", "--bn-batches", "0", "--finetune-lr", "0.2"]
    one = sanas("train", *child, "--distill", "0.7", "--out", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = sanas("train", *child, "--distill", "0.7", "--out", "two", "--nproc", "2", "--sync-bn", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert weight_gap(tmp_path / "one", tmp_path / "two") < 1e-4
    assert json.loads((tmp_path / "two" / "model.json").read_text())["recipe"]["distill"] == 0.7
    # The tolerance can tell: without distillation the same fine-tune ends elsewhere.
    plain = sanas("train", *child, "--out", "plain", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert weight_gap(tmp_path / "one", tmp_path / "plain") > 1e-3


@pytest.mark.slow
def test_only_rank_0_writes_files(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    script = str(Path(__file__).with_name("_audited_cli.py"))
    run = torchrun("train", *EXACT, "--out", "model", "--progress", "lines", cwd=tmp_path, script=script,
                   env={"SANAS_AUDIT_DIR": str(audit)})
    assert run.returncode == 0, run.stderr
    logs = {p.name: json.loads(p.read_text()) for p in audit.iterdir()}
    assert sorted(logs) == ["rank0-0.json", "rank1-0.json"], sorted(logs)

    def ours(writes: list[list[str]]) -> list[list[str]]:
        root = str(tmp_path.resolve())
        return [w for w in writes if any(os.path.abspath(p).startswith(root) for p in w[1:])
                and not any(os.path.abspath(p).startswith(str(audit)) for p in w[1:])]

    assert ours(logs["rank1-0.json"]) == []
    written = {Path(p).name for w in ours(logs["rank0-0.json"]) for p in w[1:]}
    assert {"checkpoint.pt", "model.safetensors", "model.json", "model.pt2"} <= written, written
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["checkpoint.pt", "model.json", "model.pt2",
                                                                       "model.safetensors"]
    # progress comes from rank 0 alone: each epoch is reported once
    assert run.stderr.count("final epoch 1/2") == 1, run.stderr


class Watched:
    """A running ``sanas`` command whose stderr is read line by line as it comes."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sanas.cli", *args], cwd=cwd, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, **env}, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.kill()
                pytest.fail(f"never printed {text!r}:\n{''.join(self.lines)[-4000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(10)

    def finish(self, timeout: float = 240) -> str:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not finish in {timeout} s:\n{''.join(self.lines)[-4000:]}")
        self._reader.join(10)
        return "".join(self.lines)


def wait_for_file(path: Path, timeout: float = 60) -> Path:
    """``path`` once it exists: an epoch's progress line is printed just before its checkpoint is written."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)
    return path


def worker_pids(tag: str, rank: int) -> list[int]:
    """The processes of the job tagged ``tag`` whose RANK is ``rank`` (torchrun's workers; a one-process job
    has no RANK: rank 0 is then the process itself)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except OSError:
            continue
        if env.get("SANAS_TEST_TAG") == tag and env.get("RANK", "0") == str(rank):
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_rank_killed_mid_epoch_restarts_the_job_which_resumes_its_last_checkpoint(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    job = Watched(["train", *LONG, "--out", "model", "--nproc", "2", "--max-restarts", "1", "--progress", "lines"],
                  tmp_path, {"SANAS_TEST_TAG": tag})
    job.wait_for("final epoch 1/3")
    wait_for_file(tmp_path / "model" / "checkpoint.pt")
    time.sleep(0.5)  # inside epoch 2 (an epoch takes seconds)
    before = "".join(job.lines)
    pids = worker_pids(tag, 1)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    out = job.finish()
    assert job.proc.returncode == 0, out[-4000:]
    assert "final epoch 2/3" not in before  # the kill landed inside epoch 2
    assert "resuming" in out and "1 of 3 epochs done" in out, out[-4000:]
    # lost less than one epoch: epoch 1 was not trained again, epoch 2 was
    assert out.count("final epoch 1/3") == 1 and out.count("final epoch 2/3") == 1, out[-4000:]
    record = json.loads((tmp_path / "model" / "model.json").read_text())
    assert [m["epoch"] for m in record["metrics"]] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["checkpoint.pt", "model.json", "model.pt2",
                                                                       "model.safetensors"]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(1, 2), (2, 1)])
def test_a_checkpoint_of_one_world_size_resumes_at_another(tmp_path: Path, first: int, then: int) -> None:
    tag = uuid.uuid4().hex
    job = Watched(["train", *LONG, "--out", "model", "--nproc", str(first), "--progress", "lines"], tmp_path,
                  {"SANAS_TEST_TAG": tag})
    job.wait_for("final epoch 1/3")
    checkpoint = wait_for_file(tmp_path / "model" / "checkpoint.pt")
    for pid in worker_pids(tag, 0) + worker_pids(tag, 1):  # torchrun's workers have process groups of their own
        os.kill(pid, signal.SIGKILL)
    job.kill()  # the whole job, kill -9, during epoch 2
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 1
    again = sanas("train", *LONG, "--out", "model", "--nproc", str(then), "--resume", "--progress", "lines",
                  cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "1 of 3 epochs done" in again.stderr and "final epoch 1/3" not in again.stderr
    record = json.loads((tmp_path / "model" / "model.json").read_text())
    assert [m["epoch"] for m in record["metrics"]] == [0, 1, 2]
    assert ("distributed" in record) == (then > 1)


@pytest.mark.parametrize(("args", "message"), [
    (["--nproc", "3", "--batch-size", "16"], "batch_size 16 is not divisible by the world size 3"),
    (["--nproc", "2", "--backend", "nccl"], "backend 'nccl' needs CUDA devices"),
    (["--nproc", "0"], "--nproc is '0', expected an integer >= 1"),
    (["--max-restarts", "-1"], "--max-restarts is '-1', expected an integer >= 0"),
    (["--sync-bn"], "--sync-bn synchronises BatchNorm over several processes"),
    (["--nproc", "2", "--backend", "mpi"], "invalid choice: 'mpi'"),
])
def test_a_malformed_launch_is_one_line_exit_2_and_nothing_written(tmp_path: Path, args: list[str],
                                                                    message: str) -> None:
    run = sanas("train", *TINY, "--retain-epoch", "2", "--batch-size", "16", *args, "--out", "model", cwd=tmp_path,
                timeout=60)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 or "usage:" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_under_torchrun_a_world_size_that_does_not_divide_the_batch_writes_nothing(tmp_path: Path) -> None:
    run = torchrun("train", *TINY, "--retain-epoch", "2", "--batch-size", "16", "--out", "model", cwd=tmp_path,
                   nproc=3)
    assert run.returncode != 0
    assert "sanas train: error: batch_size 16 is not divisible by the world size 3" in run.stderr, run.stderr
    assert "Traceback (most recent call last):\n  File" not in run.stderr.split("sanas train: error")[0]
    assert not (tmp_path / "model").exists()


def test_launch_from_env_reads_torchrun_and_refuses_a_malformed_one() -> None:
    assert launch_from_env(environ={}) is None
    assert launch_from_env(environ={"WORLD_SIZE": "1", "RANK": "0"}) is None
    launch = launch_from_env(environ={"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, cuda=True)
    assert launch is not None and (launch.rank, launch.world_size, launch.local_rank) == (3, 4, 1)
    assert launch.backend == "nccl" and not launch.is_main
    assert launch.device(torch.device("cuda")) == torch.device("cuda", 1)
    assert launch_from_env(environ={"WORLD_SIZE": "2", "RANK": "0"}).backend == "gloo"
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        launch_from_env(environ={"WORLD_SIZE": "two", "RANK": "0"})
    with pytest.raises(ValueError, match="leaves 1 image per process"):
        check_launch(4, 4, "gloo", cuda=False)
    check_launch(4, 8, "nccl", cuda=True)


def test_cpu_sync_batchnorm_alone_is_batchnorm() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5) * 2 + 1
    bn, sync = torch.nn.BatchNorm2d(3), CPUSyncBatchNorm(3)
    sync.load_state_dict(bn.state_dict())
    assert torch.allclose(bn(x), sync(x), atol=1e-6)
    bn.eval(), sync.eval()
    assert torch.allclose(bn(x), sync(x), atol=1e-6)
