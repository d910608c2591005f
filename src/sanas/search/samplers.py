"""Samplers over token vectors: simulated annealing, random search, regularized evolution, and any Optuna sampler.

All of them are Optuna samplers (so ``optuna.create_study(sampler=SimulatedAnnealingSampler(...))`` works) and
share one proposal rule, :meth:`TokenSampler.propose`: the first proposal is the space's ``init_tokens``
(so the original architecture's reward is known), and every later candidate is redrawn until it satisfies the
``constraint`` and was never proposed before in the study — an infeasible or repeated candidate never costs a
step. If ``max_try_times`` draws find nothing, :class:`SearchExhausted` is raised (PaddleSlim called
``sys.exit()`` there).

>>> import optuna
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> sampler = SimulatedAnnealingSampler([4, 4, 4], init_tokens=[1, 1, 1], seed=0)
>>> study = optuna.create_study(direction="maximize", sampler=sampler)
>>> study.optimize(lambda t: -sum((t.suggest_int(f"t{i}", 0, 3) - 3) ** 2 for i in range(3)), n_trials=12)
>>> study.trials[0].params
{'t0': 1, 't1': 1, 't2': 1}
>>> len({tuple(t.params.values()) for t in study.trials})
12
"""

from __future__ import annotations

import os
import random
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sanas.search.budget import BudgetFill
from sanas.search.chain import (
    DEFAULT_INIT_TEMPERATURE,
    DEFAULT_REDUCE_RATE,
    STATUS_KEY,
    TOKENS_KEY,
    U_KEY,
    VOID_STATUSES,
    ChainReplayer,
    ChainState,
    TrialDelta,
    acceptance_draw,
    acceptance_threshold,
    check_init_temperature,
    check_reduce_rate,
    evaluations,
    released,
    trial_tokens,
)

__all__ = [
    "DEFAULT_MAX_TRY_TIMES",
    "DEFAULT_SAMPLER",
    "SAMPLERS",
    "OptunaTokenSampler",
    "RandomTokenSampler",
    "RegularizedEvolutionSampler",
    "SearchExhausted",
    "SimulatedAnnealingSampler",
    "TokenSampler",
    "make_sampler",
    "param_name",
    "resolve_sampler",
    "token_distributions",
]

Tokens = tuple[int, ...]
#: Draws per proposal before a sampler declares the search exhausted (PaddleSlim's ``max_try_times``).
DEFAULT_MAX_TRY_TIMES = 300


class SearchExhausted(RuntimeError):
    """No feasible, never-proposed candidate was found in ``max_try_times`` draws: the search is over."""


def param_name(position: int) -> str:
    """The trial parameter holding token ``position``: ``"t0"``, ``"t1"``, ..."""
    return f"t{position}"


def token_distributions(range_table: Sequence[int]) -> dict[str, IntDistribution]:
    """One integer distribution per token position, ``t{i}`` in ``[0, range_table[i] - 1]``.

    >>> token_distributions([3, 2])
    {'t0': IntDistribution(high=2, log=False, low=0, step=1), 't1': IntDistribution(high=1, log=False, low=0, step=1)}
    """
    return {param_name(i): IntDistribution(0, int(r) - 1) for i, r in enumerate(range_table)}


class ClaimIndex:
    """Every token vector proposed in a study — running, finished or failed, but not void (surplus/collision) nor
    given back by a crash — kept incrementally: a finished trial never changes, so each is read once.

    Rebuilding the set from 1,000 trials costs milliseconds per proposal in Python; this looks only at trials
    that changed (see :class:`~sanas.search.chain.TrialDelta`). One index serves one study.
    """

    def __init__(self) -> None:
        self._delta = TrialDelta()
        self._finished: set[Tokens] = set()
        #: Finished trials that crashed and gave their tokens back (see :func:`~sanas.search.chain.released`).
        self.released = 0

    @staticmethod
    def _claim(trial: FrozenTrial) -> Tokens | None:
        if trial.system_attrs.get(STATUS_KEY) in VOID_STATUSES or released(trial):
            return None
        return trial_tokens(trial)

    def claimed(self, trials: Sequence[FrozenTrial], exclude: int | None = None) -> set[Tokens]:
        """Claimed token vectors of ``trials``, leaving out the running trial number ``exclude``."""
        newly, unfinished = self._delta.look(trials)
        for t in newly:
            if (tokens := self._claim(t)) is not None:
                self._finished.add(tokens)
            self.released += released(t)
        running = {c for t in unfinished if t.number != exclude and (c := self._claim(t)) is not None}
        if exclude is not None and self._delta.is_finished(exclude):
            # not the case this index is built for (excluding a finished trial): answer without the cache
            return {c for t in trials if t.number != exclude and (c := self._claim(t)) is not None}
        return self._finished | running


