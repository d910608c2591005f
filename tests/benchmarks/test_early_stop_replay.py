"""The early-stop replay reproduces what the recorded benchmark measured live, so its other rows can be trusted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import early_stop_replay  # noqa: E402


def recorded() -> list[dict]:
    return json.loads((BENCHMARKS / "data" / "early_stop_searches.json").read_text())["seeds"]


def test_the_old_rule_replayed_gives_the_stops_measured_live() -> None:
    seeds = recorded()
    live = [e for s in seeds for e in s["search_B"]["log"] if e["stopped"]]
    live_false = [f for s in seeds for f in s["false_stops"] if f["false_stop"]]
    old = early_stop_replay.replay(seeds, early_stop_replay.last_score_rule())
    assert (old["stops"], old["false"], old["unknown"]) == (len(live), len(live_false), 0) == (13, 1, 0)


def test_the_product_rule_stops_a_subset_and_no_false_one() -> None:
    new = early_stop_replay.replay(recorded(), early_stop_replay.product_rule)
    assert (new["stops"], new["false"]) == (11, 0) and 0.30 < new["saved"] < 0.35
