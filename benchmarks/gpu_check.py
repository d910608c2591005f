"""The GPU check: CUDA tests, full DARTS training steps timed, a 2-GPU data-parallel step, one JSON, in < 10 min.

    bash scripts/gpu_check.sh                        # on a CUDA machine (budgeted for < 10 min on one H100)
    bash scripts/gpu_check.sh --no-compile           # skip the torch.compile configurations (minutes of compiling)
    bash scripts/gpu_check.sh --cpu                  # the same code at tiny sizes on the CPU (automatic without CUDA)
    .venv/bin/python benchmarks/gpu_check.py --json /tmp/check.json --steps 50

1. **tests**: ``pytest -m cuda`` (the tests marked ``cuda``; they skip without a CUDA device).
2. **epoch**: the product's trainer (``sanas.training.Trainer``, ``Recipe`` defaults: augmentation with cutout, aux
   head, drop path, grad clip, SGD, per-batch cosine; bf16 autocast and channels_last on CUDA) on the full
   ``get_space("DartsSpace")`` (20 cells, 36 channels, init tokens) and CIFAR-shaped synthetic data
   (3×32×32, 10 classes, on the device), at batch 96 and at the largest batch that fits (doubled from 96 until
   CUDA runs out of memory, then the last that fitted; ``--max-batch`` caps it), with ``torch.compile`` off and
   on. Each configuration runs ``--warmup`` steps (which pay for compilation and cuDNN's first calls), then
   ``--steps`` timed steps; s/epoch is the timed step × the steps of a 50,000-image epoch, *extrapolated*, not
   an epoch run (the held-out evaluation after an epoch is not timed). Drop path is at 0.1, the second of two
   epochs (the mean of DARTS' ramp). Peak memory is ``torch.cuda.max_memory_allocated`` over the configuration
   (its warm-up included; the images on the device, ~0.3 GB with the trainer's copy, counted).
3. **ddp**: with two or more GPUs, ``benchmarks/ddp_step.py --full --nproc 2``: a 2-process NCCL step of the full
   network against one process at the same global batch (96), and the overhead each rank pays.
4. **JSON** (``--json``; default ``$OUT/gpu_check.json`` when ``$OUT`` is set, else
   ``benchmarks/results/gpu_check-<time>.json``): all of the above with torch, CUDA and cuDNN versions, the
   device, the git commit and whether tracked files differed from it. It is rewritten after every step, so a
   run cut short still leaves what it measured (``"complete": false``).

On the CPU (``--cpu``, or no CUDA device) the same steps run at tiny sizes so that CI keeps the script working: a
3-cell, 4-channel DartsSpace, batch 8 doubled up to ``--max-batch`` (16), 2 steps, compile off (``--compile`` turns
it on), float32 (the CPU recipe's default), one thread, no DDP unless ``--ddp`` (then ``ddp_step.py``'s tiny gloo
run). After ``--budget`` seconds (480) no new configuration starts, and the compiled one at the largest batch is
skipped when the first compilation's time says it would not end in the budget; what was skipped says so (a
compilation already started runs to its end). Exit status 1 when a CUDA test failed, the 2-GPU step failed, or a
configuration failed (running out of memory counts only at the first batch).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import ddp_step  # noqa: E402  (benchmarks/ is not a package)

#: The epoch the s/epoch column is extrapolated to: CIFAR-10's training set.
EPOCH_IMAGES = 50_000


class Check:
    """The run's record, its clock and its budget; :meth:`save` rewrites the JSON."""

    def __init__(self, path: Path, budget_s: float, record: dict[str, Any]) -> None:
        self.path, self.budget_s, self.record = path, budget_s, record
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.elapsed() > self.budget_s

    def log(self, message: str) -> None:
        print(f"[{self.elapsed():5.0f}s] {message}", flush=True)

    def save(self, complete: bool = False) -> None:
        from sanas.atomic import atomic_write_bytes

        self.record["seconds"] = round(self.elapsed(), 1)
        self.record["complete"] = complete
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(self.record, indent=1).encode())


def default_json() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return HERE / "results" / f"gpu_check-{stamp}.json"


def environment(cuda: bool) -> dict[str, Any]:
    env: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                           "host": platform.node(), "platform": platform.platform(), "cpu_cores": ddp_step.cpu_cores(),
                           **ddp_step.provenance(), "cudnn": None, "device": "cpu", "device_name": "CPU",
                           "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(cudnn=torch.backends.cudnn.version(), device="cuda", device_name=props.name,
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}",
                   gpu_names=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    return env


# ----------------------------------------------------------------------------------------------- 1. tests

