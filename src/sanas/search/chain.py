"""The simulated-annealing chain as a pure function of a study's finished evaluations.

Every worker, on every machine, rebuilds the chain from storage with :func:`replay_chain` instead of keeping it
in memory, so the chain cannot drift between workers and a restarted process continues exactly where the study
stands. An evaluation's acceptance draw ``u`` is a deterministic hash of the search seed and its tokens, fixed and
stored when its trial is created; the replay then has no randomness left in it.

**The temperature.** The ``k``-th finished evaluation (0-based, counted over the whole study) is judged at
``T_k = S_k · reduce_rate**k``. With a number for ``init_temperature`` (PaddleSlim's T0, e.g. 1.0),
``S_k = T0`` and the schedule is PaddleSlim's exactly. With ``"auto"`` (the default) the scale comes from the
rewards themselves::

    S_k = median(|reward_j - current_j| for the evaluations j < k judged against a current reward) / ln(1/p0)

where ``current_j`` is the reward of the chain's current (last accepted) candidate when ``j`` was judged — in a
one-worker search, ``j``'s parent — and ``p0`` is :data:`AUTO_ACCEPTANCE`. Why this rule:

* Metropolis acceptance ``exp(Δ/T)`` only makes sense when ``T`` is measured in the reward's own units. A fixed
  T0 = 1 on accuracies in [0, 1], whose neighbours differ by ~0.005, accepts nearly every drop: the chain is a
  random walk. ``S_k`` is the typical size of one move's reward change, so a typical worsening move is accepted
  with probability ``p0`` at ``k = 0`` and less as ``reduce_rate**k`` cools the chain — the classic rule of
  choosing T0 from an initial acceptance ratio (Kirkpatrick et al. 1983; Johnson et al. 1989), estimated online.
* Rescaling the reward affinely (``a · reward + b``, ``a > 0``: percent instead of fractions, a shifted loss)
  scales every ``Δ`` and ``S_k`` by ``a`` alike, so every decision is unchanged: nothing to tune per reward.
* The median, not the mean: one broken candidate (reward 0.1 among 0.9s) does not heat the chain for the rest of
  the search.
* ``S_k`` uses only evaluations judged *before* ``k``, so the temperature of the next evaluation — and the reward it
  needs to be accepted, :func:`acceptance_threshold` — is known before it is trained. Until one difference is
  known (``k <= 1``), ``S_k = 0``: the chain accepts only rewards at least as good as the current one.
* It is a function of the study's finished evaluations and their order only, like everything else here, so
  every worker and every restart computes the same chain.

An evaluation stopped early (status :data:`STOPPED`) is a finished evaluation: it advances ``k`` and counts toward
``search_steps``, but it is always rejected, never best, and its partial reward does not enter ``S_k``.

>>> evals = [Evaluation(0, (5, 5), 0.90, 0.5), Evaluation(1, (5, 6), 0.91, 0.5), Evaluation(2, (4, 6), 0.80, 0.9)]
>>> state = replay_chain(evals)
>>> state.current_tokens, state.best_reward, [s.accepted for s in state.steps]
((5, 6), 0.91, [True, True, False])
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "AUTO",
    "AUTO_ACCEPTANCE",
    "CRASHED",
    "CURVE_KEY",
    "DEFAULT_INIT_TEMPERATURE",
    "DEFAULT_REDUCE_RATE",
    "FAIL_REASON_KEY",
    "PADDLESLIM_INIT_TEMPERATURE",
    "RETRY_OF_KEY",
    "SKIPPED",
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
    "acceptance_threshold",
    "check_init_temperature",
    "check_reduce_rate",
    "evaluations",
    "released",
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
#: Status of a COMPLETE trial whose evaluation was stopped early: it counts as a finished evaluation (``k`` and
#: ``search_steps``), is always rejected, never best, and its partial reward stays out of the auto temperature.
STOPPED = "stopped"
#: Status of a FAIL trial the user's loop skipped (``next_archs()`` called again without ``reward()``): proposed,
#: so never proposed again, but not evaluated, not counted in ``search_steps`` and not moving the chain.
SKIPPED = "skipped"
#: Trial user attribute: an inherited candidate's ``[epochs, held-out top-1]`` at each check and at the end.
CURVE_KEY = "curve"

#: ``init_temperature="auto"``: the scale-free temperature of the module docstring. The default of
#: :class:`~sanas.search.SANAS`, the TOML config and the CLI.
AUTO = "auto"
DEFAULT_INIT_TEMPERATURE: float | str = AUTO
#: PaddleSlim's T0 (when init tokens are given, as in every sanas space); ``init_temperature=1.0`` reproduces it.
PADDLESLIM_INIT_TEMPERATURE = 1.0
#: Temperature decay per finished evaluation (PaddleSlim's).
DEFAULT_REDUCE_RATE = 0.85
#: ``p0`` of the auto temperature: the probability that a typical worsening move (one median difference below
#: the current reward) is accepted at ``k = 0``. Chosen once, on the tuning seeds of the main strategy benchmark
#: table (``benchmarks/strategies.py --tune-auto``), and checked untouched on a second table.
AUTO_ACCEPTANCE = 0.1


def check_init_temperature(value: object) -> float | str:
    """``"auto"`` or a finite number >= 0 (a fixed T0); anything else raises ``ValueError`` naming it.

    >>> check_init_temperature("auto"), check_init_temperature(1)
    ('auto', 1.0)
    """
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"init_temperature is {value!r}, expected 'auto' (scale-free, the default) or a finite "
                         f"number >= 0 (a fixed T0; PaddleSlim's is {PADDLESLIM_INIT_TEMPERATURE})")
    return float(value)


def check_reduce_rate(value: object) -> float:
    """A finite number in (0, 1]; anything else raises ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"reduce_rate is {value!r}, expected a number in (0, 1] "
                         f"(PaddleSlim's is {DEFAULT_REDUCE_RATE})")
    return float(value)


