"""Early-stop margins learned from finished candidates' curves, and the stop rule they feed."""

from __future__ import annotations

from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

from sanas.search.chain import CURVE_KEY, STATUS_KEY, STOPPED
from sanas.search.early_stop import MIN_CURVES, StopRule, finished_curves, learned_margins


def trial(number: int, curve: list[list[float]] | None, state: TrialState = TrialState.COMPLETE,
          status: str | None = None) -> FrozenTrial:
    return FrozenTrial(number=number, state=state, value=curve[-1][1] if curve and state == TrialState.COMPLETE
                       else None, values=None, datetime_start=datetime.now(), datetime_complete=datetime.now(),
                       params={}, distributions={}, user_attrs={} if curve is None else {CURVE_KEY: curve},
                       system_attrs={} if status is None else {STATUS_KEY: status}, intermediate_values={},
                       trial_id=number)


def test_margins_are_the_largest_gain_from_each_check_to_the_end():
    curves = [[[0, 0.5], [0.1, 0.6], [0.2, 0.7]], [[0, 0.6], [0.1, 0.62], [0.2, 0.63]],
              [[0, 0.4], [0.1, 0.45], [0.2, 0.6]]]
    margins = learned_margins(curves)
    assert margins is not None
    assert [round(m, 6) for m in margins] == [0.2, 0.15]


def test_too_few_curves_stop_nothing():
    curves = [[[0, 0.5], [1, 0.6]]] * (MIN_CURVES - 1)
    assert learned_margins(curves) is None
    assert learned_margins([]) is None


def test_margins_are_never_negative_and_odd_lengths_are_left_out():
    falling = [[[0, 0.8], [1, 0.7]]] * 3
    assert learned_margins(falling) == (0.0,)
    mixed = [*falling, [[0, 0.1], [0.5, 0.2], [1, 0.9]]]  # another recipe's curve (three points) is ignored
    assert learned_margins(mixed) == (0.0,)


def test_only_finished_unstopped_candidates_teach_the_margins():
    full = [[0, 0.5], [1, 0.7]]
    trials = [trial(0, full), trial(1, [[0, 0.2]], status=STOPPED), trial(2, full, state=TrialState.RUNNING),
              trial(3, full, state=TrialState.FAIL), trial(4, None), trial(5, full)]
    assert finished_curves(trials) == [full, full]


def test_stop_rule_compares_score_plus_margin_with_the_threshold():
    rule = StopRule(threshold=0.75, margins=(0.2, 0.05))
    assert rule.should_stop(0, 0.54) and not rule.should_stop(0, 0.56)
    assert rule.should_stop(1, 0.69) and not rule.should_stop(1, 0.71)
    assert not rule.should_stop(2, 0.0)  # no margin known for a check past the learned ones: never stop there


def test_a_dip_below_an_earlier_check_does_not_stop_a_candidate():
    # Recorded in benchmarks/data/early_stop_searches.json (seed 2, trial 3): 0.6235 after BatchNorm
    # re-estimation, 0.422 mid-fine-tune, 0.7495 at the end, threshold 0.7097, margins learned from three finished
    # curves. The rule on the mid score alone stopped it (0.422 + 0.178 < 0.71), a false stop; from its best score
    # so far it goes on.
    rule = StopRule(threshold=0.7097, margins=(0.3115, 0.178))
    assert not rule.should_stop(0, 0.6235)
    assert rule.should_stop(1, 0.422)  # the old rule's view: the mid score alone
    assert not rule.should_stop(1, 0.422, [0.6235])
    assert rule.should_stop(1, 0.30, [0.52])  # below the threshold even from its best: stopped


class _StubTrainer:
    """Just what the inherit evaluation's check loop touches: scores are read off a script, one per check."""

    def __init__(self, scores: list[float]) -> None:
        from types import SimpleNamespace

        self.recipe = SimpleNamespace(bn_batches=0, stop_checks=len(scores) - 1)
        self.data = SimpleNamespace(val=lambda: (None, None))
        self.scores, self.steps_done, self.steps_per_epoch, self.total_steps = list(scores), 0, 10, 10

    def reestimate_bn(self, batches: int) -> None:
        pass

    def evaluate(self, images, labels) -> tuple[float, float]:
        return 0.0, self.scores.pop(0)

    def run_epoch(self, reporter, steps: int | None = None) -> None:
        self.steps_done += self.total_steps - self.steps_done if steps is None else steps


def test_the_check_loop_judges_each_check_by_the_best_score_so_far():
    from sanas.training.candidate import CandidateResult, _finetune

    result = CandidateResult(tokens=[], status="failed", reward=None)
    _finetune(_StubTrainer([0.6235, 0.422, 0.7495]), result, None, StopRule(0.7097, (0.3115, 0.178)))
    assert not result.stopped and result.reward == 0.7495 and [c[1] for c in result.curve] == [0.6235, 0.422, 0.7495]
    dipped = CandidateResult(tokens=[], status="failed", reward=None)
    _finetune(_StubTrainer([0.52, 0.30, 0.9]), dipped, None, StopRule(0.7097, (0.3115, 0.178)))
    assert dipped.stopped and dipped.reward == 0.30 and len(dipped.curve) == 2
