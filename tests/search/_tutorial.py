"""PaddleSlim's SANAS tutorial loop (its section 9), ported the way a user would: new imports, PyTorch model code.

    python _tutorial.py --port PORT --server --run-dir DIR --out OUT.json   # the tutorial's process
    python _tutorial.py --port PORT --client --out OUT.json                 # another machine's

Kept as in the tutorial: ``SANAS(config, server_addr=(SERVER_ADDRESS, PORT), search_steps=SEARCH_STEPS,
is_server=...)``, ``for step in range(SEARCH_STEPS)``, the parameters counted in millions and ``continue`` past a
network over ``MAX_PARAMS`` *without* calling ``reward``, and ``reward(mean of the last two accuracies)``. The
one line a port needs: ``next_archs()`` returns ``[]`` once the search is over (PaddleSlim's client killed its
process there instead). Training is replaced by a deterministic accuracy curve so the test runs in seconds, and
the script ends without ``close()``, as the tutorial does.

Test scaffolding, outside the tutorial's loop: with ``--joined DIR --clients N`` each client leaves a file in DIR
once connected, and the server's first "training" waits for N of them, so that the server cannot finish the whole
search alone while its clients are still importing torch (a client started after its server has finished cannot
connect, and says so). ``--connect-timeout`` bounds a late client's wait for a server that is already gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _worker import objective

from sanas import SANAS  # PaddleSlim: from paddleslim.nas import SANAS

SERVER_ADDRESS = ""
SEARCH_STEPS = 8
RETAIN_EPOCH = 3
#: The tiny space's init network has 14,178 parameters: "no larger than the original", in millions as the seed.
MAX_PARAMS = 0.0142
CONFIG = [("DartsSpace", {"layers": 5, "init_channels": 4, "filter_num": [4, 8, 12, 16, 24]})]


def count_parameters_in_MB(model) -> float:  # the tutorial's name
    """The tutorial's count, over a PyTorch module: trainable parameters outside the auxiliary head, in millions."""
    return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and "aux" not in name) / 1e6


def train_and_validate(tokens: list[int], epochs: int) -> list[float]:
    """Stands in for the tutorial's train/valid epochs: a validation accuracy per epoch, rising to the objective."""
    return [objective(tokens) * (1 - 0.5 ** (epoch + 1)) for epoch in range(epochs)]


def wait_for_clients(joined: Path, clients: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(list(joined.glob("client-*"))) < clients and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--server", action="store_true")
    role.add_argument("--client", action="store_true")
    p.add_argument("--run-dir")
    p.add_argument("--out", required=True)
    p.add_argument("--joined", type=Path, help="test scaffolding: clients check in here (see the docstring)")
    p.add_argument("--clients", type=int, default=0, help="the server waits for this many check-ins")
    p.add_argument("--connect-timeout", type=float, help="test scaffolding: a client's bound on reaching the server")
    args = p.parse_args()

    host = SERVER_ADDRESS if args.server else "127.0.0.1"
    bound = {} if args.connect_timeout is None else {"connect_timeout": args.connect_timeout}
    sa_nas = SANAS(CONFIG, server_addr=(host, args.port), search_steps=SEARCH_STEPS, is_server=args.server,
                   save_checkpoint=args.run_dir if args.server else None, **bound)
    if args.joined is not None and args.client:
        (args.joined / f"client-{os.getpid()}").touch()
    evaluated, skipped, ended = [], [], "steps"
    for step in range(SEARCH_STEPS):
        archs = sa_nas.next_archs()
        if not archs:
            ended = "search over"
            break
        archs = archs[0]
        current_params = count_parameters_in_MB(archs)
        if current_params > MAX_PARAMS:
            skipped.append(sa_nas.trial_number)
            continue
        if args.joined is not None and args.server:
            wait_for_clients(args.joined, args.clients)
        valid_top1_list = train_and_validate(sa_nas.tokens, RETAIN_EPOCH)
        number = sa_nas.trial_number
        reward = float(valid_top1_list[-1] + valid_top1_list[-2]) / 2
        accepted = sa_nas.reward(reward)
        evaluated.append({"number": number, "reward": reward, "accepted": accepted, "step": step})
    with open(args.out, "w") as f:
        json.dump({"evaluated": evaluated, "skipped": skipped, "ended": ended}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