class TokenSampler(BaseSampler):
    """Base of the token samplers: init tokens first, then constraint-checked, never-repeated candidates.

    Subclasses yield raw candidates from :meth:`_candidates`; this class filters them. The proposal for trial
    number ``n`` draws from ``random.Random(f"{seed}:{n}")``, so a single-process search is reproducible and a
    restarted one makes the same proposals.
    """

    def __init__(self, range_table: Sequence[int], init_tokens: Sequence[int] | None = None,
                 constraint: Callable[[list[int]], bool] | None = None, seed: int = 0,
                 max_try_times: int = DEFAULT_MAX_TRY_TIMES, fill: BudgetFill | None = None) -> None:
        self.range_table = [int(r) for r in range_table]
        if not self.range_table or min(self.range_table) < 1:
            raise ValueError(f"range_table must be a non-empty list of positive ints, got {list(range_table)}")
        self.init_tokens: Tokens | None = None
        if init_tokens is not None:
            init = tuple(int(t) for t in init_tokens)
            if len(init) != len(self.range_table) or any(not 0 <= t < r for t, r in zip(init, self.range_table,
                                                                                         strict=False)):
                raise ValueError(f"init_tokens {list(init_tokens)} do not fit range_table {self.range_table}")
            self.init_tokens = init
        if max_try_times < 1:
            raise ValueError(f"max_try_times must be >= 1, got {max_try_times}")
        self.constraint = constraint
        self.seed = int(seed)
        self.max_try_times = int(max_try_times)
        if fill is not None and list(fill.range_table) != self.range_table:
            raise ValueError(f"the budget fill's range_table {fill.range_table} does not match {self.range_table}")
        #: Repairs every candidate into the budget band (see :class:`~sanas.search.budget.BudgetFill`); ``None``:
        #: candidates anywhere under the budget, PaddleSlim's moves exactly.
        self.fill = fill
        self._start: Tokens | None = None
        self._replayer = ChainReplayer(*self.chain_params())
        self._fallback = RandomSampler(seed=seed)
        self._nonce = os.urandom(8).hex()
        self.claims = ClaimIndex()

    # --- what subclasses define -------------------------------------------------------------------------------
    @abstractmethod
    def _candidates(self, study: Study | None, trials: Sequence[FrozenTrial], rng: random.Random) -> Iterator[Tokens]:
        """Yield raw candidates (possibly infeasible or already seen) for the next trial."""

    def chain_params(self) -> tuple[float | str, float]:
        """``(init_temperature, reduce_rate)`` of the reported chain; baselines report hill-climbing (T0 = 0)."""
        return 0.0, 1.0

    def acceptance_threshold(self, trials: Sequence[FrozenTrial], u: float) -> float | None:
        """The smallest reward with which the next evaluation, with acceptance draw ``u``, would be accepted.

        ``None`` when there is no acceptance test: the baselines have none (and SA has none before its first
        reward). See :meth:`SimulatedAnnealingSampler.acceptance_threshold`.
        """
        return None

    def settings(self) -> dict[str, Any]:
        """The settings that define this search; a study refuses to resume with different ones."""
        out = {"sampler": type(self).__name__, "seed": self.seed, "max_try_times": self.max_try_times,
               "init_tokens": None if self.init_tokens is None else list(self.init_tokens)}
        if self.fill is not None:  # absent for plain moves: a study made before the band existed resumes as is
            out["fill"] = self.fill.fill
        return out

    # --- shared machinery -------------------------------------------------------------------------------------
    def chain(self, trials: Sequence[FrozenTrial]) -> ChainState:
        """The chain replayed from the COMPLETE trials of ``trials`` (see :func:`sanas.search.replay_chain`)."""
        return self._replayer.replay(trials)

    def feasible(self, tokens: Sequence[int]) -> bool:
        """Whether ``tokens`` satisfy the constraint (always true without one)."""
        return self.constraint is None or bool(self.constraint(list(tokens)))

    def one_token_move(self, center: Tokens, rng: random.Random) -> Tokens:
        """PaddleSlim's move: copy ``center``, redraw one uniformly chosen position uniformly (may keep its value);
        with a budget fill, the other positions then compensate it (:meth:`repaired`)."""
        pos = rng.randrange(len(center))
        moved = list(center)
        moved[pos] = rng.randrange(self.range_table[pos])
        return self.repaired(tuple(moved), pos, rng)

    def random_tokens(self, rng: random.Random) -> Tokens:
        """A uniformly random token vector (repaired into the budget band with a budget fill)."""
        return self.repaired(tuple(rng.randrange(r) for r in self.range_table), None, rng)

    def repaired(self, tokens: Tokens, moved: int | None, rng: random.Random) -> Tokens:
        """``tokens`` repaired into the budget band, position ``moved`` kept (as they are without a fill, or when
        not even the narrowest network fits)."""
        if self.fill is None:
            return tokens
        return self.fill.repair(tokens, moved, rng) or tokens

    def start_tokens(self) -> Tokens | None:
        """The first candidate: the init tokens, or — over a budget, with a budget fill — the init tokens repaired
        into the band (every position narrowed in proportion: close to a uniform ratio), the same in every
        worker."""
        if self.init_tokens is None or self.fill is None or self.fill.fits(self.init_tokens):
            return self.init_tokens
        if self._start is None:
            self._start = self.repaired(self.init_tokens, None, random.Random(f"{self.seed}:start"))
        return self._start

    def propose(self, study: Study | None, trials: Sequence[FrozenTrial]) -> list[int]:
        """The next candidate given the study's ``trials``: feasible and never proposed before.

        Raises :class:`SearchExhausted` when ``max_try_times`` draws give nothing new and feasible.
        """
        seen = self.claims.claimed(trials)
        start = self.start_tokens()
        if start is not None and start not in seen and self.feasible(start):
            return list(start)
        # Crashed trials given back are not counted, so a crash (and its retry) leaves later proposals unchanged.
        n = len(trials) - self.claims.released
        rng = random.Random(f"{self.seed}:{n}")
        if any(t.state == TrialState.RUNNING for t in trials):
            # Other workers are proposing from the same state right now; with the same draws they would all pick
            # the same neighbour and collide. Timing already makes a parallel search non-reproducible, so mix in
            # this sampler's own nonce. Alone (one process, or a restart), proposals stay reproducible.
            rng = random.Random(f"{self.seed}:{n}:{self._nonce}")
        found = self._first_new(self._candidates(study, trials, rng), seen)
        if found is None and self.fill is not None:
            # Every candidate the band offers around the chain is taken (small spaces): go on anywhere under the
            # budget rather than end the search with steps left. Deterministic like the rest of the proposal.
            fill, self.fill = self.fill, None
            try:
                found = self._first_new(self._candidates(study, trials, random.Random(f"{self.seed}:{n}:plain")),
                                        seen)
            finally:
                self.fill = fill
        if found is None:
            raise SearchExhausted(f"{type(self).__name__} found no feasible, never-proposed candidate in "
                                  f"{self.max_try_times} draws ({len(seen)} proposed so far); the search is over")
        return found

    def _first_new(self, candidates: Iterator[Tokens], seen: set[Tokens]) -> list[int] | None:
        for _ in range(self.max_try_times):
            cand = next(candidates)
            if cand not in seen and self.feasible(cand):
                return list(cand)
        return None

    def acceptance_draw(self, tokens: Sequence[int]) -> float:
        """The stored acceptance draw ``u`` for ``tokens`` (see :func:`sanas.search.chain.acceptance_draw`)."""
        return acceptance_draw(self.seed, tokens)

    # --- the Optuna sampler interface, so these samplers also drive plain ``study.optimize`` -------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(token_distributions(self.range_table))

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        tokens = self.propose(study, others)
        # Record the claim like the SANAS API does, so chain replay and dedup see plain-Optuna trials too.
        study._storage.set_trial_user_attr(trial._trial_id, TOKENS_KEY, tokens)
        study._storage.set_trial_system_attr(trial._trial_id, U_KEY, self.acceptance_draw(tokens))
        return {param_name(i): v for i, v in enumerate(tokens)}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


