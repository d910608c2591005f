"""A data-parallel training step vs one process at the same global batch, side by side.

    .venv/bin/python benchmarks/ddp_step.py                   # tiny DARTS on CPU: 1 process vs 2 (gloo)
    .venv/bin/python benchmarks/ddp_step.py --repeats 5 --out benchmarks/data/ddp_step   # the committed table
    .venv/bin/python benchmarks/ddp_step.py --full --nproc 2  # full DARTS; NCCL on 2 GPUs when there are 2

Runs the product's trainer (``sanas.training.Trainer`` with the recipe's defaults: augmentation, cutout, aux head,
drop path, grad clip, SGD, per-batch cosine; bf16 autocast and channels_last on CUDA, float32 and channels_last on
CPU) for ``--steps`` optimizer steps after ``--warmup`` steps, in fresh processes. Drop path is timed at 0.1 (the
second of two epochs: the mean of DARTS' ramp from 0 to 0.2), not at the first epoch's 0.

The configurations, each in processes of its own:

* ``1 process``: the whole global batch ``--batch`` in one process (on CPU with every core's thread);
* ``1 process, T thread(s)`` (CPU): the same with the threads one rank gets (cores / ``--nproc``);
* ``one rank's share alone``: ``--batch / --nproc`` images in one process with one rank's threads (or one GPU),
  no communication: the step each rank would take if data parallelism were free;
* ``N processes``: ``--nproc`` ranks under torchrun (gloo on CPU, NCCL on CUDA), the global batch split evenly;
* ``N processes, SyncBatchNorm``: the same with BatchNorm statistics over the global batch.

The configurations alternate ``--repeats`` times (a slow spell of the machine hits every one) and the table reports
medians. "vs 1 process" is the ratio of step times (below 1 is faster); "overhead/rank" is a data-parallel step
minus the share-alone step: what each rank pays for gradient all-reduce, synchronisation and (with SyncBatchNorm)
the statistics' all-reduces. Peak memory is per process (the largest rank): resident set over the process's life
on CPU, ``max_memory_allocated`` after warm-up on CUDA. ``--json`` writes the measurements; ``--out PREFIX``
writes ``PREFIX.json`` and ``PREFIX.md`` (the table and the exact command).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
TINY = {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4}
TINY_NAME = "tiny DARTS (3 cells, 4 channels)"
FULL_NAME = "full DARTS (20 cells, 36 channels)"


class BenchmarkFailed(RuntimeError):
    """A configuration's processes failed; the message holds the end of their stderr."""


