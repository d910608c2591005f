"""A search worker for the multi-process tests: runs the SANAS loop on a cheap objective, writes what it saw.

    python _worker.py --study NAME --steps 40 (--run-dir DIR | --storage URL | --server PORT | --client PORT)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence

BUDGET = 3_770_000


def objective(tokens: Sequence[int]) -> float:
    """A cheap, deterministic reward in [0, 1): prefers tokens near 7, plus a hashed ripple so ties are rare."""
    ripple = int.from_bytes(hashlib.sha256(repr([int(t) for t in tokens]).encode()).digest()[:4], "big") / 2**32
    return 0.9 - sum((t - 7) ** 2 for t in tokens) / (100.0 * len(tokens)) + 0.02 * ripple


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--study", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--run-dir")
    p.add_argument("--storage")
    p.add_argument("--server", type=int, help="serve the study on 127.0.0.1:PORT (and search)")
    p.add_argument("--client", type=int, help="search through the server on 127.0.0.1:PORT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds each evaluation takes")
    p.add_argument("--hang-at", type=int, default=0, help="hang (to be killed) on this worker's N-th candidate")
    p.add_argument("--stop-after", type=int, default=0, help="exit after this many rewards")
    p.add_argument("--heartbeat", type=float, default=1.0)
    # Generous: a loaded CI machine can starve a worker for seconds. A killed worker is found by its pid anyway.
    p.add_argument("--grace", type=float, default=30.0)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from sanas.search import SANAS

    kwargs = {"save_checkpoint": args.run_dir, "storage": args.storage}
    if args.server:
        kwargs["server_addr"] = ("127.0.0.1", args.server)
    if args.client:
        kwargs = {"server_addr": ("127.0.0.1", args.client), "is_server": False, "save_checkpoint": None}
    sa = SANAS("DartsSpace", search_steps=args.steps, study_name=args.study, max_params=BUDGET, seed=args.seed,
               heartbeat_interval=args.heartbeat, grace_period=args.grace, poll_interval=0.1, **kwargs)
    seen = []
    candidates = 0
    while sa.next_tokens() is not None:  # next_archs() would also build each network
        candidates += 1
        tokens = sa.tokens
        number = sa.trial_number
        if candidates == args.hang_at:
            print(f"HANG {number}", flush=True)
            time.sleep(3600)
        time.sleep(args.sleep)
        reward = objective(tokens)
        accepted = sa.reward(reward)
        seen.append({"number": number, "tokens": tokens, "reward": reward, "accepted": accepted})
        if args.stop_after and len(seen) >= args.stop_after:
            break
    info = sa.current_info()
    sa.close()
    with open(args.out, "w") as f:
        json.dump({"trials": seen, "info": info}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
