"""The SANAS API: PaddleSlim's names and loop, on an Optuna study shared by any number of workers.

PaddleSlim's tutorial loop ports line by line::

    sa_nas = SANAS([("DartsSpace")], search_steps=300, max_params=3_770_000, save_checkpoint="runs/sa")
    while archs := sa_nas.next_archs():       # [] once the study has search_steps finished evaluations
        score = train_and_evaluate(archs[0])  # accuracy in [0, 1]
        sa_nas.reward(score)                  # True if the chain accepted the candidate
    print(sa_nas.current_info())

Run the same script in several processes (same ``save_checkpoint`` or ``storage`` URL) and they share one
chain. How ``search_steps`` stays exact with many workers: a worker creates a trial only while
``complete + running < search_steps``, and re-counts after creating it; if the others' trials already fill the
budget, its trial is discarded as "surplus" (FAIL, never evaluated, not a proposal). Two workers that claim
the same tokens at the same moment see each other on that re-count and discard theirs as "collision". Dead
workers are found by heartbeat: a trial whose ``sanas:heartbeat`` counter has not moved for ``grace_period``
seconds (on the observer's own clock, so machines' clocks need not agree) is marked FAIL with that reason.
"""

from __future__ import annotations

import atexit
import logging
import math
import numbers
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from sanas.search.chain import CURVE_KEY, FAIL_REASON_KEY, STATUS_KEY, STOPPED, TOKENS_KEY, U_KEY, TrialDelta
from sanas.search.samplers import (
    OptunaTokenSampler,
    RandomTokenSampler,
    RegularizedEvolutionSampler,
    SearchExhausted,
    SimulatedAnnealingSampler,
    TokenSampler,
    token_distributions,
)
from sanas.search.storage import (
    GrpcServer,
    connect_server,
    existing_store,
    open_storage,
    start_server,
)
from sanas.spaces import SearchSpace, get_space

__all__ = ["HEARTBEAT_KEY", "SANAS", "SEARCH_KEY"]

log = logging.getLogger("sanas.search")

#: Study user attribute: the search's identity (space fingerprint and config, sampler settings, budget).
SEARCH_KEY = "sanas:search"
#: Trial system attribute: a counter the evaluating worker bumps every ``heartbeat_interval`` seconds.
HEARTBEAT_KEY = "sanas:heartbeat"
SAMPLERS: dict[str, type[TokenSampler]] = {
    "sa": SimulatedAnnealingSampler,
    "random": RandomTokenSampler,
    "evolution": RegularizedEvolutionSampler,
}


@dataclass
class _Pending:
    trial_id: int
    number: int
    tokens: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    params_thread: threading.Thread | None = None
    params_error: Exception | None = None


def _check_score(score: object) -> float:
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise ValueError(f"reward must be a real number, got {score!r} ({type(score).__name__}); "
                         f"report a failed candidate with fail(reason)")
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"reward must be finite, got {value}; report a failed candidate with fail(reason)")
    return value


