"""The SANAS API: PaddleSlim's names and loop, on an Optuna study shared by any number of workers.

PaddleSlim's tutorial loop ports line by line::

    sa_nas = SANAS([("DartsSpace")], search_steps=300, max_params="3.77M", save_checkpoint="runs/sa")
    while archs := sa_nas.next_archs():       # [] once the study has search_steps finished evaluations
        score = train_and_evaluate(archs[0])  # accuracy in [0, 1]
        sa_nas.reward(score)                  # True if the chain accepted the candidate
    print(sa_nas.current_info())

So does the tutorial's own shape, ``for step in range(SEARCH_STEPS)`` with ``continue`` past an over-budget
network: calling ``next_archs()`` again without ``reward()`` records the pending candidate as *skipped* (never
proposed again, not evaluated, not counted in ``search_steps``, not moving the chain) and proposes the next one.

Run the same script in several processes (same ``save_checkpoint`` or ``storage`` URL, or a sanas server) and
they share one chain; ``search_steps`` stays exact and dead workers' candidates are found and proposed again —
how is :mod:`sanas.search.lease`'s job (claims, heartbeats, reaping).

A crash is not a verdict on the architecture: a candidate whose worker died, was killed or was interrupted
(``fail(reason, retry=True)``, or found stale) is marked "crashed" and proposed once more, before any new
candidate, by whichever worker asks next. Crashed trials count neither as proposals nor as evaluations, so the
chain and the later proposals are the same as if the crash had never happened. A second crash of the same
tokens, and every failure reported without ``retry`` (NaN loss, out of memory), is final.
"""

from __future__ import annotations

import atexit
import logging
import math
import numbers
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from torch import nn

from sanas.processes import refuse_in_bootstrap
from sanas.search.budget import (
    DEFAULT_FILL,
    DEFAULT_MOVE,
    BudgetFill,
    check_fill,
    check_move,
    search_budgets,
    within_budgets,
)
from sanas.search.chain import (
    CURVE_KEY,
    DEFAULT_INIT_TEMPERATURE,
    DEFAULT_REDUCE_RATE,
    SKIPPED,
    STOPPED,
    TOKENS_KEY,
)
from sanas.search.lease import (
    CLOSING_KEY,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    HEARTBEAT_KEY,
    OWNER_KEY,
    Lease,
    Ledger,
)
from sanas.search.samplers import DEFAULT_MAX_TRY_TIMES, SAMPLERS, resolve_sampler
from sanas.search.storage import (
    DEFAULT_CONNECT_TIMEOUT,
    GrpcServer,
    StorageUnavailable,
    check_serve_address,
    check_server_addr,
    existing_store,
    join_storage,
    server_answers,
    server_unavailable,
    start_server,
)
from sanas.spaces import SearchSpace, get_space

__all__ = ["CLOSING_KEY", "DEFAULT_SEARCH_STEPS", "DEFAULT_STUDY_NAME", "HEARTBEAT_KEY", "OWNER_KEY", "SAMPLERS",
           "SANAS", "SEARCH_KEY", "open_study"]

log = logging.getLogger("sanas.search")