class SimulatedAnnealingSampler(TokenSampler):
    """PaddleSlim's SA controller, with the chain replayed from the study so any number of workers share it.

    Each candidate is a one-token move from the chain's current (last accepted) tokens; acceptance is Metropolis
    at ``T = init_temperature · reduce_rate**k`` with ``k`` the number of finished evaluations in the study (see
    :mod:`sanas.search.chain`). Failed trials do not move the chain.

    ``widen_when_stuck`` (default on, a deliberate difference from PaddleSlim): when half of ``max_try_times``
    one-token draws find nothing new and feasible — every neighbour seen or infeasible, which happens within a few
    dozen steps in small spaces — the move widens to 2, 3, ... positions (:meth:`move`) instead of ending the
    search with steps left. Off, the sampler is PaddleSlim's exactly: one-token moves only, and the search ends
    (:class:`SearchExhausted`) when ``max_try_times`` of them find nothing. In large spaces such as DartsSpace's
    (260 neighbours) the two behave the same in practice.

    >>> s = SimulatedAnnealingSampler([14] * 20, init_tokens=[5] * 20, seed=1)
    >>> s.propose(None, [])
    [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    """

    def __init__(self, range_table: Sequence[int], init_tokens: Sequence[int] | None = None,
                 constraint: Callable[[list[int]], bool] | None = None, seed: int = 0,
                 max_try_times: int = DEFAULT_MAX_TRY_TIMES,
                 init_temperature: float | str = DEFAULT_INIT_TEMPERATURE, reduce_rate: float = DEFAULT_REDUCE_RATE,
                 widen_when_stuck: bool = True, fill: BudgetFill | None = None) -> None:
        self.init_temperature = check_init_temperature(init_temperature)
        self.reduce_rate = check_reduce_rate(reduce_rate)
        self.widen_when_stuck = bool(widen_when_stuck)
        super().__init__(range_table, init_tokens, constraint, seed, max_try_times, fill)

    def chain_params(self) -> tuple[float | str, float]:
        return self.init_temperature, self.reduce_rate

    def acceptance_threshold(self, trials: Sequence[FrozenTrial], u: float) -> float | None:
        """The smallest reward with which the next evaluation, with acceptance draw ``u``, would be accepted.

        Judged at the chain replayed from ``trials``, at its next ``k``: ``current_reward + T·ln u`` with ``T``
        the temperature the chain would use (``current_reward`` when ``T`` is 0; ``None`` before the first reward,
        which is always accepted). A reward at or above it is accepted by the replay, below it rejected — as long
        as no other evaluation finishes first (which changes ``k``, and maybe the current reward).

        >>> s = SimulatedAnnealingSampler([4], init_tokens=[0], init_temperature=0.1, reduce_rate=1.0)
        >>> s.acceptance_threshold([], 0.5) is None
        True
        """
        return acceptance_threshold(self.chain(trials), u, self.init_temperature, self.reduce_rate)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "init_temperature": self.init_temperature, "reduce_rate": self.reduce_rate,
                "widen_when_stuck": self.widen_when_stuck}

    def _candidates(self, study: Study | None, trials: Sequence[FrozenTrial], rng: random.Random) -> Iterator[Tokens]:
        center = self.chain(trials).current_tokens
        if center is None:  # nothing evaluated yet (the start running elsewhere, or infeasible): move around it
            center = self.start_tokens() or self.random_tokens(rng)
        if not self.widen_when_stuck:
            while True:
                yield self.one_token_move(center, rng)
        # The first half of the draws are PaddleSlim's one-token moves. Only when they find nothing new (every
        # neighbour seen or infeasible: common in small spaces) does the move widen, one more position per block,
        # instead of ending the search with steps left (see benchmarks/README.md).
        first = max(1, self.max_try_times // 2)
        for _ in range(first):
            yield self.one_token_move(center, rng)
        per_radius = max(1, (self.max_try_times - first) // max(1, len(center) - 1))
        radius = 2
        while True:
            for _ in range(per_radius):
                yield self.move(center, min(radius, len(center)), rng)
            radius += 1

    def move(self, center: Tokens, radius: int, rng: random.Random) -> Tokens:
        """Redraw ``radius`` distinct, uniformly chosen positions of ``center``, each to a different value.

        Positions with a single choice cannot change, so the move may differ in fewer than ``radius`` positions.

        >>> s = SimulatedAnnealingSampler([5, 5, 5, 5])
        >>> moved = s.move((2, 2, 2, 2), 3, random.Random(0))
        >>> sum(a != b for a, b in zip(moved, (2, 2, 2, 2)))
        3
        """
        moved = list(center)
        for pos in rng.sample(range(len(center)), radius):
            if self.range_table[pos] > 1:
                value = rng.randrange(self.range_table[pos] - 1)
                moved[pos] = value + (value >= center[pos])
        return self.repaired(tuple(moved), None, rng)


class RandomTokenSampler(TokenSampler):
    """Baseline: uniformly random token vectors (after ``init_tokens``), constraint-checked and never repeated.

    >>> RandomTokenSampler([3, 3], seed=0).propose(None, []) in [[a, b] for a in range(3) for b in range(3)]
    True
    """

    def _candidates(self, study: Study | None, trials: Sequence[FrozenTrial], rng: random.Random) -> Iterator[Tokens]:
        while True:
            yield self.random_tokens(rng)


class RegularizedEvolutionSampler(TokenSampler):
    """Baseline: regularized (aging) evolution, Real et al. 2019.

    The population is the last ``population_size`` evaluations in completion order (the oldest ages out). Until
    ``population_size`` candidates have been proposed, candidates are random; afterwards a tournament of
    ``tournament_size`` members drawn from the population picks the best, and its child is one one-token move away.

    >>> RegularizedEvolutionSampler([3] * 4, population_size=4, tournament_size=2).settings()["population_size"]
    4
    """

    def __init__(self, range_table: Sequence[int], init_tokens: Sequence[int] | None = None,
                 constraint: Callable[[list[int]], bool] | None = None, seed: int = 0,
                 max_try_times: int = DEFAULT_MAX_TRY_TIMES,
                 population_size: int = 20, tournament_size: int = 5, fill: BudgetFill | None = None) -> None:
        if population_size < 1 or not 1 <= tournament_size <= population_size:
            raise ValueError(f"need population_size >= tournament_size >= 1, got {population_size}, "
                             f"{tournament_size}")
        self.population_size = int(population_size)
        self.tournament_size = int(tournament_size)
        super().__init__(range_table, init_tokens, constraint, seed, max_try_times, fill)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "population_size": self.population_size,
                "tournament_size": self.tournament_size}

    def _candidates(self, study: Study | None, trials: Sequence[FrozenTrial], rng: random.Random) -> Iterator[Tokens]:
        population = [e for e in evaluations(trials) if not e.stopped][-self.population_size:]
        if len(self.claims.claimed(trials)) < self.population_size or not population:
            while True:
                yield self.random_tokens(rng)
        while True:
            contestants = rng.sample(population, min(self.tournament_size, len(population)))
            parent = max(contestants, key=lambda e: (e.reward, -e.number))
            yield self.one_token_move(parent.tokens, rng)


class OptunaTokenSampler(TokenSampler):
    """Adapter: let any Optuna sampler (TPE, GP, QMC, ...) propose tokens, with our constraint and dedup.

    The wrapped sampler sees the study's trials through their ``t0..t{n-1}`` integer parameters and is asked for
    one value per position. It is called with a provisional trial (the next trial number, no id) because the
    trial is only stored once its tokens are final; samplers that write to the trial while sampling (TPE with
    ``constant_liar=True``) are therefore not supported. After ``max_try_times // 2`` infeasible or repeated
    suggestions in a row, the rest of the draws are uniformly random, so a sampler that keeps suggesting its
    favourite never stalls the search.

    >>> import optuna
    >>> sampler = OptunaTokenSampler(optuna.samplers.TPESampler(seed=0), [4, 4], init_tokens=[0, 0])
    >>> sampler.settings()["wrapped"]
    'TPESampler'
    """

    def __init__(self, sampler: BaseSampler, range_table: Sequence[int], init_tokens: Sequence[int] | None = None,
                 constraint: Callable[[list[int]], bool] | None = None, seed: int = 0,
                 max_try_times: int = DEFAULT_MAX_TRY_TIMES, fill: BudgetFill | None = None) -> None:
        self.wrapped = sampler
        super().__init__(range_table, init_tokens, constraint, seed, max_try_times, fill)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "wrapped": type(self.wrapped).__name__}

    def _candidates(self, study: Study | None, trials: Sequence[FrozenTrial], rng: random.Random) -> Iterator[Tokens]:
        if study is None:
            raise ValueError("OptunaTokenSampler needs the study to ask its wrapped sampler")
        space = token_distributions(self.range_table)
        for _ in range(self.max_try_times // 2):
            provisional = FrozenTrial(number=len(trials), state=TrialState.RUNNING, value=None, values=None,
                                      datetime_start=None, datetime_complete=None, params={}, distributions={},
                                      user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=-1)
            relative_space = {k: v for k, v in self.wrapped.infer_relative_search_space(study, provisional).items()
                              if k in space}
            params = self.wrapped.sample_relative(study, provisional, relative_space) if relative_space else {}
            for name, dist in space.items():
                if name not in params:
                    params[name] = self.wrapped.sample_independent(study, provisional, name, dist)
            yield self.repaired(tuple(int(params[param_name(i)]) for i in range(len(self.range_table))), None, rng)
        while True:
            yield self.random_tokens(rng)



def _tpe(range_table: Sequence[int], seed: int = 0, **common: Any) -> OptunaTokenSampler:
    from optuna.samplers import TPESampler

    return OptunaTokenSampler(TPESampler(seed=seed), range_table, seed=seed, **common)


#: The named samplers, one registry behind ``SANAS(sampler=...)``, the config's ``[search] sampler`` and
#: ``sanas search --sampler``: name → a factory taking the :class:`TokenSampler` arguments.
SAMPLERS: dict[str, Callable[..., TokenSampler]] = {
    "sa": SimulatedAnnealingSampler,
    "random": RandomTokenSampler,
    "evolution": RegularizedEvolutionSampler,
    "tpe": _tpe,  # Optuna's TPE through OptunaTokenSampler; any other Optuna sampler can be passed as an object
}
DEFAULT_SAMPLER = "sa"


def make_sampler(name: str, range_table: Sequence[int], init_tokens: Sequence[int] | None = None,
                 constraint: Callable[[list[int]], bool] | None = None, seed: int = 0,
                 max_try_times: int = DEFAULT_MAX_TRY_TIMES,
                 init_temperature: float | str = DEFAULT_INIT_TEMPERATURE,
                 reduce_rate: float = DEFAULT_REDUCE_RATE, fill: BudgetFill | None = None) -> TokenSampler:
    """The sampler registered as ``name`` (see :data:`SAMPLERS`); the temperature settings go to SA only.

    >>> type(make_sampler("tpe", [3, 3])).__name__, make_sampler("sa", [3, 3]).init_temperature
    ('OptunaTokenSampler', 'auto')
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    common: dict[str, Any] = {"init_tokens": init_tokens, "constraint": constraint, "seed": seed,
                              "max_try_times": max_try_times, "fill": fill}
    if name == "sa":
        common.update(init_temperature=init_temperature, reduce_rate=reduce_rate)
    return SAMPLERS[name](range_table, **common)


def resolve_sampler(sampler: str | TokenSampler | BaseSampler | None, range_table: Sequence[int],
                    init_tokens: Sequence[int] | None = None, constraint: Callable[[list[int]], bool] | None = None,
                    seed: int = 0, max_try_times: int = DEFAULT_MAX_TRY_TIMES,
                    init_temperature: float | str | None = None,
                    reduce_rate: float = DEFAULT_REDUCE_RATE, fill: BudgetFill | None = None) -> TokenSampler:
    """What ``SANAS(sampler=...)`` accepts, as a :class:`TokenSampler`: a registered name (``None``: the
    default), a :class:`TokenSampler` (given ``constraint`` and ``fill`` are attached to it unless it has its
    own), or any Optuna sampler (wrapped).

    >>> type(resolve_sampler(None, [3, 3])).__name__, type(resolve_sampler(RandomSampler(), [3])).__name__
    ('SimulatedAnnealingSampler', 'OptunaTokenSampler')
    """
    init_temperature = check_init_temperature(DEFAULT_INIT_TEMPERATURE if init_temperature is None
                                              else init_temperature)
    reduce_rate = check_reduce_rate(reduce_rate)
    if isinstance(sampler, TokenSampler):
        if constraint is not None and sampler.constraint is not None:
            raise ValueError("give the constraint to the sampler or to SANAS, not both")
        if list(sampler.range_table) != list(range_table):
            raise ValueError(f"sampler range_table {sampler.range_table} does not match the space's "
                             f"{list(range_table)}")
        if constraint is not None:
            sampler.constraint = constraint
        if fill is not None and sampler.fill is None:
            sampler.fill = fill
        return sampler
    common: dict[str, Any] = {"init_tokens": init_tokens, "constraint": constraint, "seed": seed,
                              "max_try_times": max_try_times, "fill": fill}
    if isinstance(sampler, BaseSampler):
        return OptunaTokenSampler(sampler, range_table, **common)
    name = DEFAULT_SAMPLER if sampler is None else sampler
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}, a TokenSampler "
                         f"or an Optuna sampler")
    return make_sampler(name, range_table, **common, init_temperature=init_temperature, reduce_rate=reduce_rate)