#: Status of a FAIL trial whose evaluation was cut short by its worker's death, a kill or an interrupt: no verdict
#: on the architecture, so its tokens are proposed once more (see :func:`released`).
CRASHED = "crashed"
#: Trial system attribute of such a second attempt: the number of the crashed trial it repeats. A second attempt
#: that crashes too is an ordinary failure.
RETRY_OF_KEY = "sanas:retry_of"


@dataclass(frozen=True)
class Evaluation:
    """One finished evaluation: trial number, tokens, reward, the trial's acceptance draw, stopped early or not."""

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
    stopped: bool = False


@dataclass
class ChainState:
    """The chain after replaying some evaluations. ``current_*`` is the last accepted candidate.

    ``differences`` holds, sorted, the ``|reward - current|`` of every evaluation judged against a current reward
    (stopped ones left out): the sample the auto temperature takes its median of.
    """

    current_tokens: tuple[int, ...] | None = None
    current_reward: float | None = None
    best_tokens: tuple[int, ...] | None = None
    best_reward: float | None = None
    best_number: int | None = None
    steps: list[ChainStep] = field(default_factory=list)
    differences: list[float] = field(default_factory=list, repr=False)

    @property
    def k(self) -> int:
        """Number of finished evaluations replayed: the exponent of the next temperature."""
        return len(self.steps)

    def scale(self, init_temperature: float | str = DEFAULT_INIT_TEMPERATURE) -> float:
        """``S_k`` of the next evaluation: ``init_temperature`` itself, or the auto rule's (module docstring)."""
        if init_temperature != AUTO:
            return float(init_temperature)
        n = len(self.differences)
        if n == 0:
            return 0.0
        d = self.differences
        median = d[n // 2] if n % 2 else (d[n // 2 - 1] + d[n // 2]) / 2
        return median / math.log(1 / AUTO_ACCEPTANCE)

    def next_temperature(self, init_temperature: float | str = DEFAULT_INIT_TEMPERATURE,
                         reduce_rate: float = DEFAULT_REDUCE_RATE) -> float:
        """The temperature the next finished evaluation will be judged at."""
        return self.scale(init_temperature) * reduce_rate**self.k


def temperature(k: int, init_temperature: float = PADDLESLIM_INIT_TEMPERATURE,
                reduce_rate: float = DEFAULT_REDUCE_RATE) -> float:
    """A fixed T0's schedule, ``T = T0 · reduce_rate**k`` where ``k`` counts finished evaluations in the whole study.

    PaddleSlim used ``client_num · iter`` as the exponent, so adding workers cooled the schedule faster; counting
    evaluations makes the schedule the same for one worker or fifty. (The auto temperature's scale depends on the
    rewards: :meth:`ChainState.next_temperature`.)

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


def _threshold(current: float, t: float, u: float) -> float:
    # Metropolis: accept if u <= exp((reward - current) / T), i.e. reward >= current + T·ln u. Written as a
    # threshold so that acceptance_threshold() and the replay agree to the last bit. T == 0 (T0 = 0, the auto
    # rule before any difference is known, or underflow after thousands of steps) accepts reward >= current.
    if not t > 0:
        return current
    if u <= 0:
        return -math.inf
    return current + t * math.log(u)


def acceptance_threshold(state: ChainState, u: float,
                         init_temperature: float | str = DEFAULT_INIT_TEMPERATURE,
                         reduce_rate: float = DEFAULT_REDUCE_RATE) -> float | None:
    """The smallest reward the next finished evaluation, with acceptance draw ``u``, needs to be accepted.

    ``current_reward + T·ln u`` at the next evaluation's temperature (``current_reward`` when that is 0);
    ``None`` before any reward (the first evaluation is always accepted). A stopped evaluation is rejected
    whatever its reward.

    >>> s = replay_chain([Evaluation(0, (1,), 0.5, 0.3)], init_temperature=0.1, reduce_rate=1.0)
    >>> round(acceptance_threshold(s, 0.5, 0.1, 1.0), 4)  # 0.5 + 0.1 · ln 0.5
    0.4307
    """
    if state.current_reward is None:
        return None
    return _threshold(state.current_reward, state.next_temperature(init_temperature, reduce_rate), u)


def _step(state: ChainState, ev: Evaluation, init_temperature: float | str, reduce_rate: float) -> None:
    k = len(state.steps)
    t = state.next_temperature(init_temperature, reduce_rate)
    if ev.stopped:
        accepted = best = False  # its reward is partial: it says nothing reliable about the candidate
    else:
        if state.current_reward is None:
            accepted = True  # the first reward is always accepted, as in PaddleSlim
        else:
            accepted = ev.reward >= _threshold(state.current_reward, t, ev.u)
            bisect.insort(state.differences, abs(ev.reward - state.current_reward))
        best = state.best_reward is None or ev.reward > state.best_reward
    if accepted:
        state.current_tokens, state.current_reward = ev.tokens, ev.reward
    if best:
        state.best_tokens, state.best_reward, state.best_number = ev.tokens, ev.reward, ev.number
    state.steps.append(ChainStep(k, ev.number, ev.tokens, ev.reward, ev.u, t, accepted, best, ev.stopped))


def replay_chain(evals: Iterable[Evaluation], init_temperature: float | str = DEFAULT_INIT_TEMPERATURE,
                 reduce_rate: float = DEFAULT_REDUCE_RATE, state: ChainState | None = None) -> ChainState:
    """Replay Metropolis acceptance over ``evals`` (in completion order); continue from ``state`` if given.

    The ``k``-th evaluation (0-based) is judged at the temperature ``T_k`` of the module docstring: accepted if
    its reward is not below the current reward, or if ``u <= exp((reward - current) / T_k)``. Best is updated on
    strict improvement. Stopped evaluations are rejected and never best.

    >>> s = replay_chain([Evaluation(0, (1,), 0.5, 0.0), Evaluation(1, (2,), 0.4, 0.99)], init_temperature=1.0)
    >>> [step.accepted for step in s.steps], round(s.steps[1].temperature, 2)
    ([True, False], 0.85)
    """
    init_temperature = check_init_temperature(init_temperature)
    state = state if state is not None else ChainState()
    for ev in evals:
        _step(state, ev, init_temperature, reduce_rate)
    return state


def trial_tokens(trial: FrozenTrial) -> tuple[int, ...] | None:
    """The tokens a trial claimed, or ``None`` for trials that never got any (void or foreign trials)."""
    tokens = trial.user_attrs.get(TOKENS_KEY)
    return None if tokens is None else tuple(int(t) for t in tokens)


def released(trial: FrozenTrial) -> bool:
    """Whether ``trial`` crashed without a verdict and gave its tokens back to the study (proposed again once).

    Such a trial counts neither as a proposal nor as an evaluation: the search then makes the same proposals
    and the same chain as one in which the crash never happened.
    """
    return trial.state == TrialState.FAIL and trial.system_attrs.get(STATUS_KEY) == CRASHED


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


def _evaluation(trial: FrozenTrial) -> Evaluation:
    return Evaluation(trial.number, trial_tokens(trial) or (), float(trial.value),
                      float(trial.system_attrs.get(U_KEY, 0.0)), trial.system_attrs.get(STATUS_KEY) == STOPPED)


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

    def __init__(self, init_temperature: float | str = DEFAULT_INIT_TEMPERATURE,
                 reduce_rate: float = DEFAULT_REDUCE_RATE) -> None:
        self.init_temperature = check_init_temperature(init_temperature)
        self.reduce_rate = reduce_rate
        self._delta = TrialDelta()
        self._reset()

    def _reset(self) -> None:
        self._last: tuple[datetime, int] | None = None
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
        return self._state