class SANAS:
    """Simulated-annealing search over a space's tokens, with PaddleSlim's API.

    Args:
        configs: the space: ``[("DartsSpace")]``, ``[("DartsSpace", {...})]``, a name or a built space.
        server_addr: ``(host, port)`` of a sanas server. With ``is_server=True`` this process serves its study
            there (host ``""``/``None`` → 127.0.0.1) and searches too; with ``is_server=False`` it is a client.
        init_temperature: T0 (default 1.0, PaddleSlim's value when init tokens exist, as in every sanas space).
        reduce_rate: temperature decay per finished evaluation.
        search_steps: finished evaluations the study ends with, counted over all workers.
        init_tokens: the first candidate and the chain's start (default: the space's own).
        save_checkpoint: run directory holding the study store (``None``: in memory, nothing saved). A study of
            the same name already there is resumed — this is how a restarted worker continues.
        load_checkpoint: run directory of an existing search to resume; it must hold the study (overrides
            ``save_checkpoint``).
        is_server: see ``server_addr``.
        storage: a database URL or an Optuna storage, instead of the run directory (clients of a server: none).
        study_name: the study inside the store.
        constraint: ``tokens -> bool``; infeasible candidates are redrawn, never evaluated.
        max_params: budget; adds ``space.count_params(tokens) <= max_params`` to the constraint.
        sampler: ``"sa"`` (default), ``"random"``, ``"evolution"``, a :class:`TokenSampler`, or any Optuna sampler
            (wrapped in :class:`OptunaTokenSampler`).
        seed: seeds proposals and acceptance draws.
        max_try_times: draws per proposal before the search is declared exhausted.
        heartbeat_interval, grace_period: seconds between heartbeats of a pending candidate, and of silence
            after which another worker marks it failed.
        connect_timeout: bound on reaching a database or server.
        poll_interval: seconds between checks while other workers' trials fill the remaining steps.

    The loop: :meth:`next_archs` (or :meth:`next_tokens`) → evaluate → :meth:`reward` with the score, or
    :meth:`fail` (alias ``reward_failed``) with a reason when the candidate crashed; :attr:`tokens` and
    :attr:`trial_number` name the pending candidate; :meth:`current_info` reports the chain; :attr:`study` is the
    Optuna study (optuna-dashboard shows it). The loop ends when ``next_archs()`` returns ``[]``.

    >>> sa = SANAS("DartsSpace", search_steps=2, save_checkpoint=None, max_params=3_770_000)
    >>> archs = sa.next_archs(); sa.tokens == sa.space.init_tokens(), sa.reward(0.5)
    (True, True)
    >>> len(sa.next_archs()), sa.reward(0.4), sa.next_archs()
    (1, True, [])
    """

    def __init__(self, configs: Any, server_addr: Sequence[Any] | None = None, init_temperature: float | None = None,
                 reduce_rate: float = 0.85, search_steps: int = 300, init_tokens: Sequence[int] | None = None,
                 save_checkpoint: str | os.PathLike[str] | None = "nas_checkpoint",
                 load_checkpoint: str | os.PathLike[str] | None = None, is_server: bool = True,
                 storage: str | BaseStorage | None = None, study_name: str = "sanas",
                 constraint: Callable[[list[int]], bool] | None = None, max_params: int | None = None,
                 sampler: str | BaseSampler | None = None, seed: int = 0, max_try_times: int = 300,
                 heartbeat_interval: float = 10.0, grace_period: float = 60.0, connect_timeout: float = 30.0,
                 poll_interval: float = 0.5) -> None:
        if isinstance(search_steps, bool) or not isinstance(search_steps, int) or search_steps < 1:
            raise ValueError(f"search_steps must be a positive integer, got {search_steps!r}")
        if not 0 < heartbeat_interval < grace_period:
            raise ValueError(f"need 0 < heartbeat_interval < grace_period, got {heartbeat_interval}, {grace_period}")
        self.space: SearchSpace = get_space(configs)
        self.search_steps = search_steps
        self.heartbeat_interval = float(heartbeat_interval)
        self.grace_period = float(grace_period)
        self.poll_interval = float(poll_interval)
        self.max_params = max_params
        self.sampler = self._make_sampler(sampler, init_temperature, reduce_rate, init_tokens, constraint,
                                          max_params, seed, max_try_times)
        self._server: GrpcServer | None = None
        self._pending: _Pending | None = None
        self._finished = False
        self._last_trial: int | None = None
        self._beats: dict[int, tuple[Any, float]] = {}  # trial id -> (last heartbeat seen, when first seen)
        self._snapshot: list[FrozenTrial] | None = None
        self._delta, self._stale_delta = TrialDelta(), TrialDelta()  # each sees every read of the study once
        self._unfinished: list[FrozenTrial] = []
        self._complete = 0
        self._exhausted = False

        run_dir = load_checkpoint if load_checkpoint is not None else save_checkpoint
        if load_checkpoint is not None and not existing_store(load_checkpoint):
            raise FileNotFoundError(f"load_checkpoint {os.fspath(load_checkpoint)!r} holds no sanas store "
                                    f"(expected sanas.journal or sanas.db in it)")
        if server_addr is not None and not is_server:
            if storage is not None:
                raise ValueError("a client (is_server=False) uses the server's storage; do not pass storage")
            self.storage = connect_server(server_addr, connect_timeout)
        else:
            self.storage = open_storage(storage, run_dir, server=server_addr is not None,
                                        connect_timeout=connect_timeout)
        self.study_name = study_name
        self.study = self._open_study(must_exist=load_checkpoint is not None)
        if server_addr is not None and is_server:
            self._server = start_server(self.storage, server_addr)
        atexit.register(self.close)

    # --- set-up -----------------------------------------------------------------------------------------------
    def _make_sampler(self, sampler: str | BaseSampler | None, init_temperature: float | None, reduce_rate: float,
                      init_tokens: Sequence[int] | None, constraint: Callable[[list[int]], bool] | None,
                      max_params: int | None, seed: int, max_try_times: int) -> TokenSampler:
        if max_params is not None:
            if isinstance(max_params, bool) or not isinstance(max_params, numbers.Real) or max_params <= 0:
                raise ValueError(f"max_params must be a positive number, got {max_params!r}")
            user = constraint

            def constraint(tokens: list[int]) -> bool:
                return self.space.count_params(tokens) <= max_params and (user is None or bool(user(tokens)))

        init = self.space.validate(init_tokens) if init_tokens is not None else self.space.init_tokens()
        common = {"range_table": self.space.range_table(), "init_tokens": init, "constraint": constraint,
                  "seed": seed, "max_try_times": max_try_times}
        if isinstance(sampler, TokenSampler):
            if constraint is not None and sampler.constraint is not None:
                raise ValueError("give the constraint to the sampler or to SANAS, not both")
            if sampler.range_table != self.space.range_table():
                raise ValueError(f"sampler range_table {sampler.range_table} does not match the space's "
                                 f"{self.space.range_table()}")
            if constraint is not None:
                sampler.constraint = constraint
            return sampler
        if isinstance(sampler, BaseSampler):
            return OptunaTokenSampler(sampler, **common)
        name = "sa" if sampler is None else sampler
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}, a TokenSampler "
                             f"or an Optuna sampler")
        if name == "sa":
            t0 = 1.0 if init_temperature is None else float(init_temperature)
            return SimulatedAnnealingSampler(**common, init_temperature=t0, reduce_rate=reduce_rate)
        return SAMPLERS[name](**common)

    def settings(self) -> dict[str, Any]:
        """What a study records at creation and checks on every resume."""
        return {**self.sampler.settings(), "max_params": self.max_params}

    def _open_study(self, must_exist: bool) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # Optuna's per-trial INFO lines drown our own
        try:
            self.storage.get_study_id_from_name(self.study_name)
            exists = True
        except KeyError:
            exists = False
        if must_exist and not exists:
            raise KeyError(f"no study {self.study_name!r} in the checkpoint to load")
        study = optuna.create_study(storage=self.storage, study_name=self.study_name, direction="maximize",
                                    sampler=self.sampler, load_if_exists=True)
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ValueError(f"study {self.study_name!r} minimizes; a sanas study maximizes the reward")
        # One attribute, written in one call: a worker that loads the study while another creates it sees all of
        # the search's identity or none of it.
        want = {"fingerprint": self.space.fingerprint(), "space": self.space.config(), "settings": self.settings()}
        have = study.user_attrs.get(SEARCH_KEY)
        if have is not None:
            diff = [k for k in want if have.get(k) != want[k]]
            if diff:
                detail = "; ".join(f"{k}: study has {have.get(k)!r}, this run has {want[k]!r}" for k in diff)
                raise ValueError(f"study {self.study_name!r} was created with a different search, refusing to "
                                 f"resume it ({detail}); use another study_name or checkpoint")
        else:
            if any(TOKENS_KEY in t.user_attrs for t in study.get_trials(deepcopy=False)):
                raise ValueError(f"study {self.study_name!r} already has trials but was not created by sanas")
            # Two workers creating the study together both get here and write the same value; with different
            # settings the later write wins (start the first worker before the others to rule that out).
            study.set_user_attr(SEARCH_KEY, want)
        return study

    # --- the loop ---------------------------------------------------------------------------------------------
    @property
    def tokens(self) -> list[int] | None:
        """Tokens of the pending candidate (the one :meth:`next_archs` returned), or ``None``."""
        return None if self._pending is None else list(self._pending.tokens)

    @property
    def trial_number(self) -> int | None:
        """Optuna trial number of the pending candidate, or ``None`` (names its logs and metrics files)."""
        return None if self._pending is None else self._pending.number

    def tokens2arch(self, tokens: Sequence[int]) -> nn.Module:
        """The network for ``tokens`` (validated against the space)."""
        return self.space.token2arch(self.space.validate(tokens))

    def next_archs(self) -> list[nn.Module]:
        """The next candidate as ``[network]``, or ``[]`` once the study has ``search_steps`` finished evaluations.

        ``[]`` is also returned when the sampler cannot find a new feasible candidate (logged, and recorded in the
        study so every worker stops). Waits while other workers' running trials fill the remaining steps.
        """
        tokens = self.next_tokens()
        return [] if tokens is None else [self.space.token2arch(tokens)]

    def next_tokens(self) -> list[int] | None:
        """Like :meth:`next_archs`, but the candidate's tokens (``None`` at the end); no network is built.

        For loops that build the network themselves (e.g. on another device or with another builder).
        """
        if self._pending is not None:
            raise RuntimeError(f"trial {self._pending.number} (tokens {self._pending.tokens}) is still pending: "
                               f"call reward(score) or fail(reason) before next_archs()")
        while not self._finished:
            trials = self._trials()
            self._snapshot = None
            complete, running = self._tally(trials)
            if complete >= self.search_steps or self._exhausted:
                self._finished = True
                break
            if complete + running >= self.search_steps:
                time.sleep(self.poll_interval)
                continue
            try:
                tokens = self.sampler.propose(self.study, trials)
            except SearchExhausted as e:
                if running:  # others' results may move the chain somewhere with unseen neighbours
                    time.sleep(self.poll_interval)
                    continue
                log.warning("%s", e)
                self._mark_exhausted(str(e))
                self._finished = True
                break
            pending = self._claim(tokens)
            if pending is not None:
                return tokens
        log.info("search over: %d finished evaluations", self.search_steps)
        return None

    def _trials(self) -> list[FrozenTrial]:
        # reward() has just read the study; proposing from that read saves a round of queries per step. It is at
        # most one evaluation old, and the claim check after creating the trial reads the study again anyway.
        trials = self._snapshot if self._snapshot is not None else self.study.get_trials(deepcopy=False)
        if self._fail_stale(trials):
            trials = self.study.get_trials(deepcopy=False)
        return trials

    def _tally(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        """``(COMPLETE, RUNNING)`` counts of ``trials``, updated from the trials that changed since last time."""
        newly, self._unfinished = self._delta.look(trials)
        for t in newly:
            if t.state == TrialState.COMPLETE:
                self._complete += 1
            elif t.system_attrs.get(STATUS_KEY) == "exhausted":  # the end marker is a trial: no extra read
                self._exhausted = True
        return self._complete, sum(t.state == TrialState.RUNNING for t in self._unfinished)

    def _claim(self, tokens: list[int]) -> _Pending | None:
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.now(),
            datetime_complete=None, params={}, distributions={}, user_attrs={TOKENS_KEY: tokens},
            system_attrs={U_KEY: self.sampler.acceptance_draw(tokens)}, intermediate_values={}, trial_id=0)
        # One write creates the trial with its tokens and draw, so no other worker ever sees a half-made claim.
        # No status or heartbeat attribute yet: every attribute costs the RDB storage two more statements.
        # The t0..t{n-1} parameters come later (see _record_params): Optuna's RDB storage spends ~100 statements
        # per parameter, far too slow for the claim.
        trial_id = self.storage.create_new_trial(self.study._study_id, template_trial=template)
        trials = self.study.get_trials(deepcopy=False)
        complete, running = self._tally(trials)
        me = next(t for t in self._unfinished if t._trial_id == trial_id)
        running -= 1  # me
        key = tuple(tokens)
        if complete + running >= self.search_steps:
            self._void(trial_id, "surplus", "other workers' trials already fill search_steps")
            time.sleep(random.uniform(0, self.poll_interval))  # desynchronise workers that raced here together
            return None
        if key in self.sampler.claims.claimed(trials, exclude=me.number):
            self._void(trial_id, "collision", "another worker claimed the same tokens at the same moment")
            time.sleep(random.uniform(0, self.poll_interval / 4))
            return None
        pending = _Pending(trial_id, me.number, tokens)
        pending.thread = threading.Thread(target=self._heartbeat, args=(pending,), daemon=True,
                                          name=f"sanas-heartbeat-{me.number}")
        pending.thread.start()
        pending.params_thread = threading.Thread(target=self._record_params, args=(pending,), daemon=True,
                                                 name=f"sanas-params-{me.number}")
        pending.params_thread.start()
        self._pending = pending
        log.info("trial %d: tokens %s", me.number, tokens)
        return pending

    def _mark_exhausted(self, reason: str) -> None:
        now = datetime.now()
        marker = FrozenTrial(
            number=0, state=TrialState.FAIL, value=None, values=None, datetime_start=now, datetime_complete=now,
            params={}, distributions={}, user_attrs={FAIL_REASON_KEY: f"exhausted: {reason}"},
            system_attrs={STATUS_KEY: "exhausted"}, intermediate_values={}, trial_id=0)
        self.storage.create_new_trial(self.study._study_id, template_trial=marker)

    def _void(self, trial_id: int, status: str, reason: str) -> None:
        self.storage.set_trial_system_attr(trial_id, STATUS_KEY, status)
        self.storage.set_trial_user_attr(trial_id, FAIL_REASON_KEY, f"{status}: {reason}")
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def _record_params(self, pending: _Pending) -> None:
        """Store the tokens as Optuna parameters ``t0..t{n-1}`` while the candidate is evaluated.

        They are what optuna-dashboard plots and what a wrapped Optuna sampler learns from; claims and dedup use
        the ``tokens`` attribute, so nothing waits for this. :meth:`reward` joins it before finishing the trial.
        """
        try:
            for i, (name, dist) in enumerate(token_distributions(self.space.range_table()).items()):
                self.storage.set_trial_param(pending.trial_id, name, float(pending.tokens[i]), dist)
        except Exception as e:  # reported by reward()/fail(), which run in the caller's thread
            pending.params_error = e

    def _heartbeat(self, pending: _Pending) -> None:
        beat = 0
        while not pending.stop.wait(self.heartbeat_interval):
            beat += 1
            try:
                self.storage.set_trial_system_attr(pending.trial_id, HEARTBEAT_KEY, beat)
            except UpdateFinishedTrialError:
                return  # finished (or failed as stale by another worker); reward() reports it
            except Exception as e:  # a storage hiccup must not kill the thread: the next beat retries
                log.warning("heartbeat of trial %d failed: %s", pending.number, e)

    def _fail_stale(self, trials: Sequence[FrozenTrial]) -> bool:
        """Mark FAIL the running trials whose heartbeat has not moved for ``grace_period`` (our clock)."""
        now = time.monotonic()
        mine = None if self._pending is None else self._pending.trial_id
        failed = False
        running = set()
        _, unfinished = self._stale_delta.look(trials)
        for t in unfinished:
            if t.state != TrialState.RUNNING or t._trial_id == mine:
                continue
            running.add(t._trial_id)
            beat = t.system_attrs.get(HEARTBEAT_KEY)
            seen = self._beats.get(t._trial_id)
            if seen is None or seen[0] != beat:
                self._beats[t._trial_id] = (beat, now)
            elif now - seen[1] >= self.grace_period:
                reason = (f"stale: no heartbeat for {self.grace_period:g} s (worker killed or hung); "
                          f"marked failed by pid {os.getpid()}")
                try:
                    self.storage.set_trial_user_attr(t._trial_id, FAIL_REASON_KEY, reason)
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                    log.warning("trial %d: %s", t.number, reason)
                    failed = True
                except UpdateFinishedTrialError:
                    pass  # its worker finished it after all, or another worker failed it first
        self._beats = {k: v for k, v in self._beats.items() if k in running}
        return failed

    def _finish_pending(self, what: str) -> _Pending:
        if self._pending is None:
            if self._last_trial is not None:
                raise RuntimeError(f"{what} called twice: trial {self._last_trial} is already finished; "
                                   f"call next_archs() for the next candidate")
            raise RuntimeError(f"{what} called before next_archs(): there is no candidate to report on")
        return self._pending

    def _close_pending(self, state: TrialState, value: float | None, reason: str | None) -> None:
        pending = self._pending
        assert pending is not None
        if pending.params_thread is not None:
            pending.params_thread.join()
        pending.stop.set()
        if pending.thread is not None:
            pending.thread.join()
        self._pending, self._last_trial = None, pending.number
        if pending.params_error is not None and not isinstance(pending.params_error, UpdateFinishedTrialError):
            log.warning("trial %d: could not store its parameters: %s", pending.number, pending.params_error)
        try:
            if reason is not None:
                self.storage.set_trial_user_attr(pending.trial_id, FAIL_REASON_KEY, reason)
            self.storage.set_trial_state_values(pending.trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError as e:
            trial = self.storage.get_trial(pending.trial_id)
            raise RuntimeError(f"trial {pending.number} was already finished as {trial.state.name} by another "
                               f"worker ({trial.user_attrs.get(FAIL_REASON_KEY, 'no reason')}); "
                               f"raise heartbeat_interval/grace_period if evaluations stall the process") from e

    def acceptance_threshold(self) -> float | None:
        """The reward the pending candidate needs for the chain to accept it, were it the next to finish.

        Its acceptance draw ``u`` is fixed when it is proposed, so this is known before it trains:
        ``current_reward + T·ln u``. ``None`` when everything would be accepted (no reward yet) or the sampler
        has no acceptance test (random, evolution, Optuna samplers). Early stopping compares against it.
        """
        if self._pending is None:
            raise RuntimeError("acceptance_threshold() needs a pending candidate: call next_archs() first")
        u = self.sampler.acceptance_draw(self._pending.tokens)
        return self.sampler.acceptance_threshold(self.study.get_trials(deepcopy=False), u)

    def reward(self, score: float, curve: Sequence[Sequence[float]] | None = None, stopped: bool = False) -> bool:
        """Record the pending candidate's reward; return whether the chain accepted it.

        ``score`` must be a finite real number; NaN, inf or non-numbers raise ``ValueError`` and leave the
        candidate pending (report a crashed candidate with :meth:`fail`). ``curve`` (``[epochs, top-1]`` pairs
        of an inherited candidate's checks) is stored on the trial; later candidates' early stops learn their
        margins from it. ``stopped=True`` records a candidate stopped early: ``score`` is its partial reward, it
        counts as a finished evaluation, and the chain rejects it.
        """
        pending = self._finish_pending("reward()")
        value = _check_score(score)
        if curve is not None:
            self.storage.set_trial_user_attr(pending.trial_id, CURVE_KEY, [[float(a), float(b)] for a, b in curve])
        if stopped:
            self.storage.set_trial_system_attr(pending.trial_id, STATUS_KEY, STOPPED)
        self._close_pending(TrialState.COMPLETE, value, None)
        self._snapshot = self.study.get_trials(deepcopy=False)
        chain = self.sampler.chain(self._snapshot)
        step = next((s for s in reversed(chain.steps) if s.number == pending.number), None)
        accepted = bool(step is not None and step.accepted)
        log.info("trial %d: reward %.6g, %s", pending.number, value, "accepted" if accepted else "rejected")
        return accepted

    def fail(self, reason: str) -> None:
        """Record the pending candidate as failed (crash, OOM, NaN loss, ...): it does not move the chain."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"fail() needs a non-empty reason string, got {reason!r}")
        pending = self._finish_pending("fail()")
        self._close_pending(TrialState.FAIL, None, reason)
        log.info("trial %d: failed: %s", pending.number, reason)

    reward_failed = fail

    def current_info(self) -> dict[str, Any]:
        """The chain now: ``best_tokens``, ``best_reward``, ``current_tokens``, ``current_reward``, ``temperature``
        (the next evaluation's) and ``finished`` (evaluations so far). Tokens are ``None`` before any reward,
        except ``current_tokens``, which then is the chain's start (init tokens)."""
        chain = self.sampler.chain(self.study.get_trials(deepcopy=False))
        t0, rate = self.sampler.chain_params()
        start = self.sampler.init_tokens
        return {
            "best_tokens": None if chain.best_tokens is None else list(chain.best_tokens),
            "best_reward": chain.best_reward,
            "current_tokens": list(chain.current_tokens or start or []) or None,
            "current_reward": chain.current_reward,
            "temperature": t0 * rate**chain.k,
            "finished": chain.k,
        }

    def close(self) -> None:
        """Stop the heartbeat and, on a server, the gRPC proxy (after letting clients see the end)."""
        if self._pending is not None:
            self._pending.stop.set()
        if self._server is not None:
            server, self._server = self._server, None
            if self._finished:
                # Waiting clients poll every poll_interval; let them read the final state before the proxy goes.
                time.sleep(2 * self.poll_interval + 1)
            server.stop(grace=1.0)

    def __enter__(self) -> SANAS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
