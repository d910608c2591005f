"""The simulated-annealing chain as a pure function of a study's finished evaluations.

Every worker, on every machine, rebuilds the chain from storage with :func:`replay_chain` instead of keeping it
in memory, so the chain cannot drift between workers and a restarted process continues exactly where the study
stands. An evaluation's acceptance draw ``u`` is a deterministic hash of the search seed and its tokens, fixed and
stored when its trial is created; the replay then has no randomness left in it.

>>> evals = [Evaluation(0, (5, 5), 0.90, 0.5), Evaluation(1, (5, 6), 0.91, 0.5), Evaluation(2, (4, 6), 0.80, 0.9)]
>>> state = replay_chain(evals)
>>> state.current_tokens, state.best_reward, [s.accepted for s in state.steps]
((5, 6), 0.91, [True, True, False])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CURVE_KEY",
    "FAIL_REASON_KEY",
    "STATUS_KEY",
    "STOPPED",
    "TOKENS_KEY",
    "U_KEY",
    "ChainReplayer",
    "ChainState",
    "ChainStep",
    "Evaluation",
    "TrialDelta",
    "acceptance_draw",
    "evaluations",
    "replay_chain",
    "temperature",
    "trial_tokens",
]

#: Trial user attribute holding the token list (user attributes are what optuna-dashboard shows).
TOKENS_KEY = "tokens"
#: Trial user attribute holding why a trial failed.
FAIL_REASON_KEY = "fail_reason"
#: Trial system attribute holding the acceptance draw ``u`` in [0, 1).
U_KEY = "sanas:u"
#: Trial system attribute: "candidate" for real proposals; "surplus"/"collision" for trials discarded before any
#: evaluation, "exhausted" for the marker that ends a search whose sampler ran out of candidates (see
#: :mod:`sanas.search.api`). Void trials never count as proposed or evaluated.
STATUS_KEY = "sanas:status"
VOID_STATUSES = frozenset({"surplus", "collision", "exhausted"})
#: Status of a COMPLETE trial stopped early (its reward is partial): a finished evaluation, always rejected.
STOPPED = "stopped"
#: Trial user attribute: an inherited candidate's ``[epochs, held-out top-1]`` at each check and at the end.
CURVE_KEY = "curve"


@dataclass(frozen=True)
class Evaluation:
    """One finished evaluation: trial number, tokens, reward and the trial's acceptance draw."""

    number: int
    tokens: tuple[int, ...]
    reward: float
    u: float
    stopped: bool = False


@dataclass(frozen=True)
class ChainStep:
    """How one evaluation moved the chain: the ``k``-th finished evaluation was judged at ``temperature``."""

    k: int
    number: int
    tokens: tuple[int, ...]
    reward: float
    u: float
    temperature: float
    accepted: bool
    best: bool


@dataclass
class ChainState:
    """The chain after replaying some evaluations. ``current_*`` is the last accepted candidate."""

    current_tokens: tuple[int, ...] | None = None
    current_reward: float | None = None
    best_tokens: tuple[int, ...] | None = None
    best_reward: float | None = None
    best_number: int | None = None
    steps: list[ChainStep] = field(default_factory=list)

    @property
    def k(self) -> int:
        """Number of finished evaluations replayed: the exponent of the next temperature."""
        return len(self.steps)

    def accepted_numbers(self) -> list[int]:
        """Trial numbers of the accepted evaluations, in chain order."""
        return [s.number for s in self.steps if s.accepted]


def temperature(k: int, init_temperature: float = 1.0, reduce_rate: float = 0.85) -> float:
    """``T = T0 · reduce_rate**k`` where ``k`` counts finished evaluations in the whole study.

    PaddleSlim used ``client_num · iter`` as the exponent, so adding workers cooled the schedule faster; counting
    evaluations makes the schedule the same for one worker or fifty.

    >>> round(temperature(10), 4)
    0.1969
    """
    return init_temperature * reduce_rate**k


def acceptance_draw(seed: int, tokens: Sequence[int]) -> float:
    """The uniform draw ``u`` in [0, 1) used to judge ``tokens``: a hash of (seed, tokens).

    Tokens are never evaluated twice in a study, so each evaluation gets its own independent-looking draw, and
    it does not depend on which worker proposed it or when: a restarted search makes the same decisions.

    >>> acceptance_draw(0, [5, 5]) == acceptance_draw(0, (5, 5)) != acceptance_draw(1, [5, 5])
    True
    """
    blob = f"{int(seed)}:{','.join(str(int(t)) for t in tokens)}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") / 2.0**64


def _step(state: ChainState, ev: Evaluation, init_temperature: float, reduce_rate: float) -> None:
    k = len(state.steps)
    t = temperature(k, init_temperature, reduce_rate)
    if ev.stopped:
        accepted = False  # stopped early because it could not reach the acceptance threshold: a partial reward
    elif state.current_reward is None:
        accepted = True  # the first reward is always accepted, as in PaddleSlim
    else:
        delta = ev.reward - state.current_reward
        # ``delta >= 0`` is PaddleSlim's ``reward > current or u <= exp(0) = 1``; it also covers T == 0 (T0 = 0 or
        # underflow after thousands of steps), where exp(delta / T) would divide by zero.
        accepted = delta >= 0 or (t > 0 and ev.u <= math.exp(delta / t))
    best = not ev.stopped and (state.best_reward is None or ev.reward > state.best_reward)
    if accepted:
        state.current_tokens, state.current_reward = ev.tokens, ev.reward
    if best:
        state.best_tokens, state.best_reward, state.best_number = ev.tokens, ev.reward, ev.number
    state.steps.append(ChainStep(k, ev.number, ev.tokens, ev.reward, ev.u, t, accepted, best))