def run_tests(check: Check, timeout_s: float) -> dict[str, Any]:
    """``pytest -m cuda`` in a subprocess; its counts and the end of its output."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "-o", "addopts=",
           str(ROOT / "tests")]
    check.log(f"tests: {' '.join(cmd[1:5])} ...")
    start = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        rc, out = run.returncode, run.stdout + run.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = None, f"timed out after {timeout_s:g} s\n{e.stdout or ''}"
    lines = [line for line in out.strip().splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else ""
    counts = {}
    for word in ("passed", "failed", "skipped", "error", "errors", "deselected"):
        for part in summary.replace(",", " ,").split(","):
            tokens = part.split()
            if len(tokens) >= 2 and tokens[1] == word and tokens[0].isdigit():
                counts[word.rstrip("s") if word == "errors" else word] = int(tokens[0])
    # 0: all passed; 5: nothing selected (no test marked cuda).
    result = {"command": " ".join(["python", *cmd[1:]]), "returncode": rc, "summary": summary, **counts,
              "ok": rc in (0, 5), "seconds": round(time.perf_counter() - start, 1),
              "output_tail": "\n".join(lines[-30:])}
    check.log(f"tests: {summary or 'no output'} (exit {rc})")
    return result


# ----------------------------------------------------------------------------------------------- 2. epoch

def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e)


def _trainer(space: Any, data: Any, batch: int, device: str, compile_: bool) -> Any:
    from sanas.training import Recipe, Trainer

    if compile_:
        torch._dynamo.reset()  # a fresh compilation per configuration, as a new run would have
    recipe = Recipe(retain_epoch=2, batch_size=batch, device=device, compile=compile_)
    trainer = Trainer(space, space.init_tokens(), data, recipe)
    trainer.epoch = 1  # drop path 0.2 · 1/2: the run's mean, not the first epoch's 0
    return trainer


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_configuration(space: Any, data: Any, batch: int, compile_: bool, args: argparse.Namespace
                       ) -> dict[str, Any]:
    """Warm up, then time ``args.steps`` steps of one configuration (in this process)."""
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = _trainer(space, data, batch, args.device, compile_)
    trainer.train_epoch(None, args.warmup)  # ends with a host sync (it reads the loss)
    _sync(args.device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    trainer.train_epoch(None, args.steps)
    _sync(args.device)
    timed = time.perf_counter() - start
    step = timed / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    name = (f"{'bf16' if trainer.bf16 else 'fp32'}, {'channels_last' if trainer.channels_last else 'contiguous'}, "
            f"{'compile' if compile_ else 'eager'}")
    return {"config": name, "bf16": trainer.bf16, "channels_last": trainer.channels_last, "compile": compile_,
            "batch": batch, "warmup_steps": args.warmup, "warmup_s": warm, "steps": args.steps, "step_s": step,
            "img_s": batch / step, "epoch_s": math.ceil(EPOCH_IMAGES / batch) * step, "peak_gib": peak}


def fits(space: Any, data: Any, batch: int, args: argparse.Namespace) -> tuple[bool, str]:
    """Whether two eager training steps at ``batch`` run without running out of memory."""
    from sanas.training import TrainingFailed

    try:
        trainer = _trainer(space, data, batch, args.device, False)
        trainer.train_epoch(None, 2)
        _sync(args.device)
        return True, ""
    except TrainingFailed as e:  # too large before any activation
        return False, e.reason
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not _is_oom(e):
            raise
        return False, str(e).splitlines()[0]


def largest_batch(check: Check, space: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Double the batch from ``args.batch`` until a step runs out of memory (or ``args.max_batch``); the last
    that fitted."""
    cap = min(args.max_batch, len(data.train_indices))
    batch, fitted, tried = args.batch, args.batch, []
    while batch * 2 <= cap:
        batch *= 2
        if check.over_budget():
            tried.append({"batch": batch, "fits": None, "why": "time budget spent"})
            break
        ok, why = fits(space, data, batch, args)
        _free_memory()  # after the call: the exception and its frames (holding the tensors) are gone
        tried.append({"batch": batch, "fits": ok, **({"why": why} if why else {})})
        check.log(f"epoch: batch {batch} {'fits' if ok else 'does not fit: ' + why[:100]}")
        if not ok:
            break
        fitted = batch
    limit = ("out of memory" if tried and tried[-1]["fits"] is False
             else "time budget" if tried and tried[-1]["fits"] is None else f"--max-batch {cap}")
    return {"batch": fitted, "limited_by": limit, "tried": tried}