#: Finished evaluations a search ends with when none is given (PaddleSlim's demo).
DEFAULT_SEARCH_STEPS = 300
#: The study inside a store when none is named.
DEFAULT_STUDY_NAME = "sanas"
#: Study user attribute: the search's identity (space fingerprint and config, sampler settings, budget).
SEARCH_KEY = "sanas:search"


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
            The server keeps serving, when its own loop is over, until no client holds a candidate. The port is
            unauthenticated and unencrypted: bind a non-loopback host only on a network you trust.
        init_temperature: ``"auto"`` (default): the scale-free temperature, derived from the reward differences
            the chain has seen (:mod:`sanas.search.chain`), the same for rewards as fractions, percent or negated
            losses. A number is a fixed T0, ``T = T0 · reduce_rate**k``; ``1.0`` is PaddleSlim's, exactly.
        reduce_rate: temperature decay per finished evaluation (default: PaddleSlim's,
            :data:`~sanas.search.chain.DEFAULT_REDUCE_RATE`).
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
        max_params: budget; adds ``space.count_params(tokens) <= max_params`` to the constraint. A whole number of
            parameters (``3770000``), or a string as on the CLI: ``"3.77M"``, ``"500k"``, ``"0.9x"`` (of the init
            tokens' count). PaddleSlim's ``MAX_PARAMS = 3.77`` (millions) is refused with that hint, and so is a
            budget below the space's smallest network.
        max_macs: a budget of multiply-accumulates per example (``space.count_macs``), written the same way
            (``"0.5x"`` of the init tokens' MACs); with ``max_params`` both hold.
        move: ``"fill"`` (default): every candidate is repaired into the band ``[fill · budget, budget]``, a move
            on one position compensated on the others (:class:`~sanas.search.budget.BudgetFill`), and a start
            over the budget is the init tokens narrowed evenly into the band; ``"plain"``: PaddleSlim's
            one-token move exactly, candidates anywhere under the budget. Without a budget both are plain.
        fill: the band's lower edge as a fraction of the budget, in (0, 1] (default 0.95).
        sampler: a registered name (:data:`~sanas.search.samplers.SAMPLERS`: ``"sa"``, the default, ``"random"``,
            ``"evolution"``, ``"tpe"``), a :class:`TokenSampler`, or any Optuna sampler (wrapped in
            :class:`OptunaTokenSampler`).
        seed: seeds proposals and acceptance draws.
        max_try_times: draws per proposal before the search is declared exhausted.
        heartbeat_interval, grace_period: seconds between heartbeats of a pending candidate, and of silence
            after which another worker marks it failed.
        connect_timeout: bound on reaching a database or server.
        poll_interval: seconds between checks while other workers' trials fill the remaining steps.

    The loop: :meth:`next_archs` (or :meth:`next_tokens`) → evaluate → :meth:`reward` with the score, or
    :meth:`fail` (alias ``reward_failed``) with a reason when the candidate crashed; :attr:`tokens` and
    :attr:`trial_number` name the pending candidate; :meth:`current_info` reports the chain; :attr:`study` is the
    Optuna study (optuna-dashboard shows it). The loop ends when ``next_archs()`` returns ``[]`` — also on a client
    whose server has finished. Calling ``next_archs()`` again without reporting skips the pending candidate.

    >>> sa = SANAS("DartsSpace", search_steps=2, save_checkpoint=None, max_params="3.77M")
    >>> archs = sa.next_archs(); sa.tokens == sa.space.init_tokens(), sa.reward(0.5)
    (True, True)
    >>> len(sa.next_archs()), sa.reward(0.4), sa.next_archs()  # worse, and no reward difference known yet: T = 0
    (1, False, [])
    """

    def __init__(self, configs: Any, server_addr: Sequence[Any] | None = None,
                 init_temperature: float | str | None = DEFAULT_INIT_TEMPERATURE,
                 reduce_rate: float = DEFAULT_REDUCE_RATE, search_steps: int = DEFAULT_SEARCH_STEPS,
                 init_tokens: Sequence[int] | None = None,
                 save_checkpoint: str | os.PathLike[str] | None = "nas_checkpoint",
                 load_checkpoint: str | os.PathLike[str] | None = None, is_server: bool = True,
                 storage: str | BaseStorage | None = None, study_name: str = DEFAULT_STUDY_NAME,
                 constraint: Callable[[list[int]], bool] | None = None, max_params: int | float | str | None = None,
                 max_macs: int | float | str | None = None, move: str = DEFAULT_MOVE, fill: float = DEFAULT_FILL,
                 sampler: str | BaseSampler | None = None, seed: int = 0,
                 max_try_times: int = DEFAULT_MAX_TRY_TIMES, heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: float = DEFAULT_GRACE_PERIOD, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        refuse_in_bootstrap("a search (SANAS)")
        if isinstance(search_steps, bool) or not isinstance(search_steps, int) or search_steps < 1:
            raise ValueError(f"search_steps must be a positive integer, got {search_steps!r}")
        if not 0 < heartbeat_interval < grace_period:
            raise ValueError(f"need 0 < heartbeat_interval < grace_period, got {heartbeat_interval}, {grace_period}")
        self.space: SearchSpace = get_space(configs)
        self.search_steps = search_steps
        self.connect_timeout = float(connect_timeout)
        init = self.space.validate(init_tokens) if init_tokens is not None else self.space.init_tokens()
        self.max_params, self.max_macs, budgets = search_budgets(self.space, init, max_params, max_macs)
        self.move, fill = check_move(move), check_fill(fill)
        self.fill = BudgetFill(budgets, self.space.range_table(), fill) if budgets and self.move == "fill" else None
        self.sampler = resolve_sampler(sampler, self.space.range_table(), init_tokens=init,
                                       constraint=within_budgets(budgets, constraint), seed=seed,
                                       max_try_times=max_try_times, init_temperature=init_temperature,
                                       reduce_rate=reduce_rate, fill=self.fill)
        self._server: GrpcServer | None = None
        self._where = (f"{os.fspath(load_checkpoint if load_checkpoint is not None else save_checkpoint)}/"
                       if storage is None and (save_checkpoint is not None or load_checkpoint is not None)
                       and not (server_addr is not None and not is_server) else f"study {study_name!r}")
        self._closed = False  # close() was called (the exit hook then has nothing to do)
        self._finished = False
        self._proposed = 0  # candidates this object handed out
        self._said: set[str] = set()  # one-time notices already printed
        self._last_trial: int | None = None

        run_dir = load_checkpoint if load_checkpoint is not None else save_checkpoint
        if server_addr is not None and is_server:  # refused before the store is made in the run directory
            check_serve_address(server_addr)
        elif server_addr is not None:
            check_server_addr(server_addr)
        if load_checkpoint is not None and not existing_store(load_checkpoint):
            raise FileNotFoundError(f"load_checkpoint {os.fspath(load_checkpoint)!r} holds no sanas store "
                                    f"(expected sanas.journal or sanas.db in it)")
        self.storage, self._client_of = join_storage(storage, run_dir, server_addr, is_server, connect_timeout)
        self.study_name = study_name
        identity = {"fingerprint": self.space.fingerprint(), "space": self.space.config(), "settings": self.settings()}
        try:
            self.study = open_study(self.storage, study_name, self.sampler, identity,
                                    must_exist=load_checkpoint is not None)
        except Exception as e:
            if not self._unavailable(e):
                raise
            host, port = self._client_of  # type: ignore[misc]
            raise StorageUnavailable(f"the sanas server at {host}:{port} stopped answering while this client "
                                     f"joined: its search is over (or it crashed)") from None
        role = "local" if server_addr is None else "server" if is_server else "client"
        self.ledger = Ledger(self.storage, self.study, self.sampler, search_steps,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                             poll_interval=poll_interval, role=role)
        if role == "server":
            self.storage.set_study_system_attr(self.study._study_id, CLOSING_KEY, None)
            self._server = start_server(self.storage, server_addr)  # type: ignore[arg-type]
            # A script that ends without close() (PaddleSlim's tutorial) closes at interpreter exit. The gRPC
            # server answers from a thread pool that concurrent.futures shuts down at exit *before* atexit
            # callbacks run; closing from threading's exit hooks (run in reverse order, so before the pool's)
            # keeps it answering clients while close() waits for their candidates.
            threading._register_atexit(self._at_exit)  # type: ignore[attr-defined]
        atexit.register(self._at_exit)

    # --- set-up -----------------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What a study records at creation and checks on every resume."""
        out = {**self.sampler.settings(), "max_params": self.max_params}
        if self.max_macs is not None:  # absent without one: studies made before MAC budgets resume as they are
            out["max_macs"] = self.max_macs
        return out

    # --- the loop ---------------------------------------------------------------------------------------------
    @property
    def tokens(self) -> list[int] | None:
        """Tokens of the pending candidate (the one :meth:`next_archs` returned), or ``None``."""
        lease = self.ledger.lease
        return None if lease is None else list(lease.tokens)

    @property
    def trial_number(self) -> int | None:
        """Optuna trial number of the pending candidate, or ``None`` (names its logs and metrics files)."""
        lease = self.ledger.lease
        return None if lease is None else lease.number

    def tokens2arch(self, tokens: Sequence[int]) -> nn.Module:
        """The network for ``tokens`` (validated against the space)."""
        return self.space.token2arch(self.space.validate(tokens))

    def next_archs(self) -> list[nn.Module]:
        """The next candidate as ``[network]``, or ``[]`` once the study has ``search_steps`` finished evaluations.

        ``[]`` is also returned when the sampler cannot find a new feasible candidate (logged, and recorded in the
        study so every worker stops), and on a client whose server has finished. Waits while other workers'
        running trials fill the remaining steps. A candidate still pending is recorded as skipped first (see
        :meth:`next_tokens`).
        """
        tokens = self.next_tokens()
        return [] if tokens is None else [self.space.token2arch(tokens)]

    def next_tokens(self) -> list[int] | None:
        """Like :meth:`next_archs`, but the candidate's tokens (``None`` at the end); no network is built.

        For loops that build the network themselves (e.g. on another device or with another builder).

        Called while a candidate is pending — PaddleSlim's tutorial does ``continue`` past an over-budget network
        without calling ``reward()`` — it records that candidate as skipped (status ``"skipped"``: never proposed
        again, not evaluated, not counted in ``search_steps``, not moving the chain), says so once on stderr, and
        proposes the next one. When this object gets no candidate at all because the search was already over, it
        prints one line saying so, with the best tokens.
        """
        if self.ledger.lease is not None:
            self._skip_pending()
        for attempt in range(3):
            try:
                tokens = self._next()
                break
            except Exception as e:
                if not self._unavailable(e):
                    raise
                if attempt < 2 and server_answers(self.storage, min(5.0, self.connect_timeout)):
                    continue  # a blip: the server answers again
                self._finished = True
                host, port = self._client_of or ("?", 0)
                self._say("gone", f"sanas: the sanas server at {host}:{port} has finished (or cannot be reached "
                                  f"any more); this client's search is over")
                return None
        if tokens is not None:
            self._proposed += 1
        elif self._proposed == 0 and "closing" not in self._said:  # a closing server was already said
            self._say_over()
        return tokens

    def _next(self) -> list[int] | None:
        if self._finished:
            return None

        def closing() -> None:
            self._say("closing", "sanas: the sanas server's own search loop is over and it is closing; "
                                 "this client takes no new candidate")

        lease = self.ledger.acquire(lambda trials: self.sampler.propose(self.study, trials), on_closing=closing)
        if lease is None:
            self._finished = True
            log.info("search over: %d finished evaluations", self.ledger.complete)
            return None
        if lease.retry_of is None:
            log.info("trial %d: tokens %s", lease.number, lease.tokens)
        else:
            log.warning("trial %d: tokens %s again: trial %d crashed before its verdict", lease.number, lease.tokens,
                        lease.retry_of)
        return list(lease.tokens)

    def _say(self, key: str, line: str) -> None:
        """Print ``line`` on stderr, once per key and object."""
        if key not in self._said:
            self._said.add(key)
            print(line, file=sys.stderr, flush=True)

    def _say_over(self) -> None:
        chain = self.sampler.chain(self.ledger.last_read)
        what = ("is over: its sampler found no new feasible candidate" if self.ledger.exhausted else
                f"is already finished ({self.ledger.complete} of {self.search_steps} evaluations)")
        best = ("no reward yet" if chain.best_tokens is None else
                f"best tokens {list(chain.best_tokens)} (reward {chain.best_reward:.6g})")
        self._say("over", f"sanas: the search in {self._where} {what}; {best}. To start another, use another "
                          f"save_checkpoint or study_name (or delete {self._where}).")

    def _skip_pending(self, at_exit: bool = False) -> None:
        pending = self.ledger.lease
        assert pending is not None
        why = "the script ended" if at_exit else "next_archs() was called again"
        self._say("skip", f"sanas: {why} while trial {pending.number} (tokens {pending.tokens}) was pending, "
                          f"without reward(): it is recorded as skipped (not evaluated, not counted in "
                          f"search_steps, not moving the chain) and will not be proposed again; later skips are "
                          f"not announced")
        self._close_pending(TrialState.FAIL, None, f"skipped: {why} without reward() (the user's loop skipped the "
                                                   f"candidate, e.g. over its own budget)", status=SKIPPED)
        log.info("trial %d: skipped", pending.number)

    def _at_exit(self) -> None:
        """Interpreter exit of a script that never called :meth:`close` (PaddleSlim's tutorial ends so).

        A candidate still pending after a clean exit was skipped by the script's last ``continue`` and is recorded
        as skipped, as the next ``next_archs()`` would have; after an unhandled exception (``sys.last_value``) it
        is left to the crash rules (failed once its heartbeat stops, proposed again). Then :meth:`close`.
        """
        if self._closed:
            return
        if self.ledger.lease is not None and getattr(sys, "last_value", None) is None:
            try:
                self._skip_pending(at_exit=True)
            except Exception as e:  # a client whose server is gone: nothing to record it in
                log.warning("could not record trial %s as skipped at exit: %s", self._last_trial, e)
        self.close()

    def _unavailable(self, exc: BaseException) -> bool:
        return self._client_of is not None and server_unavailable(exc)

    def _finish_pending(self, what: str) -> Lease:
        if self.ledger.lease is None:
            if self._last_trial is not None:
                raise RuntimeError(f"{what} called twice: trial {self._last_trial} is already finished; "
                                   f"call next_archs() for the next candidate")
            raise RuntimeError(f"{what} called before next_archs(): there is no candidate to report on")
        return self.ledger.lease

    def _close_pending(self, state: TrialState, value: float | None, reason: str | None,
                       status: str | None = None, retry: bool = False) -> None:
        pending = self.ledger.lease
        assert pending is not None
        self._last_trial = pending.number
        try:
            self.ledger.release(state, value, reason, status=status, retry=retry)
        except Exception as e:
            if self._unavailable(e):
                host, port = self._client_of or ("?", 0)
                raise StorageUnavailable(f"the sanas server at {host}:{port} is gone: trial {pending.number} "
                                         f"(tokens {pending.tokens}) could not be recorded") from None
            raise

    def reward(self, score: float, curve: Sequence[Sequence[float]] | None = None, stopped: bool = False) -> bool:
        """Record the pending candidate's reward; return whether the chain accepted it.

        ``score`` must be a finite real number; NaN, inf or non-numbers raise ``ValueError`` and leave the
        candidate pending (report a crashed candidate with :meth:`fail`). ``curve`` (``[epochs, top-1]`` pairs
        of an inherited candidate's checks) is stored on the trial; later candidates' early stops learn their
        margins from it. ``stopped=True`` records an evaluation stopped early, ``score`` being its partial
        reward: it counts as a finished evaluation (toward ``search_steps`` and the temperature's ``k``) but is
        always rejected, never best, and stays out of the auto temperature (:data:`~sanas.search.chain.STOPPED`).
        """
        pending = self._finish_pending("reward()")
        value = _check_score(score)
        if curve is not None:
            self.storage.set_trial_user_attr(pending.trial_id, CURVE_KEY, [[float(a), float(b)] for a, b in curve])
        self._close_pending(TrialState.COMPLETE, value, None, status=STOPPED if stopped else None)
        # The next proposal may start from this read: at most one evaluation old, and the claim re-reads anyway.
        trials = self.ledger.snapshot = self.ledger.last_read = self.study.get_trials(deepcopy=False)
        chain = self.sampler.chain(trials)
        step = next((s for s in reversed(chain.steps) if s.number == pending.number), None)
        accepted = bool(step is not None and step.accepted)
        log.info("trial %d: reward %.6g, %s", pending.number, value, "accepted" if accepted else "rejected")
        return accepted

    def fail(self, reason: str, retry: bool = False) -> None:
        """Record the pending candidate as failed (NaN loss, out of memory, ...): it does not move the chain.

        ``retry=True`` says the failure is no verdict on the candidate (its process crashed, was killed or
        interrupted): the study proposes the same tokens once more, to whichever worker asks next.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"fail() needs a non-empty reason string, got {reason!r}")
        pending = self._finish_pending("fail()")
        self._close_pending(TrialState.FAIL, None, reason, retry=retry)
        log.info("trial %d: failed: %s", pending.number, reason)

    reward_failed = fail

    def acceptance_threshold(self) -> float | None:
        """The smallest reward with which the pending candidate would be accepted if it finished now.

        ``current_reward + T·ln u`` with this candidate's acceptance draw ``u`` and the chain's next temperature
        (see :meth:`~sanas.search.samplers.SimulatedAnnealingSampler.acceptance_threshold`); ``None`` when every
        reward would be accepted (the first evaluation) or the sampler has no acceptance test (the baselines).
        """
        pending = self._finish_pending("acceptance_threshold()")
        trials = self.ledger.last_read = self.study.get_trials(deepcopy=False)
        return self.sampler.acceptance_threshold(trials, self.sampler.acceptance_draw(pending.tokens))

    def current_info(self) -> dict[str, Any]:
        """The chain now: ``best_tokens``, ``best_reward``, ``current_tokens``, ``current_reward``, ``temperature``
        (the next evaluation's) and ``finished`` (evaluations so far). Tokens are ``None`` before any reward,
        except ``current_tokens``, which then is the chain's start (init tokens). On a client whose server is
        gone, the chain as this client last read it."""
        try:
            self.ledger.last_read = self.study.get_trials(deepcopy=False)
        except Exception as e:
            if not self._unavailable(e):
                raise
        chain = self.sampler.chain(self.ledger.last_read)
        t0, rate = self.sampler.chain_params()
        start = self.sampler.init_tokens
        return {
            "best_tokens": None if chain.best_tokens is None else list(chain.best_tokens),
            "best_reward": chain.best_reward,
            "current_tokens": list(chain.current_tokens or start or []) or None,
            "current_reward": chain.current_reward,
            "temperature": chain.next_temperature(t0, rate),
            "finished": chain.k,
        }

    def close(self) -> None:
        """Stop the heartbeat and, on a server, serve until no client holds a candidate, then stop the proxy.

        A server's clients take no new candidate once it closes (they get ``[]``); those evaluating one can still
        report it, so no result is lost. A client whose worker died is failed after ``grace_period``. Ctrl-C
        stops waiting.
        """
        self._closed = True
        if self.ledger.lease is not None:
            self.ledger.lease.stop.set()
        if self._server is not None:
            server, self._server = self._server, None

            def waiting(n: int) -> None:
                self._say("drain", f"sanas: serving until the other workers report their {n} running "
                                   f"candidate(s) (Ctrl-C stops now)")

            try:
                self.ledger.drain(waiting)
            except KeyboardInterrupt:
                log.warning("stopped serving with other workers' candidates still running")
            finally:
                server.stop(grace=1.0)

    def __enter__(self) -> SANAS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _differences(have: Any, want: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, have, want)`` for each setting that differs, named down to the innermost key.

    >>> _differences({"settings": {"max_params": 10, "seed": 0}}, {"settings": {"max_params": 9, "seed": 0}})
    [('settings.max_params', 10, 9)]
    """
    if isinstance(have, dict) and isinstance(want, dict):
        return [d for k in sorted(set(have) | set(want), key=str)
                for d in _differences(have.get(k), want.get(k), f"{where}.{k}" if where else str(k))]
    return [] if have == want else [(where, have, want)]


def open_study(storage: BaseStorage, study_name: str, sampler: BaseSampler, identity: dict[str, Any],
               must_exist: bool = False) -> optuna.Study:
    """Create or load the study ``study_name``, refusing one made by another search (or not by sanas).

    ``identity`` (space fingerprint and config, sampler settings, budget) is recorded at creation under
    :data:`SEARCH_KEY` and compared on every later open.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Optuna's per-trial INFO lines drown our own
    try:
        storage.get_study_id_from_name(study_name)
        exists = True
    except KeyError:
        exists = False
    if must_exist and not exists:
        raise KeyError(f"no study {study_name!r} in the checkpoint to load")
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", sampler=sampler,
                                load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"study {study_name!r} minimizes; a sanas study maximizes the reward")
    # One attribute, written in one call: a worker that loads the study while another creates it sees all of
    # the search's identity or none of it.
    have = study.user_attrs.get(SEARCH_KEY)
    if have is not None:
        diff = [d for k in identity for d in _differences(have.get(k), identity[k], k)]
        if diff:
            detail = "; ".join(f"{k}: study has {mine!r}, this run has {theirs!r}" for k, mine, theirs in diff)
            raise ValueError(f"study {study_name!r} was created with a different search, refusing to "
                             f"resume it ({detail}); use another study_name or checkpoint")
    else:
        if any(TOKENS_KEY in t.user_attrs for t in study.get_trials(deepcopy=False)):
            raise ValueError(f"study {study_name!r} already has trials but was not created by sanas")
        # Two workers creating the study together both get here and write the same value; with different
        # settings the later write wins (start the first worker before the others to rule that out).
        study.set_user_attr(SEARCH_KEY, identity)
    return study
