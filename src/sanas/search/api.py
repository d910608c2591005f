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

Run the same script in several processes (same ``save_checkpoint`` or ``storage`` URL) and they share one
chain. How ``search_steps`` stays exact with many workers: a worker creates a trial only while
``complete + running < search_steps``, and re-counts after creating it; if the others' trials already fill the
budget, its trial is discarded as "surplus" (FAIL, never evaluated, not a proposal). Two workers that claim
the same tokens at the same moment see each other on that re-count and discard theirs as "collision". Dead
workers are found by heartbeat: a trial whose ``sanas:heartbeat`` counter has not moved for ``grace_period``
seconds (on the observer's own clock, so machines' clocks need not agree) is marked FAIL with that reason. On
the dead worker's own machine this takes no waiting: every trial records its worker (``sanas:owner``: host,
PID namespace, pid and the process's start time), and a worker there that finds the process gone fails the
trial at once — so a restarted worker picks up its own dead candidate immediately.

A crash is not a verdict on the architecture: a candidate whose worker died, was killed or was interrupted
(``fail(reason, retry=True)``, or found stale) is marked "crashed" and proposed once more, before any new
candidate, by whichever worker asks next. Crashed trials count neither as proposals nor as evaluations, so the
chain and the later proposals are the same as if the crash had never happened. A second crash of the same
tokens, and every failure reported without ``retry`` (NaN loss, out of memory), is final.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import math
import numbers
import os
import random
import socket
import sys
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

from sanas.search.budget import parse_budget
from sanas.search.chain import (
    CRASHED,
    CURVE_KEY,
    DEFAULT_INIT_TEMPERATURE,
    DEFAULT_REDUCE_RATE,
    FAIL_REASON_KEY,
    RETRY_OF_KEY,
    SKIPPED,
    STATUS_KEY,
    STOPPED,
    TOKENS_KEY,
    U_KEY,
    TrialDelta,
    check_init_temperature,
    check_reduce_rate,
    released,
    trial_tokens,
)
from sanas.search.samplers import (
    DEFAULT_SAMPLER,
    SAMPLERS,
    OptunaTokenSampler,
    SearchExhausted,
    TokenSampler,
    make_sampler,
    token_distributions,
)
from sanas.search.storage import (
    GrpcServer,
    StorageUnavailable,
    connect_server,
    existing_store,
    open_storage,
    start_server,
)
from sanas.spaces import SearchSpace, get_space
from sanas.spaces.base import CellWidthSpace

__all__ = ["CLOSING_KEY", "HEARTBEAT_KEY", "OWNER_KEY", "SAMPLERS", "SANAS", "SEARCH_KEY"]

log = logging.getLogger("sanas.search")