def run_epochs(check: Check, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """The epoch section: its rows, the largest-batch search, and whether every configuration ran."""
    from sanas import get_space

    space = get_space("DartsSpace", **({} if args.device == "cuda" else ddp_step.TINY))
    # Training images: the batch × a power of two, so that every doubled batch divides them (no partial batch
    # when the timed steps wrap around an epoch, which would cost a recompilation).
    target = 48_000 if args.device == "cuda" else max(args.max_batch, args.batch * (args.warmup + args.steps))
    images = args.batch * 2 ** max(0, math.ceil(math.log2(target / args.batch)))
    check.log(f"epoch: {images:,} synthetic 3×32×32 images to {args.device}; DartsSpace "
              f"{'20 cells, 36 channels' if args.device == 'cuda' else '3 cells, 4 channels'} "
              f"({space.count_params(space.init_tokens()):,} params)")
    data = ddp_step.synthetic_data(images, args.device)
    check.record["epoch_setup"] = {
        "space": space.config(), "params": space.count_params(space.init_tokens()), "train_images": images,
        "epoch_images": EPOCH_IMAGES, "warmup": args.warmup, "steps": args.steps,
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "drop_path_prob": 0.1,
        "note": "s/epoch = step time x ceil(50,000 / batch): extrapolated from the timed steps, training only"}
    rows: list[dict[str, Any]] = []
    ok = True

    def measure(batch: int, compile_: bool, expected_s: float = 0.0) -> dict[str, Any] | None:
        """Time one configuration, unless the budget is spent or would be by ``expected_s`` more seconds."""
        nonlocal ok
        label = f"batch {batch}, {'compile' if compile_ else 'eager'}"
        if check.elapsed() + expected_s > check.budget_s:
            why = "time budget" + (f" (its compilation would take ~{expected_s:.0f} s)" if expected_s else "")
            check.log(f"epoch: {label}: skipped, {why} of {args.budget:g} s")
            rows.append({"batch": batch, "compile": compile_, "skipped": why})
            return None
        check.log(f"epoch: {label}: {args.warmup} warm-up + {args.steps} timed steps")
        try:
            row = time_configuration(space, data, batch, compile_, args)
        except Exception as e:  # recorded, and the check goes on with the next configuration
            oom = _is_oom(e)
            if not oom or batch == args.batch:  # out of memory above the first batch: the search's margin
                ok = False
            row = {"batch": batch, "compile": compile_, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}",
                   "oom": oom}
        _free_memory()
        rows.append(row)
        if "error" in row:
            check.log(f"epoch: {label}: {row['error'][:200]}")
        else:
            check.log(f"epoch: {row['config']}, batch {batch}: {row['img_s']:,.0f} img/s, "
                      f"{row['epoch_s']:.1f} s/epoch (extrapolated), warm-up {row['warmup_s']:.1f} s"
                      + (f", peak {row['peak_gib']:.2f} GiB" if row["peak_gib"] is not None else ""))
        check.save()
        return row

    # Eager first (quick; the largest batch is found eagerly), the compiled configurations last: the one at the
    # largest batch only if its compilation, as long as the first one's, still fits in the budget.
    measure(args.batch, False)
    search = largest_batch(check, space, data, args)
    check.log(f"epoch: largest batch {search['batch']} (limited by {search['limited_by']})")
    check.record["largest_batch"] = search
    check.save()
    best = search["batch"]
    if best != args.batch:
        row = measure(best, False)
        if row is not None and row.get("oom"):  # it fitted for two steps, not for all: one step down
            best = search["timed_at"] = best // 2
            if best != args.batch:
                measure(best, False)
    if args.compile:
        first = measure(args.batch, True)
        if best != args.batch:
            measure(best, True, expected_s=first["warmup_s"] if first and "warmup_s" in first else 0.0)
    return rows, search, ok


