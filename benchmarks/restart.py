"""How long a restarted worker takes to get back to work after its predecessor was killed mid-candidate.

    .venv/bin/python benchmarks/restart.py               # 3 runs; production heartbeat (10 s) and grace (60 s)
    .venv/bin/python benchmarks/restart.py --runs 5 --grace 60

A worker claims the one candidate of a 1-step search and is killed (SIGKILL); a new worker process starts on the
same run directory and asks for work, which it can only get once the dead candidate is freed. ``launch → work``
is from starting the new process to its first candidate (the dead one, proposed again); ``SANAS() → work`` leaves
out the interpreter start and imports. Row ``same machine`` is what sanas does now (the dead worker's process is
seen gone); ``heartbeat only`` hides the dead worker's identity, as a worker on another machine sees it and as
every worker saw it before: then only the grace period frees the candidate.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
launched = float(sys.argv[3])
from sanas.search import SANAS
from sanas.search import lease
if sys.argv[2] == "hide":  # as if on another machine: no process to look at, only the heartbeat
    real = lease.owner_identity
    lease.owner_identity = lambda: {**real(), "ns": "another-machine"}
made = time.time()
sa = SANAS("DartsSpace", search_steps=1, max_params=3_770_000, save_checkpoint=sys.argv[1], study_name="bench",
           heartbeat_interval=10, grace_period=float(sys.argv[4]))
tokens = sa.next_tokens()
print("WORK", sa.trial_number, time.time() - launched, time.time() - made, flush=True)
if sys.argv[5] == "hang":
    time.sleep(3600)
sa.reward(0.5)
sa.close()
"""


def run_once(mode: str, grace: float) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as run_dir:
        victim = subprocess.Popen([sys.executable, "-c", CHILD, run_dir, mode, str(time.time()), str(grace), "hang"],
                                  stdout=subprocess.PIPE, text=True)
        line = victim.stdout.readline()
        assert line.startswith("WORK 0 "), line
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        restarted = subprocess.run([sys.executable, "-c", CHILD, run_dir, "show", str(time.time()), str(grace),
                                    "finish"], capture_output=True, text=True, timeout=grace + 600)
        word, number, since_launch, since_sanas = restarted.stdout.split()
        assert word == "WORK", restarted.stderr
        return float(since_launch), float(since_sanas), int(number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--grace", type=float, default=60.0, help="grace period of the heartbeat (production: 60)")
    parser.add_argument("--heartbeat-only-runs", type=int, default=1,
                        help="runs of the heartbeat-only row (each waits out the grace period)")
    args = parser.parse_args()
    print(f"a worker killed mid-candidate, a new one started on its run directory; grace period {args.grace:g} s; "
          f"medians")
    print(f"{'dead worker found by':<22} {'runs':>4} {'launch → work s':>16} {'SANAS() → work s':>17} {'trial':>6}")
    for name, mode, runs in (("same machine", "show", args.runs),
                             ("heartbeat only", "hide", args.heartbeat_only_runs)):
        results = [run_once(mode, args.grace) for _ in range(runs)]
        launch = statistics.median(r[0] for r in results)
        sanas = statistics.median(r[1] for r in results)
        print(f"{name:<22} {runs:>4} {launch:>16.2f} {sanas:>17.2f} {results[0][2]:>6}")
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cores; run directory on {Path(tempfile.gettempdir())})")


if __name__ == "__main__":
    main()