#: Study user attribute: the search's identity (space fingerprint and config, sampler settings, budget).
SEARCH_KEY = "sanas:search"
#: Trial system attribute: a counter the evaluating worker bumps every ``heartbeat_interval`` seconds.
HEARTBEAT_KEY = "sanas:heartbeat"
#: Study system attribute a server sets when its process is closing (``None`` while it serves): its clients
#: then take no new candidate, and it stops serving once none of them holds one.
CLOSING_KEY = "sanas:server_closing"
#: Trial system attribute: the claiming worker as ``{"host", "ns", "pid", "start"}`` (see :func:`_owner`).
OWNER_KEY = "sanas:owner"


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or ``None`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[19]) if len(fields) > 19 else None


def _namespace() -> str | None:
    """This boot's id and PID namespace (Linux): processes with the same value see the same PIDs."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _owner() -> dict[str, Any]:
    """Who claims a trial: enough for a worker in the same PID namespace to tell whether the claimer still lives.

    ``start`` guards against PID reuse; ``ns`` against containers sharing a host name, whose PIDs differ.
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "ns": _namespace(), "pid": pid, "start": _start_time(pid)}


def _owner_gone(owner: Any, here: str | None) -> bool:
    """Whether ``owner`` (a trial's ``OWNER_KEY``) is a process of this PID namespace that no longer runs."""
    if not isinstance(owner, dict) or here is None or owner.get("ns") != here or owner.get("start") is None:
        return False  # another machine or container, or no /proc: only the heartbeat can tell
    return _start_time(int(owner["pid"])) != owner["start"]


@dataclass
class _Pending:
    trial_id: int
    number: int
    tokens: list[int]
    retry_of: int | None = None
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
            The server keeps serving, when its own loop is over, until no client holds a candidate. The port is
            unauthenticated and unencrypted: bind a non-loopback host only on a network you trust.
        init_temperature: ``"auto"`` (default): the scale-free temperature, derived from the reward differences
            the chain has seen (:mod:`sanas.search.chain`), the same for rewards as fractions, percent or negated
            losses. A number is a fixed T0, ``T = T0 · reduce_rate**k``; ``1.0`` is PaddleSlim's, exactly.
        reduce_rate: temperature decay per finished evaluation (0.85).
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
                 reduce_rate: float = DEFAULT_REDUCE_RATE, search_steps: int = 300,
                 init_tokens: Sequence[int] | None = None,
                 save_checkpoint: str | os.PathLike[str] | None = "nas_checkpoint",
                 load_checkpoint: str | os.PathLike[str] | None = None, is_server: bool = True,
                 storage: str | BaseStorage | None = None, study_name: str = "sanas",
                 constraint: Callable[[list[int]], bool] | None = None, max_params: int | float | str | None = None,
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
        self.connect_timeout = float(connect_timeout)
        self.poll_interval = float(poll_interval)
        init = self.space.validate(init_tokens) if init_tokens is not None else self.space.init_tokens()
        self.max_params = self._budget(max_params, init)
        self.sampler = self._make_sampler(sampler, init_temperature, reduce_rate, init, constraint,
                                          self.max_params, seed, max_try_times)
        self._server: GrpcServer | None = None
        self._client_of: tuple[str, int] | None = None
        self._where = (f"{os.fspath(load_checkpoint if load_checkpoint is not None else save_checkpoint)}/"
                       if storage is None and (save_checkpoint is not None or load_checkpoint is not None)
                       and not (server_addr is not None and not is_server) else f"study {study_name!r}")
        self._pending: _Pending | None = None
        self._closed = False  # close() was called (the exit hook then has nothing to do)
        self._finished = False
        self._proposed = 0  # candidates this object handed out
        self._said: set[str] = set()  # one-time notices already printed
        self._last_read: list[FrozenTrial] = []
        self._last_trial: int | None = None
        self._beats: dict[int, tuple[Any, float]] = {}  # trial id -> (last heartbeat seen, when first seen)
        self._snapshot: list[FrozenTrial] | None = None
        self._delta, self._stale_delta = TrialDelta(), TrialDelta()  # each sees every read of the study once
        self._unfinished: list[FrozenTrial] = []
        self._complete = 0
        self._exhausted = False
        self._crashed: dict[int, tuple[int, ...]] = {}  # crashed trials not yet proposed again: number -> tokens
        self._owner = _owner()

        run_dir = load_checkpoint if load_checkpoint is not None else save_checkpoint
        if load_checkpoint is not None and not existing_store(load_checkpoint):
            raise FileNotFoundError(f"load_checkpoint {os.fspath(load_checkpoint)!r} holds no sanas store "
                                    f"(expected sanas.journal or sanas.db in it)")
        if server_addr is not None and not is_server:
            if storage is not None:
                raise ValueError("a client (is_server=False) uses the server's storage; do not pass storage")
            self.storage = connect_server(server_addr, connect_timeout)
            self._client_of = (server_addr[0] or "127.0.0.1", server_addr[1])
        else:
            self.storage = open_storage(storage, run_dir, server=server_addr is not None,
                                        connect_timeout=connect_timeout)
        self.study_name = study_name
        self.study = self._open_study(must_exist=load_checkpoint is not None)
        if server_addr is not None and is_server:
            self.storage.set_study_system_attr(self.study._study_id, CLOSING_KEY, None)
            self._server = start_server(self.storage, server_addr)
            if not _is_loopback(self._server.host):
                print(f"sanas: serving the study on {self._server.host}:{self._server.port}, which is not a loopback "
                      f"address: the port is unauthenticated and unencrypted, and anyone who can reach it can read "
                      f"and change the whole study (every candidate, reward and setting). Serve 127.0.0.1, or "
                      f"only on a network you trust.", file=sys.stderr, flush=True)
            # A script that ends without close() (PaddleSlim's tutorial) closes at interpreter exit. The gRPC
            # server answers from a thread pool that concurrent.futures shuts down at exit *before* atexit
            # callbacks run; closing from threading's exit hooks (run in reverse order, so before the pool's)
            # keeps it answering clients while close() waits for their candidates.
            threading._register_atexit(self._at_exit)  # type: ignore[attr-defined]
        atexit.register(self._at_exit)

    # --- set-up -----------------------------------------------------------------------------------------------
    def _budget(self, max_params: object, init: list[int]) -> int | None:
        budget = parse_budget(max_params, self.space.count_params(init))
        if budget is not None and isinstance(self.space, CellWidthSpace):
            smallest = self.space.count_params([0] * self.space.layers)  # filter_num is ascending
            if budget < smallest:
                raise ValueError(f"max_params is {max_params!r} ({budget:,} parameters), below the smallest network "
                                 f"of {self.space.name} ({smallest:,} parameters, every cell at width "
                                 f"{self.space.filter_num[0]}); budgets count parameters (for millions write "
                                 f"'{max_params}M')")
        return budget

    def _make_sampler(self, sampler: str | BaseSampler | None, init_temperature: float | str | None,
                      reduce_rate: float, init: list[int], constraint: Callable[[list[int]], bool] | None,
                      max_params: int | None, seed: int, max_try_times: int) -> TokenSampler:
        init_temperature = check_init_temperature(DEFAULT_INIT_TEMPERATURE if init_temperature is None
                                                  else init_temperature)
        reduce_rate = check_reduce_rate(reduce_rate)
        if max_params is not None:
            user = constraint

            def constraint(tokens: list[int]) -> bool:
                return self.space.count_params(tokens) <= max_params and (user is None or bool(user(tokens)))

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
        name = DEFAULT_SAMPLER if sampler is None else sampler
        if not isinstance(name, str) or name not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}, a TokenSampler "
                             f"or an Optuna sampler")
        return make_sampler(name, **common, init_temperature=init_temperature, reduce_rate=reduce_rate)

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
        if self._pending is not None:
            self._skip_pending()
        for attempt in range(3):
            try:
                tokens = self._next()
                break
            except Exception as e:
                if not self._unavailable(e):
                    raise
                if attempt < 2 and self._server_back():
                    continue  # a blip: the server answers again
                self._finished = True
                host, port = self._client_of or ("?", 0)
                self._say("gone", f"sanas: the sanas server at {host}:{port} has finished (or cannot be reached "
                                  f"any more); this client's search is over")
                return None
        if tokens is not None:
            self._proposed += 1
        elif self._proposed == 0:
            self._say_over()
        return tokens

    def _next(self) -> list[int] | None:
        while not self._finished:
            trials = self._trials()
            self._snapshot = None
            complete, running = self._tally(trials)
            if complete >= self.search_steps or self._exhausted:
                if self._server is not None and running:
                    # Another worker holds a trial (a claim about to be discarded as surplus, or a dead worker's
                    # that _fail_stale will reap): a server's search ends only once no other candidate is live.
                    time.sleep(self.poll_interval)
                    continue
                self._finished = True
                break
            if self._client_of is not None and self._server_closing():
                self._finished = True
                self._say("closing", "sanas: the sanas server's own search loop is over and it is closing; "
                                     "this client takes no new candidate")
                return None
            if complete + running >= self.search_steps:
                time.sleep(self.poll_interval)
                continue
            retry = self._retry_candidate(trials)
            if retry is not None:
                if self._claim(list(retry[1]), retry_of=retry[0]) is not None:
                    return list(retry[1])
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

    def _say(self, key: str, line: str) -> None:
        """Print ``line`` on stderr, once per key and object."""
        if key not in self._said:
            self._said.add(key)
            print(line, file=sys.stderr, flush=True)

    def _say_over(self) -> None:
        chain = self.sampler.chain(self._last_read)
        what = ("is over: its sampler found no new feasible candidate" if self._exhausted else
                f"is already finished ({self._complete} of {self.search_steps} evaluations)")
        best = ("no reward yet" if chain.best_tokens is None else
                f"best tokens {list(chain.best_tokens)} (reward {chain.best_reward:.6g})")
        self._say("over", f"sanas: the search in {self._where} {what}; {best}. To start another, use another "
                          f"save_checkpoint or study_name (or delete {self._where}).")

    def _skip_pending(self, at_exit: bool = False) -> None:
        pending = self._pending
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
        if self._pending is not None and getattr(sys, "last_value", None) is None:
            try:
                self._skip_pending(at_exit=True)
            except Exception as e:  # a client whose server is gone: nothing to record it in
                log.warning("could not record trial %s as skipped at exit: %s", self._last_trial, e)
        self.close()

    def _unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a client's RPC to a server that is not answering (stopped, or the network)."""
        if self._client_of is None:
            return False
        import grpc

        return isinstance(exc, grpc.RpcError) and exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                                                 grpc.StatusCode.CANCELLED)

    def _server_back(self) -> bool:
        """After an unanswered RPC: wait a little for the server (a network blip), and say if it answers again."""
        try:
            self.storage.wait_server_ready(timeout=min(5.0, self.connect_timeout))  # type: ignore[attr-defined]
        except ConnectionError:
            return False
        return True

    def _server_closing(self) -> bool:
        return bool(self.storage.get_study_system_attrs(self.study._study_id).get(CLOSING_KEY))

    def _trials(self) -> list[FrozenTrial]:
        # reward() has just read the study; proposing from that read saves a round of queries per step. It is at
        # most one evaluation old, and the claim check after creating the trial reads the study again anyway.
        trials = self._snapshot if self._snapshot is not None else self.study.get_trials(deepcopy=False)
        if self._fail_stale(trials):
            trials = self.study.get_trials(deepcopy=False)
        self._last_read = trials
        return trials

    def _tally(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        """``(COMPLETE, RUNNING)`` counts of ``trials``, updated from the trials that changed since last time."""
        newly, self._unfinished = self._delta.look(trials)
        for t in newly:
            if t.state == TrialState.COMPLETE:
                self._complete += 1
            elif t.system_attrs.get(STATUS_KEY) == "exhausted":  # the end marker is a trial: no extra read
                self._exhausted = True
            elif released(t) and (tokens := trial_tokens(t)) is not None:
                self._crashed[t.number] = tokens
        return self._complete, sum(t.state == TrialState.RUNNING for t in self._unfinished)

    def _retry_candidate(self, trials: Sequence[FrozenTrial]) -> tuple[int, tuple[int, ...]] | None:
        """The oldest crashed trial whose tokens nobody holds now, as ``(number, tokens)``: proposed again once."""
        if not self._crashed:
            return None
        claimed = self.sampler.claims.claimed(trials)
        for number in sorted(self._crashed):
            if self._crashed[number] in claimed:  # already proposed again (by any worker)
                del self._crashed[number]
            else:
                return number, self._crashed[number]
        return None

    def _claim(self, tokens: list[int], retry_of: int | None = None) -> _Pending | None:
        system_attrs: dict[str, Any] = {U_KEY: self.sampler.acceptance_draw(tokens), OWNER_KEY: self._owner}
        if retry_of is not None:
            system_attrs[RETRY_OF_KEY] = retry_of
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.now(),
            datetime_complete=None, params={}, distributions={}, user_attrs={TOKENS_KEY: tokens},
            system_attrs=system_attrs, intermediate_values={}, trial_id=0)
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
        pending = _Pending(trial_id, me.number, tokens, retry_of)
        pending.thread = threading.Thread(target=self._heartbeat, args=(pending,), daemon=True,
                                          name=f"sanas-heartbeat-{me.number}")
        pending.thread.start()
        pending.params_thread = threading.Thread(target=self._record_params, args=(pending,), daemon=True,
                                                 name=f"sanas-params-{me.number}")
        pending.params_thread.start()
        self._pending = pending
        if retry_of is None:
            log.info("trial %d: tokens %s", me.number, tokens)
        else:
            log.warning("trial %d: tokens %s again: trial %d crashed before its verdict", me.number, tokens, retry_of)
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
        """Mark crashed the running trials of dead workers: a process of this machine that is gone (at once), or
        a heartbeat that has not moved for ``grace_period`` (our clock)."""
        now = time.monotonic()
        mine = None if self._pending is None else self._pending.trial_id
        failed = False
        running = set()
        _, unfinished = self._stale_delta.look(trials)
        for t in unfinished:
            if t.state != TrialState.RUNNING or t._trial_id == mine:
                continue
            running.add(t._trial_id)
            owner = t.system_attrs.get(OWNER_KEY)
            beat = t.system_attrs.get(HEARTBEAT_KEY)
            seen = self._beats.get(t._trial_id)
            if _owner_gone(owner, self._owner["ns"]):
                reason = f"stale: its worker (pid {owner['pid']} on {owner.get('host')}) is gone (killed or crashed)"
            elif seen is None or seen[0] != beat:
                self._beats[t._trial_id] = (beat, now)
                continue
            elif now - seen[1] >= self.grace_period:
                reason = f"stale: no heartbeat for {self.grace_period:g} s (worker killed or hung)"
            else:
                continue
            try:
                self._mark_failed(t._trial_id, f"{reason}; marked failed by pid {os.getpid()}", crash=True,
                                  retry_of=t.system_attrs.get(RETRY_OF_KEY))
                log.warning("trial %d: %s", t.number, reason)
                failed = True
            except UpdateFinishedTrialError:
                pass  # its worker finished it after all, or another worker failed it first
        self._beats = {k: v for k, v in self._beats.items() if k in running}
        return failed

    def _mark_failed(self, trial_id: int, reason: str, crash: bool, retry_of: int | None) -> None:
        """FAIL a trial. A ``crash`` (no verdict) is marked crashed, so its tokens are proposed once more, unless
        the trial already is that second attempt (``retry_of``). The status is written before the state, so every
        reader that sees the FAIL sees whether it was a crash."""
        if crash and retry_of is None:
            self.storage.set_trial_system_attr(trial_id, STATUS_KEY, CRASHED)
            reason += "; proposed again"
        elif crash:
            reason += f"; not proposed again (already the second attempt, after trial {retry_of})"
        self.storage.set_trial_user_attr(trial_id, FAIL_REASON_KEY, reason)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def _finish_pending(self, what: str) -> _Pending:
        if self._pending is None:
            if self._last_trial is not None:
                raise RuntimeError(f"{what} called twice: trial {self._last_trial} is already finished; "
                                   f"call next_archs() for the next candidate")
            raise RuntimeError(f"{what} called before next_archs(): there is no candidate to report on")
        return self._pending

    def _close_pending(self, state: TrialState, value: float | None, reason: str | None,
                       status: str | None = None, retry: bool = False) -> None:
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
            if status is not None:
                self.storage.set_trial_system_attr(pending.trial_id, STATUS_KEY, status)
            if reason is not None:
                self._mark_failed(pending.trial_id, reason, crash=retry, retry_of=pending.retry_of)
            else:
                self.storage.set_trial_state_values(pending.trial_id, state, None if value is None else [value])
        except Exception as e:
            if self._unavailable(e):
                host, port = self._client_of or ("?", 0)
                raise StorageUnavailable(f"the sanas server at {host}:{port} is gone: trial {pending.number} "
                                         f"(tokens {pending.tokens}) could not be recorded") from None
            if not isinstance(e, UpdateFinishedTrialError):
                raise
            trial = self.storage.get_trial(pending.trial_id)
            raise RuntimeError(f"trial {pending.number} was already finished as {trial.state.name} by another "
                               f"worker ({trial.user_attrs.get(FAIL_REASON_KEY, 'no reason')}); "
                               f"raise heartbeat_interval/grace_period if evaluations stall the process") from e

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
        self._snapshot = self._last_read = self.study.get_trials(deepcopy=False)
        chain = self.sampler.chain(self._snapshot)
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
        trials = self._last_read = self.study.get_trials(deepcopy=False)
        return self.sampler.acceptance_threshold(trials, self.sampler.acceptance_draw(pending.tokens))

    def current_info(self) -> dict[str, Any]:
        """The chain now: ``best_tokens``, ``best_reward``, ``current_tokens``, ``current_reward``, ``temperature``
        (the next evaluation's) and ``finished`` (evaluations so far). Tokens are ``None`` before any reward,
        except ``current_tokens``, which then is the chain's start (init tokens). On a client whose server is
        gone, the chain as this client last read it."""
        try:
            self._last_read = self.study.get_trials(deepcopy=False)
        except Exception as e:
            if not self._unavailable(e):
                raise
        chain = self.sampler.chain(self._last_read)
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
        if self._pending is not None:
            self._pending.stop.set()
        if self._server is not None:
            server, self._server = self._server, None
            try:
                self._drain()
            except KeyboardInterrupt:
                log.warning("stopped serving with other workers' candidates still running")
            finally:
                server.stop(grace=1.0)

    def _drain(self) -> None:
        """Until no other worker has held a candidate for a while: keep serving (clients poll every
        ``poll_interval``, so they read the end before the proxy goes)."""
        self.storage.set_study_system_attr(self.study._study_id, CLOSING_KEY, os.getpid())
        mine = None if self._pending is None else self._pending.trial_id
        linger = 2 * self.poll_interval + 1
        quiet_since = None
        while True:
            trials = self.study.get_trials(deepcopy=False)
            self._fail_stale(trials)
            others = [t for t in trials if t.state == TrialState.RUNNING and t._trial_id != mine]
            now = time.monotonic()
            if others:
                quiet_since = None
                self._say("drain", f"sanas: serving until the other workers report their {len(others)} running "
                                   f"candidate(s) (Ctrl-C stops now)")
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= linger:
                return
            time.sleep(self.poll_interval)

    def __enter__(self) -> SANAS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only ever means this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
