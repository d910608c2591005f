"""SA-aware early stopping: how much a candidate can still gain, learned from the search's finished candidates.

A simulated-annealing candidate is accepted if its reward reaches ``current + T·ln u``; its draw ``u`` is fixed
when it is proposed, so that threshold is known before it trains (:meth:`sanas.SANAS.acceptance_threshold`) —
exactly with one worker; with several, results that other workers finish meanwhile move the chain, and the final
verdict can differ from the one the threshold predicted (a stopped candidate stays rejected in every replay).
An inherited candidate is scored at a few checks while it is fine-tuned (the curve). It is stopped at check ``i``
when its best score so far, plus the largest gain any finished candidate made from check ``i`` to its end, still falls
short of the threshold: it could not plausibly be accepted, and since the threshold never exceeds the current
reward (and so the best), it could not be the best either. A stopped candidate is recorded with its partial
reward and counts as a rejected evaluation; the chain stays a function of the study.

>>> curves = [[[0, 0.50], [0.5, 0.60], [1, 0.62]], [[0, 0.70], [0.5, 0.72], [1, 0.75]],
...           [[0, 0.40], [0.5, 0.55], [1, 0.58]]]
>>> [round(m, 2) for m in learned_margins(curves)]
[0.18, 0.03]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from sanas.search.chain import CURVE_KEY, STATUS_KEY, STOPPED

__all__ = ["MIN_CURVES", "StopRule", "finished_curves", "learned_margins", "stop_rule"]

#: Finished candidates needed before anything is stopped: fewer curves say too little about possible gains.
MIN_CURVES = 3


def finished_curves(trials: Sequence[FrozenTrial]) -> list[list[list[float]]]:
    """The curves of the study's candidates that ran to their end (stopped ones are partial and left out)."""
    return [t.user_attrs[CURVE_KEY] for t in trials
            if t.state == TrialState.COMPLETE and CURVE_KEY in t.user_attrs
            and t.system_attrs.get(STATUS_KEY) != STOPPED]


def learned_margins(curves: Sequence[Sequence[Sequence[float]]],
                    min_curves: int = MIN_CURVES) -> tuple[float, ...] | None:
    """Per check, the largest gain from that check to the end over ``curves``; ``None`` with too few of them.

    Curves are ``[epochs, score]`` pairs, the checks first and the end last. Only curves with the most common
    number of points count (a search's recipe fixes it; a resumed search with another recipe would not mix).
    """
    if not curves:
        return None
    lengths = [len(c) for c in curves]
    common = max(set(lengths), key=lengths.count)
    usable = [c for c in curves if len(c) == common and common >= 2]
    if len(usable) < min_curves:
        return None
    # Never negative: that finished candidates happened to lose accuracy after a check is no reason to stop one
    # that is still above the threshold there.
    return tuple(max(0.0, *(float(c[-1][1]) - float(c[i][1]) for c in usable)) for i in range(common - 1))


@dataclass(frozen=True)
class StopRule:
    """When to stop a fine-tuned candidate early (the inherit evaluation's checks, see
    :func:`sanas.training.candidate.check_points`).

    At check ``i`` the candidate stops if its best held-out top-1 so far (this check's, or an ``earlier`` check's)
    plus ``margins[i]`` — the most any finished candidate gained from that check to its end — stays below
    ``threshold``, the reward it needs to be accepted. The best so far, not the last: fine-tuning at a fresh
    learning rate often dips below the accuracy it started from and recovers by the end, and the candidates that
    dipped deepest are exactly the ones stopped there, so the finished curves never teach a margin that large.

    >>> rule = StopRule(0.80, (0.05, 0.02))
    >>> rule.should_stop(0, 0.70), rule.should_stop(1, 0.79), rule.should_stop(1, 0.60, [0.785])
    (True, False, False)
    """

    threshold: float
    margins: tuple[float, ...]

    def should_stop(self, check: int, val_top1: float, earlier: Sequence[float] = ()) -> bool:
        return check < len(self.margins) and max([val_top1, *earlier]) + self.margins[check] < self.threshold


def stop_rule(sa: Any, recipe: Any) -> StopRule | None:
    """The early-stop rule for ``sa``'s pending candidate (a :class:`~sanas.SANAS` that has proposed it), or
    ``None``: early stop off in ``recipe`` (a :class:`~sanas.training.Recipe`), a scratch evaluation, no
    acceptance threshold yet, or too few finished curves to learn margins from."""
    if recipe.evaluation != "inherit" or not recipe.early_stop:
        return None
    threshold = sa.acceptance_threshold()
    if threshold is None:
        return None
    margins = learned_margins(finished_curves(sa.study.get_trials(deepcopy=False)))
    return None if margins is None else StopRule(threshold, margins)