def epoch_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'configuration':<32} {'batch':>6} {'img/s':>9} {'s/epoch*':>9} {'peak GiB':>9} {'warm-up s':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "config" in r:
            peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
            lines.append(f"{r['config']:<32} {r['batch']:>6} {r['img_s']:>9,.0f} {r['epoch_s']:>9.1f} {peak:>9} "
                         f"{r['warmup_s']:>10.1f}")
        else:
            what = r.get("error") or f"skipped: {r['skipped']}"
            lines.append(f"{'compile' if r['compile'] else 'eager':<32} {r['batch']:>6}  {what[:70]}")
    lines.append(f"* s/epoch: the timed steps' mean × the steps of a {EPOCH_IMAGES:,}-image epoch (extrapolated); "
                 f"training only")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- 3. ddp

def run_ddp(check: Check, args: argparse.Namespace) -> dict[str, Any]:
    cuda = args.device == "cuda"
    argv = (["--full", "--device", "cuda", "--steps", "20", "--repeats", str(args.ddp_repeats)] if cuda
            else ["--device", "cpu", "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", "1"])
    argv += ["--nproc", "2", "--timeout", "300"]
    check.log(f"ddp: benchmarks/ddp_step.py {' '.join(argv)}")
    try:
        record = ddp_step.main(argv)
    except (ddp_step.BenchmarkFailed, OSError, SystemExit) as e:  # SystemExit: its argument checks
        check.log(f"ddp: failed: {str(e)[:300]}")
        return {"argv": argv, "error": str(e)}
    return {"argv": argv, **{k: record[k] for k in ("network", "batch", "steps", "repeats", "rows", "seconds")}}


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (automatic without CUDA)")
    parser.add_argument("--json", type=Path, help="where to write the record (default: $OUT/gpu_check.json or "
                                                  "benchmarks/results/gpu_check-<time>.json)")
    parser.add_argument("--batch", type=int, help="the first batch (96 on CUDA, 8 on the CPU)")
    parser.add_argument("--max-batch", type=int, help="cap on the doubled batch (8192 on CUDA, 16 on the CPU)")
    parser.add_argument("--steps", type=int, help="timed steps per configuration (30 on CUDA, 2 on the CPU)")
    parser.add_argument("--warmup", type=int, help="warm-up steps per configuration (5 on CUDA, 1 on the CPU)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: on CUDA only)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (the product leaves it off)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of a CPU run (1)")
    parser.add_argument("--tests", action=argparse.BooleanOptionalAction, default=True, help="run pytest -m cuda")
    parser.add_argument("--ddp", action=argparse.BooleanOptionalAction, default=None,
                        help="the 2-process step (default: when two GPUs are visible)")
    parser.add_argument("--ddp-repeats", type=int, default=2, help="alternated repeats of the 2-GPU step (2)")
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds after which no new configuration starts (480)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    args.device = "cuda" if cuda else "cpu"
    defaults = {"batch": (96, 8), "max_batch": (8192, 16), "steps": (30, 2), "warmup": (5, 1), "compile": (True, False),
                "ddp": (torch.cuda.device_count() >= 2 if cuda else False, False)}
    for name, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, on_cuda if cuda else on_cpu)
    if args.batch < 2 or args.steps < 1 or args.warmup < 1:
        parser.error("--batch must be at least 2, --steps and --warmup at least 1")
    if not cuda:  # a smoke run: one thread keeps it quick on a loaded machine (OpenMP threads spin-wait)
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    path = args.json or default_json()
    command = " ".join(["python", os.path.relpath(__file__, ROOT), *(sys.argv[1:] if argv is None else argv)])
    check = Check(path, args.budget, {"command": command, **environment(cuda),
                                      "settings": {k: v for k, v in vars(args).items() if k != "json"}})
    dirty = " + local changes" if check.record["git_dirty"] else ""
    print(f"gpu_check: {check.record['device_name']}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"commit {(check.record['git_commit'] or 'unknown')[:10]}{dirty}; writing {path}", flush=True)
    check.save()
    ok = True
    if args.tests:
        check.record["tests"] = run_tests(check, timeout_s=300)
        ok &= check.record["tests"]["ok"]
        check.save()
    rows, search, epochs_ok = run_epochs(check, args)
    check.record["epochs"] = rows
    ok &= epochs_ok
    check.save()
    if args.ddp:
        if check.over_budget():
            check.record["ddp"] = {"skipped": "time budget"}
        else:
            check.record["ddp"] = run_ddp(check, args)
            ok &= "error" not in check.record["ddp"]
    else:
        check.record["ddp"] = {"skipped": f"{check.record['gpus']} GPU(s) visible" if cuda else "CPU run without --ddp"}
    check.record["ok"] = ok
    check.save(complete=True)

    print()
    if args.tests:
        t = check.record["tests"]
        print(f"tests (pytest -m cuda): {t['summary']} (exit {t['returncode']})")
    net = "full DARTS, 20 cells, 36 channels" if cuda else "tiny DARTS, 3 cells, 4 channels"
    print(f"epoch ({net}; largest batch {search['batch']}, limited by {search['limited_by']}):")
    print(epoch_table(rows))
    ddp = check.record["ddp"]
    if "rows" in ddp:
        print(f"ddp ({ddp['network']}, global batch {ddp['batch']}):")
        for r in ddp["rows"]:
            over = f"  overhead/rank {1000 * r['overhead_s']:+.1f} ms" if r["overhead_s"] is not None else ""
            print(f"  {r['config']:<44} {r['step_s']:.4f} s/step  {r['vs_1_process']:.2f}x 1 process{over}")
    else:
        print(f"ddp: {ddp.get('skipped') or ddp.get('error', '')[:300]}")
    print(f"{'ok' if ok else 'FAILED'} in {check.elapsed():.0f} s; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
