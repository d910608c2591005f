"""Training-step throughput of the full DARTS model on CPU: the plain reference path vs sanas' path.

One command prints a table (median images/s over the timed steps, peak RSS, ratio to the baseline):

    .venv/bin/python benchmarks/train_step.py            # batch 96, 2 threads, 2 warm-up + 5 timed steps

Each configuration runs in its own process (the allocator is chosen at process start with LD_PRELOAD):
  reference         DARTS reference wiring (a ReLU per op), eager float32, contiguous, glibc malloc
  reference+tcm     the same with tcmalloc
  sanas             sanas' DartsNetwork, channels_last, glibc malloc
  sanas+tcm         sanas' DartsNetwork, channels_last, tcmalloc (the default of `make demo`)
  sanas+tcm+ckptN   the same, recomputing the first N cells' activations in backward (less memory)
The step: forward with aux head (weight 0.4), drop path 0.1, backward, global-norm clip 5, SGD momentum 0.9.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {
    "reference": {"net": "reference", "channels_last": False, "tcmalloc": False},
    "reference+tcm": {"net": "reference", "channels_last": False, "tcmalloc": True},
    "sanas-contiguous": {"net": "sanas", "channels_last": False, "tcmalloc": False},
    "sanas": {"net": "sanas", "channels_last": True, "tcmalloc": False},
    "sanas+tcm": {"net": "sanas", "channels_last": True, "tcmalloc": True},
    "sanas+tcm+ckpt7": {"net": "sanas", "channels_last": True, "tcmalloc": True, "checkpoint": 7},
    "sanas+tcm+ckpt13": {"net": "sanas", "channels_last": True, "tcmalloc": True, "checkpoint": 13},
}


def tcmalloc_path() -> str | None:
    found = glob.glob("/usr/lib/*/libtcmalloc_minimal.so.4") + glob.glob("/usr/lib/libtcmalloc_minimal.so.4")
    return found[0] if found else None


def run_one(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from sanas import get_space

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]
    space = get_space("DartsSpace")
    tokens = space.init_tokens()
    if cfg["net"] == "reference":
        sys.path.insert(0, str(Path(__file__).parent))
        from darts_reference import ReferenceNetwork

        net = ReferenceNetwork(space.widths(tokens), space.genotype)
    else:
        net = space.token2arch(tokens)
        net.set_checkpointing(cfg.get("checkpoint", 0))
    memory_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    net = net.to(memory_format=memory_format).train()
    net.set_drop_path_prob(0.1)
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(args.batch, 3, 32, 32).to(memory_format=memory_format)
    y = torch.randint(0, 10, (args.batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits, aux = net(x)
        loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        rates.append(args.batch / (time.perf_counter() - start))
    return {"config": args.config, "median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    parser.add_argument("--config", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_one(args)))
        return

    tcm = tcmalloc_path()
    results = []
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if cfg["tcmalloc"]:
            if tcm is None:
                print(f"skipping {name}: libtcmalloc-minimal4 is not installed", file=sys.stderr)
                continue
            env["LD_PRELOAD"] = tcm
        cmd = [sys.executable, __file__, "--config", name, "--batch", str(args.batch), "--threads",
               str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  {name}: {results[-1]['median']:.1f} img/s", file=sys.stderr, flush=True)

    base = results[0]["median"]
    print(f"\nfull DARTS model (init tokens), batch {args.batch}, {args.threads} threads, "
          f"median of {args.steps} steps after {args.warmup} warm-up\n")
    vs = "vs " + results[0]["config"]
    print(f"| {'config':<17} | {'img/s median':>12} | {'min–max':>11} | {'peak RSS GB':>11} | {vs:>14} |")
    print(f"|{'-' * 19}|{'-' * 14}|{'-' * 13}|{'-' * 13}|{'-' * 16}|")
    for r in results:
        print(f"| {r['config']:<17} | {r['median']:>12.1f} | {r['min']:>5.1f}–{r['max']:<5.1f} | "
              f"{r['peak_rss_gb']:>11.2f} | {r['median'] / base:>13.2f}× |")


if __name__ == "__main__":
    main()
