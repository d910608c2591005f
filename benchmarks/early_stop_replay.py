"""Early-stop rules replayed on recorded searches (no training: seconds).

    .venv/bin/python benchmarks/early_stop_replay.py [--data benchmarks/data/early_stop_searches.json]

``benchmarks/data/early_stop_searches.json`` is the record of ``inherit_e2e.py``'s earlier protocol (November 2026:
¼-epoch candidates with the SA-aware early stop): every candidate of its sanas searches (B) with its acceptance
threshold and its curve
(held-out top-1 at each check), and finishes each stopped candidate anyway to record its final reward. Each rule
is asked, for every candidate in the recorded order and with the curves the recorded search had finished by then,
whether it would stop the candidate and where. A stop is *false* when the candidate's final reward reached its
threshold (it would have been accepted). Decisions are per candidate on the same history (a rule that keeps a
candidate alive would change the later chain; the recorded one is the only one whose truth is known). A rule
that lets a candidate stopped at the first check go on meets a later check whose score was never measured: it is
counted as running to its end ("unknown"), which under-counts that rule's savings and cannot add a false stop.
Saved = the fine-tuning epochs the stops skip, as a share of all candidates' fine-tuning epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sanas.search.early_stop import StopRule, learned_margins

Rule = Callable[[float, list[list[list[float]]], list[float]], int | None]


def product_rule(threshold: float, curves: list[list[list[float]]], scores: list[float]) -> int | None:
    """The product's rule (``StopRule`` with ``learned_margins``): the first check it stops at, or ``None``."""
    margins = learned_margins(curves)
    if margins is None:
        return None
    rule = StopRule(threshold, margins)
    for i, score in enumerate(scores):
        if rule.should_stop(i, score, scores[:i]):
            return i
    return None


def last_score_rule(min_curves: int = 3, first_only: bool = False) -> Rule:
    """The rule before issue #20 item 8: the score at the check alone (a dip at a later check counts in full)."""
    def rule(threshold: float, curves: list[list[list[float]]], scores: list[float]) -> int | None:
        margins = learned_margins(curves, min_curves)
        if margins is None:
            return None
        for i, score in enumerate(scores[:1] if first_only else scores):
            if i < len(margins) and score + margins[i] < threshold:
                return i
        return None

    return rule


def replay(seeds: Sequence[dict], rule: Rule) -> dict[str, float]:
    stops = false = unknown = 0
    saved = total = 0.0
    for seed in seeds:
        finished: list[list[list[float]]] = []
        false_stops = {f["trial"]: f for f in seed.get("false_stops", [])}
        for entry in seed["search_B"]["log"]:
            curve = entry["curve"]
            full = false_stops[entry["trial"]]["full_epochs"] if entry["stopped"] else entry["epochs"]
            final = false_stops[entry["trial"]]["final"] if entry["stopped"] else entry["reward"]
            checks = len(finished[0]) - 1 if finished else len(curve) - 1
            measured = [float(p[1]) for p in curve[:checks]]  # the checks' scores that were measured
            total += full
            threshold = entry["threshold"]
            if threshold is not None:
                at = rule(threshold, finished, measured)
                if at is None and len(measured) < checks:
                    unknown += 1  # a later check this search never measured: assumed to run to its end
                elif at is not None:
                    stops += 1
                    false += final >= threshold
                    saved += full - float(curve[at][0])
            if not entry["stopped"]:
                finished.append(curve)
    return {"stops": stops, "false": false, "unknown": unknown, "saved": saved / total if total else 0.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).with_name("data") / "early_stop_searches.json"))
    args = p.parse_args()
    seeds = json.loads(Path(args.data).read_text())["seeds"]
    rules = {
        "product: best score so far + margin (default)": product_rule,
        "score at the check + margin (before)": last_score_rule(),
        "score at the check, 5 curves first": last_score_rule(min_curves=5),
        "first check only": last_score_rule(first_only=True),
    }
    print(f"{len(seeds)} seeds of {args.data}\n")
    print("| rule | stops | false stops | unknown | fine-tuning saved |")
    print("|---|---:|---:|---:|---:|")
    for name, rule in rules.items():
        r = replay(seeds, rule)
        rate = f"{r['false']} ({100 * r['false'] / r['stops']:.1f} %)" if r["stops"] else "0"
        print(f"| {name} | {r['stops']} | {rate} | {r['unknown']} | {100 * r['saved']:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