def provenance() -> dict[str, Any]:
    """Where the numbers come from: torch, Python, the git commit and whether tracked files differ from it."""
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=HERE, capture_output=True, text=True, check=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "git_commit": git("rev-parse", "HEAD"), "git_dirty": None if status is None else status != "",
            "git_changed": None if status is None else status.splitlines()[:50]}


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def synthetic_data(train_images: int, device: torch.device | str) -> Any:
    """CIFAR-shaped synthetic data (3×32×32, 10 classes) with exactly ``train_images`` training images."""
    from sanas.training import load_dataset, split_data

    held = max(10, train_images // 100)  # at least one image of each class held out
    total = train_images + 2 * held
    dataset = load_dataset("synthetic", train_size=total, test_size=10, channels=3)
    # About `held` held out, then a class-balanced subset: the training part has exactly train_images images.
    return split_data(dataset, val_fraction=held / total, train_subset=train_images).to(device)


def build(full: bool, batch: int, steps: int, device: str, sync_bn: bool) -> Any:
    """The trainer of one process (the launch read from torchrun's environment, if any), ``steps`` steps per
    epoch, at its second epoch (drop path 0.1)."""
    from sanas import get_space
    from sanas.training import Recipe, Trainer
    from sanas.training.distributed import init_process_group, launch_from_env

    launch = launch_from_env("auto", cuda=device == "cuda")
    if launch is not None:
        init_process_group(launch)
    space = get_space("DartsSpace") if full else get_space("DartsSpace", **TINY)
    target = launch.device(torch.device(device)) if launch is not None else torch.device(device)
    data = synthetic_data(batch * steps, target)
    recipe = Recipe(retain_epoch=2, batch_size=batch, device=str(target))
    trainer = Trainer(space, space.init_tokens(), data, recipe, launch=launch, sync_bn=sync_bn)
    trainer.epoch = 1  # drop path 0.2 · 1/2: the run's mean, not the first epoch's 0
    return trainer


def worker(args: argparse.Namespace) -> None:
    """One process of one measurement: warm up, time ``steps`` steps, rank 0 writes the result."""
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = build(args.full, args.batch, args.steps + args.warmup, args.device, args.sync_bn)
    cuda = trainer.device.type == "cuda"
    trainer.train_epoch(None, args.warmup)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    from sanas.training.distributed import barrier

    barrier()
    start = time.perf_counter()
    trainer.train_epoch(None, args.steps)  # ends with a host sync (the loss check), and an all-reduce under DDP
    if cuda:
        torch.cuda.synchronize()
    barrier()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    peaks = [peak]
    if trainer.launch is not None:
        import torch.distributed as dist

        gathered: list[Any] = [None] * trainer.launch.world_size
        dist.all_gather_object(gathered, peak)
        peaks = gathered
    if trainer.launch is None or trainer.launch.is_main:
        Path(args.result).write_text(json.dumps({"step_s": seconds / args.steps, "peak_mib": max(peaks),
                                                 "threads": torch.get_num_threads()}))
    if trainer.launch is not None:
        import torch.distributed as dist

        dist.destroy_process_group()
        # Leave without the interpreter's teardown: with DDP over gloo, torch 2.13 aborts there in about one exit
        # in five ("terminate called without an active exception", SIGABRT) after everything has finished,
        # which torchrun reports as a failed job. The result is written and the group destroyed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def measure(config: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """Run one configuration in fresh processes and read its result."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        own = [__file__, "--worker", "--result", str(result), "--batch", str(config["batch"]), "--steps",
               str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
               "--threads", str(config.get("threads", 0)),
               *(["--full"] if args.full else []), *(["--sync-bn"] if config.get("sync_bn") else [])]
        env = dict(os.environ)
        if config.get("threads"):  # torch reads it at import; torchrun would set 1 per rank unless told
            env["OMP_NUM_THREADS"] = str(config["threads"])
        if config["nproc"] > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                   str(config["nproc"]), *own]
        else:
            cmd = [sys.executable, *own]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkFailed(f"ddp_step.py: {config['name']} took over {args.timeout:g} s") from None
        if run.returncode != 0 or not result.exists():
            raise BenchmarkFailed(f"ddp_step.py: {config['name']} failed (exit {run.returncode}):\n"
                                  f"{run.stderr[-3000:]}")
        return json.loads(result.read_text())


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    n, share = args.nproc, args.batch // args.nproc
    if args.device == "cuda":
        backend = "NCCL"
        configs: list[dict[str, Any]] = [
            {"name": "1 process (1 GPU)", "nproc": 1, "batch": args.batch, "base": True},
            {"name": f"one rank's share alone (batch {share})", "nproc": 1, "batch": share, "share": True}]
        rank = "1 GPU each"
    else:
        backend = "gloo"
        cores = cpu_cores()
        per_rank = max(1, cores // n)
        threads = f"{per_rank} thread{'s' if per_rank > 1 else ''}"
        configs = [{"name": f"1 process, {cores} threads", "nproc": 1, "batch": args.batch, "threads": cores,
                    "base": True}]
        if per_rank != cores:
            configs.append({"name": f"1 process, {threads}", "nproc": 1, "batch": args.batch, "threads": per_rank})
        configs.append({"name": f"one rank's share alone ({threads}, batch {share})", "nproc": 1, "batch": share,
                        "threads": per_rank, "share": True})
        rank = f"{threads} each"
    per_rank_threads = configs[-1].get("threads", 0)  # the share's: one rank's
    configs.append({"name": f"{n} processes ({backend}, {rank})", "nproc": n, "batch": args.batch,
                    "threads": per_rank_threads, "ddp": True})
    configs.append({"name": f"{n} processes, SyncBatchNorm", "nproc": n, "batch": args.batch,
                    "threads": per_rank_threads, "sync_bn": True, "ddp": True})
    return configs


def table(record: dict[str, Any]) -> str:
    """The printed table (also the Markdown file's)."""
    lines = ["| config | global batch | s/step | img/s | vs 1 process | overhead/rank | peak MiB/proc |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in record["rows"]:
        overhead = (f"{1000 * r['overhead_s']:+.1f} ms ({100 * r['overhead_s'] / r['share_step_s']:+.0f} %)"
                    if r.get("overhead_s") is not None else "")
        lines.append(f"| {r['config']} | {r['batch']} | {r['step_s']:.4f} | {r['img_s']:.1f} | "
                     f"{r['vs_1_process']:.2f} | {overhead} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def headline(record: dict[str, Any]) -> str:
    return (f"{record['network']}, global batch {record['batch']}, {record['steps']} timed steps after "
            f"{record['warmup']} warm-up, median of {record['repeats']} alternated repeats, {record['device_name']}"
            + (f", load average {record['load_1min'][0]:.1f} before / {record['load_1min'][1]:.1f} after"
               if record.get("load_1min", [None])[0] is not None else ""))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full DARTS network (20 cells, 36 channels)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="global batch (default: 96 full, 32 tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 full, 30 tiny)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for one configuration's processes")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--out", type=Path, help="write PREFIX.json and PREFIX.md (table and command)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch = args.batch or (96 if args.full else 32)
    args.steps = args.steps or (20 if args.full else 30)
    if args.worker:
        worker(args)
        return {}
    if args.nproc < 2:
        parser.error("--nproc must be at least 2: the benchmark compares data-parallel processes with one")
    if args.batch % args.nproc or args.batch // args.nproc < 2:
        parser.error(f"--batch {args.batch} must split into --nproc {args.nproc} equal shares of 2 or more images")
    if args.device == "cuda" and torch.cuda.device_count() < args.nproc:
        parser.error(f"--nproc {args.nproc} needs {args.nproc} GPUs, {torch.cuda.device_count()} visible")
    command = shlex.join([os.path.relpath(sys.executable) if argv is None else "python",
                          os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)])
    configs = configurations(args)
    runs: dict[str, list[dict[str, float]]] = {c["name"]: [] for c in configs}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    for repeat in range(args.repeats):
        for config in configs:  # alternated, so that a slow spell of the machine hits every configuration
            result = measure(config, args)
            runs[config["name"]].append(result)
            if not args.quiet:
                print(f"[{time.perf_counter() - start:6.0f}s] repeat {repeat + 1}/{args.repeats} "
                      f"{config['name']}: {1000 * result['step_s']:.1f} ms/step", flush=True)
    median = {name: statistics.median(r["step_s"] for r in results) for name, results in runs.items()}
    base = next(median[c["name"]] for c in configs if c.get("base"))
    share = next(median[c["name"]] for c in configs if c.get("share"))
    rows = []
    for c in configs:
        step = median[c["name"]]
        rows.append({"config": c["name"], "nproc": c["nproc"], "batch": c["batch"], "threads": c.get("threads"),
                     "sync_bn": bool(c.get("sync_bn")), "step_s": step, "img_s": c["batch"] / step,
                     "vs_1_process": step / base, "overhead_s": step - share if c.get("ddp") else None,
                     "share_step_s": share, "peak_mib": max(r["peak_mib"] for r in runs[c["name"]]),
                     "runs": runs[c["name"]]})
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"CPU ({cpu_cores()} cores)")
    record = {"command": command, "network": FULL_NAME if args.full else TINY_NAME, "device": args.device,
              "device_name": device_name, "full": args.full, "nproc": args.nproc, "batch": args.batch,
              "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "cores": cpu_cores(),
              "seconds": time.perf_counter() - start, "load_1min": [load_before, os.getloadavg()[0]
                                                                  if hasattr(os, "getloadavg") else None],
              **provenance(), "rows": rows}
    print(headline(record))
    print(table(record), flush=True)
    from sanas.atomic import atomic_write_bytes

    if args.json:
        atomic_write_bytes(args.json, json.dumps(record, indent=1).encode())
    if args.out:
        atomic_write_bytes(args.out.with_suffix(".json"), json.dumps(record, indent=1).encode())
        dirty = " (tracked files differed from it)" if record["git_dirty"] else ""
        md = (f"# Data-parallel step vs one process (`benchmarks/ddp_step.py`)\n\n"
              f"    {command}\n\n{headline(record)}; torch {record['torch']}, commit "
              f"{(record['git_commit'] or 'unknown')[:10]}{dirty}; {record['seconds']:.0f} s in all.\n\n"
              f"{table(record)}\n\n"
              f"s/step and img/s: the global batch's step, medians over the repeats. vs 1 process: step time / the "
              f"first row's. overhead/rank: the data-parallel step minus one rank's share trained alone with the "
              f"same threads (what communication and synchronisation cost each rank). Peak MiB/proc: resident set "
              f"of the largest process (CPU) or `max_memory_allocated` (CUDA). Every run: "
              f"[`{args.out.with_suffix('.json').name}`]({args.out.with_suffix('.json').name}).\n")
        atomic_write_bytes(args.out.with_suffix(".md"), md.encode())
    return record


if __name__ == "__main__":
    try:
        main()
    except BenchmarkFailed as e:
        sys.exit(str(e))
