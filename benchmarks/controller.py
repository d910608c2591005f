"""Controller benchmark: proposal latency vs. study size, and 8 concurrent workers on PostgreSQL.

    .venv/bin/python benchmarks/controller.py [--postgres URL] [--sizes 0 100 1000] [--workers 8] [--steps 400]

Latency is ``SANAS.next_tokens()`` — the controller's part of ``next_archs()`` (read the study, replay the
chain, propose, claim); building the network is the space's cost and is printed once for reference. Studies
are pre-filled with finished trials shaped like real ones (tokens, draw, parameters). The throughput run uses
a 0-cost objective, so it measures the controller and the database only.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta

import optuna
from optuna.trial import FrozenTrial, TrialState

from sanas import get_space
from sanas.search import SANAS
from sanas.search.chain import STATUS_KEY, TOKENS_KEY, U_KEY, VOID_STATUSES, acceptance_draw, trial_tokens
from sanas.search.samplers import param_name, token_distributions

DEFAULT_PG = os.environ.get("SANAS_TEST_POSTGRES_URL", "postgresql+psycopg2://sanas:sanas@127.0.0.1:5432/sanas_test")
BUDGET = 3_770_000


def reward_of(tokens: list[int]) -> float:
    return 0.9 - sum((t - 7) ** 2 for t in tokens) / 2000.0 + random.Random(str(tokens)).random() * 0.01


def prefill(sa: SANAS, n: int) -> None:
    """Add ``n`` finished trials along a random one-token walk, as a real search would have left them."""
    space = sa.space
    rng = random.Random(0)
    tokens = space.init_tokens()
    seen = set()
    start = datetime.now() - timedelta(days=1)
    dists = token_distributions(space.range_table())
    for i in range(n):
        while tuple(tokens) in seen or space.count_params(tokens) > BUDGET:
            tokens = list(tokens)
            tokens[rng.randrange(len(tokens))] = rng.randrange(space.range_table()[0])
        seen.add(tuple(tokens))
        trial = FrozenTrial(number=0, state=TrialState.COMPLETE, value=reward_of(tokens), values=None,
                            datetime_start=start + timedelta(seconds=2 * i),
                            datetime_complete=start + timedelta(seconds=2 * i + 1),
                            params={param_name(j): t for j, t in enumerate(tokens)}, distributions=dict(dists),
                            user_attrs={TOKENS_KEY: list(tokens)},
                            system_attrs={U_KEY: acceptance_draw(0, tokens), STATUS_KEY: "candidate"},
                            intermediate_values={}, trial_id=0)
        sa.storage.create_new_trial(sa.study._study_id, template_trial=trial)


def latency(backend: str, url_or_dir: str, n: int, samples: int) -> tuple[float, float, float, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    kw = {"storage": url_or_dir} if backend == "postgres" else {"save_checkpoint": url_or_dir}
    setup = SANAS("DartsSpace", search_steps=10**6, max_params=BUDGET, study_name=name, **kw)
    prefill(setup, n)
    setup.close()
    sa = SANAS("DartsSpace", search_steps=10**6, max_params=BUDGET, study_name=name, **kw)  # a fresh worker
    t0 = time.perf_counter()
    sa.next_tokens()
    first = time.perf_counter() - t0
    sa.reward(reward_of(sa.tokens))
    times, reward_times = [], []
    for _ in range(samples):
        t0 = time.perf_counter()
        tokens = sa.next_tokens()
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sa.reward(reward_of(tokens))
        reward_times.append(time.perf_counter() - t0)
    sa.close()
    p95 = statistics.quantiles(times, n=20)[-1]
    return first, statistics.median(times), p95, statistics.median(reward_times)


def worker(url: str, name: str, steps: int) -> None:
    sa = SANAS("DartsSpace", storage=url, study_name=name, search_steps=steps, max_params=BUDGET,
               poll_interval=0.05)
    while (tokens := sa.next_tokens()) is not None:
        sa.reward(reward_of(tokens))
    sa.close()


def throughput(url: str, workers: int, steps: int) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    SANAS("DartsSpace", storage=url, study_name=name, search_steps=steps, max_params=BUDGET).close()  # create once
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, name, str(steps)]) for _ in range(workers)]
    codes = [p.wait() for p in procs]
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    claimed = [trial_tokens(t) for t in trials if t.system_attrs.get(STATUS_KEY) not in VOID_STATUSES]
    evaluated = [trial_tokens(t) for t in complete]
    wall = (max(t.datetime_complete for t in complete) - min(t.datetime_start for t in trials)).total_seconds()
    voids = Counter(t.system_attrs.get(STATUS_KEY) for t in trials if t.system_attrs.get(STATUS_KEY) in VOID_STATUSES)
    return {"exit codes": codes, "finished": len(complete), "wall_s": wall, "per_s": len(complete) / wall,
            "dup_claimed": len(claimed) - len(set(claimed)), "dup_evaluated": len(evaluated) - len(set(evaluated)),
            "surplus": voids.get("surplus", 0), "collision": voids.get("collision", 0)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--postgres", default=DEFAULT_PG)
    p.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 1000])
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = get_space("DartsSpace")
    t0 = time.perf_counter()
    space.token2arch(space.init_tokens())
    build_ms = 1e3 * (time.perf_counter() - t0)
    print(f"for reference: DartsSpace.token2arch (network build, not controller) {build_ms:.0f} ms")
    print(f"CPU cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}\n")
    print(f"{'store':<10}{'finished':>9}{'first call':>12}{'median':>9}{'p95':>9}{'reward()':>10}   (ms)")
    with tempfile.TemporaryDirectory() as tmp:
        for backend, target in [("embedded", tmp), ("postgres", args.postgres)]:
            for n in args.sizes:
                where = os.path.join(tmp, f"{n}") if backend == "embedded" else target
                first, med, p95, rew = latency(backend, where, n, args.samples)
                print(f"{backend:<10}{n:>9}{1e3 * first:>12.1f}{1e3 * med:>9.1f}{1e3 * p95:>9.1f}{1e3 * rew:>10.1f}",
                      flush=True)
    r = throughput(args.postgres, args.workers, args.steps)
    print(f"\n{args.workers} workers on PostgreSQL, 0-cost objective, search_steps={args.steps}: "
          f"exit codes {r['exit codes']}")
    print(f"  finished {r['finished']} in {r['wall_s']:.1f} s = {r['per_s']:.1f} evaluations/s; "
          f"duplicates: {r['dup_claimed']} proposed, {r['dup_evaluated']} evaluated; "
          f"discarded before evaluation: {r['surplus']} surplus, {r['collision']} collision")


if __name__ == "__main__":
    main()
