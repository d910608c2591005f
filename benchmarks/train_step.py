"""Training-step throughput of the full DARTS model on CPU: the plain reference path vs sanas' path.

One command prints a table (median images/s over the timed steps, peak RSS, ratio to the baseline):

    .venv/bin/python benchmarks/train_step.py            # batch 96, 2 threads, 2 warm-up + 5 timed steps
    .venv/bin/python benchmarks/train_step.py --rounds 3 # every configuration 3 times, interleaved (~27 min)
    .venv/bin/python benchmarks/train_step.py --configs reference+cl+tcm,sanas+tcm --rounds 3
                                                         # the two networks at equal settings (sanas' defaults)

The first configuration named is the baseline of the ratio column.

With ``--rounds R`` the configurations run in turn R times over; each ratio is taken within a round (so a
change of machine load between rounds cancels out) and the table shows medians over the rounds.

Each configuration runs in its own process (the allocator is chosen at process start with LD_PRELOAD):
  reference         DARTS reference wiring (a ReLU per op), eager float32, contiguous, glibc malloc
  reference+tcm     the same with tcmalloc
  reference+cl+tcm  the same, channels_last: sanas' settings, so the ratio to it is what the network code gains
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
    "reference+cl+tcm": {"net": "reference", "channels_last": True, "tcmalloc": True},
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
    space = get_space("DartsSpace", genotype=args.genotype)
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
    parser.add_argument("--genotype", default="PADDLESLIM_DARTS_V2", help="DartsSpace's genotype (or DARTS_V2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="run every configuration this many times, interleaved")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    parser.add_argument("--config", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_one(args)))
        return

    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    try:
        from sanas import get_space

        get_space("DartsSpace", genotype=args.genotype)
    except ValueError as e:
        parser.error(str(e))
    if unknown or args.rounds < 1:
        parser.error(f"unknown configuration {unknown[0]!r}, expected some of {', '.join(CONFIGS)}" if unknown
                     else f"--rounds is {args.rounds}, expected an integer >= 1")
    tcm = tcmalloc_path()
    if tcm is None:
        skipped = [n for n in names if CONFIGS[n]["tcmalloc"]]
        if skipped:
            print(f"skipping {', '.join(skipped)}: libtcmalloc-minimal4 is not installed", file=sys.stderr)
        names = [n for n in names if n not in skipped]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for round_ in range(args.rounds):
        for name in names:
            env = dict(os.environ)
            env.pop("LD_PRELOAD", None)
            if CONFIGS[name]["tcmalloc"]:
                env["LD_PRELOAD"] = tcm
            cmd = [sys.executable, __file__, "--config", name, "--batch", str(args.batch), "--threads",
                   str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps), "--genotype",
                   args.genotype]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"  round {round_ + 1}/{args.rounds} {name}: {runs[name][-1]['median']:.1f} img/s",
                  file=sys.stderr, flush=True)

    base = names[0]
    print(f"\nfull DARTS model ({args.genotype}, init tokens), batch {args.batch}, {args.threads} threads, median of "
          f"{args.steps} steps after {args.warmup} warm-up; {args.rounds} round(s), medians over rounds\n")
    vs = f"vs {base}"
    w = max(18, len(vs))
    print(f"| {'config':<17} | {'img/s median':>12} | {'rounds min–max':>14} | {'peak RSS GB':>11} | {vs:>{w}} |")
    print(f"|{'-' * 19}|{'-' * 14}|{'-' * 16}|{'-' * 13}|{'-' * (w + 2)}|")
    for name in names:
        rates = [r["median"] for r in runs[name]]
        ratios = [r["median"] / b["median"] for r, b in zip(runs[name], runs[base], strict=True)]
        spread = f"{min(rates):.1f}–{max(rates):.1f}"
        ratio = f"{statistics.median(ratios):.2f}×"
        if args.rounds > 1:
            ratio += f" ({min(ratios):.2f}–{max(ratios):.2f})"
        print(f"| {name:<17} | {statistics.median(rates):>12.1f} | {spread:>14} | "
              f"{max(r['peak_rss_gb'] for r in runs[name]):>11.2f} | {ratio:>{w}} |")


if __name__ == "__main__":
    main()