def replay_chain(evals: Iterable[Evaluation], init_temperature: float = 1.0, reduce_rate: float = 0.85,
                 state: ChainState | None = None) -> ChainState:
    """Replay Metropolis acceptance over ``evals`` (in completion order); continue from ``state`` if given.

    The ``k``-th evaluation (0-based) is judged at ``temperature(k)``: accepted if its reward is not below the
    current reward, or if ``u <= exp((reward - current) / T)``. Best is updated on strict improvement.

    >>> s = replay_chain([Evaluation(0, (1,), 0.5, 0.0), Evaluation(1, (2,), 0.4, 0.99)], init_temperature=1.0)
    >>> [step.accepted for step in s.steps], round(s.steps[1].temperature, 2)
    ([True, False], 0.85)
    """
    state = state if state is not None else ChainState()
    for ev in evals:
        _step(state, ev, init_temperature, reduce_rate)
    return state


def trial_tokens(trial: FrozenTrial) -> tuple[int, ...] | None:
    """The tokens a trial claimed, or ``None`` for trials that never got any (void or foreign trials)."""
    tokens = trial.user_attrs.get(TOKENS_KEY)
    return None if tokens is None else tuple(int(t) for t in tokens)


def _completion_key(trial: FrozenTrial) -> tuple[datetime, int]:
    # datetime_complete is written by the storage (server clock for gRPC) or by the finishing worker; ties, and
    # equal timestamps from coarse clocks, are broken by the trial number so the order is total and the same for
    # every reader.
    return (trial.datetime_complete or datetime.max, trial.number)


def evaluations(trials: Iterable[FrozenTrial]) -> list[Evaluation]:
    """The COMPLETE trials carrying tokens, as :class:`Evaluation` in completion order."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and TOKENS_KEY in t.user_attrs]
    done.sort(key=_completion_key)
    return [_evaluation(t) for t in done]


def _evaluation(t: FrozenTrial) -> Evaluation:
    return Evaluation(t.number, trial_tokens(t), float(t.value), float(t.system_attrs.get(U_KEY, 0.0)),
                      t.system_attrs.get(STATUS_KEY) == STOPPED)


class TrialDelta:
    """The trials that finished since the last look, and the unfinished ones, in O(changes) per look.

    Relies on two facts of Optuna studies: trial numbers are dense (``trials[i].number == i`` in a list sorted by
    number) and a finished trial never changes. Only previously unfinished and new trials are examined, so a
    proposal costs the same at 10 or 10,000 trials. Lists that break the first fact are scanned in full.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next :meth:`look` reports every finished trial as new."""
        self._seen = 0
        self._unfinished: list[int] = []
        self._finished: set[int] = set()

    def is_finished(self, number: int) -> bool:
        """Whether trial ``number`` was finished at the last :meth:`look`."""
        return number in self._finished

    def look(self, trials: Sequence[FrozenTrial]) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """``(newly finished, unfinished)`` trials of ``trials`` since the previous call."""
        n = len(trials)
        dense = n == 0 or (trials[0].number == 0 and trials[-1].number == n - 1)
        if not dense or n < self._seen:
            candidates = [t for t in trials if t.number not in self._finished]
        else:
            candidates = [trials[i] for i in self._unfinished]
            candidates.extend(trials[self._seen:])
        newly = [t for t in candidates if t.state.is_finished()]
        unfinished = [t for t in candidates if not t.state.is_finished()]
        self._finished.update(t.number for t in newly)
        self._unfinished = [t.number for t in unfinished]
        self._seen = n
        return newly, unfinished


class ChainReplayer:
    """Replays the chain incrementally: O(new evaluations) per call while completions arrive in order.

    Finished trials never change, so each is replayed once (identified by its number: one replayer serves one
    study). A completion that sorts before ones already replayed (workers' clocks, commit delays) triggers a
    replay from scratch, so the result always equals ``replay_chain(evaluations(trials))``. The returned state is
    the replayer's own; treat it as read-only.
    """

    def __init__(self, init_temperature: float = 1.0, reduce_rate: float = 0.85) -> None:
        self.init_temperature = init_temperature
        self.reduce_rate = reduce_rate
        self._delta = TrialDelta()
        self._reset()

    def _reset(self) -> None:
        self._last: tuple[datetime, int] | None = None
        self._evals: list[Evaluation] = []
        self._state = ChainState()

    def replay(self, trials: Sequence[FrozenTrial]) -> ChainState:
        """Return the chain over the COMPLETE trials in ``trials``."""
        newly, _ = self._delta.look(trials)
        new = sorted((t for t in newly if t.state == TrialState.COMPLETE and TOKENS_KEY in t.user_attrs),
                     key=_completion_key)
        if not new:
            return self._state
        if self._last is not None and _completion_key(new[0]) < self._last:
            self._reset()
            new = sorted((t for t in trials if t.state == TrialState.COMPLETE and TOKENS_KEY in t.user_attrs),
                         key=_completion_key)
        evals = [_evaluation(t) for t in new]
        replay_chain(evals, self.init_temperature, self.reduce_rate, state=self._state)
        self._last = _completion_key(new[-1])
        self._evals.extend(evals)
        return self._state

    @property
    def evaluations(self) -> list[Evaluation]:
        """The evaluations replayed by the last :meth:`replay`, in completion order."""
        return list(self._evals)
