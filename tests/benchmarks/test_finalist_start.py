"""The replay of the finalists stage with the search's start (benchmarks/finalist_start.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import finalist_start as fs  # noqa: E402
from sanas.runs.finalists import pick_finalists  # noqa: E402
from sanas.search.chain import TOKENS_KEY  # noqa: E402


def frozen(number: int, tokens: list[int], reward: float) -> optuna.trial.FrozenTrial:
    t = create_trial(state=TrialState.COMPLETE, value=reward, params={"t0": tokens[0]},
                     distributions={"t0": IntDistribution(0, 9)}, user_attrs={TOKENS_KEY: tokens})
    t.number = number
    return t


def test_the_replay_picks_the_finalists_the_product_picks() -> None:
    """The replay rebuilds the finalists from a benchmark record (the search's log and its recorded finalists); it
    must name the same start, in the same place, as the product's pick from the study."""
    log = [{"trial": 0, "tokens": [5], "reward": 0.1, "stopped": False},
           {"trial": 1, "tokens": [4], "reward": 0.8, "stopped": False},
           {"trial": 2, "tokens": [3], "reward": 0.9, "stopped": False}]
    trials = [frozen(e["trial"], e["tokens"], e["reward"]) for e in log]
    for count in (1, 2, 3):
        search = {"log": log, "finalists": pick_finalists(trials, count, start=False)}
        finalists, start = fs.finalists_with_start(search)
        assert finalists == pick_finalists(trials, count, start=True)
        assert (start is None) == (count == 3)  # the start was among the 3 best: nothing to fine-tune again
    assert search["finalists"] == pick_finalists(trials, 3, start=False)  # the record is not changed
