"""Claims, leases and heartbeats: how any number of workers share one study without losing or repeating work.

A worker *claims* a candidate by creating a RUNNING trial that carries the tokens (and the candidate's acceptance
draw) in one write, then re-reads the study: if the others' trials already fill ``search_steps`` its trial is
voided as ``"surplus"``, if another worker claimed the same tokens at the same moment as ``"collision"`` — so
``search_steps`` stays exact and no candidate is evaluated twice. While the worker evaluates, a thread bumps the
trial's heartbeat counter (:data:`HEARTBEAT_KEY`); a trial whose counter has not moved for ``grace_period``
seconds on the observer's own clock (machines' clocks need not agree), or whose worker is a process of this
machine that is gone (:data:`OWNER_KEY`, :func:`owner_gone`), is failed as *crashed* and its tokens are proposed
once more, before any new candidate. The :class:`Ledger` does all of this for one worker;
:class:`~sanas.search.api.SANAS` only decides what to propose and what a reward means.

>>> import optuna
>>> from sanas.search.samplers import make_sampler
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> sampler = make_sampler("random", [4, 4], init_tokens=[0, 0])
>>> study = optuna.create_study(direction="maximize", sampler=sampler)
>>> ledger = Ledger(study._storage, study, sampler, search_steps=2)
>>> lease = ledger.claim([1, 2])
>>> lease.number, lease.tokens, ledger.tally(ledger.read())
(0, [1, 2], (0, 1))
>>> ledger.claim([1, 2]) is None   # another claim of the same tokens while the first runs: a collision
True
>>> ledger.release(optuna.trial.TrialState.COMPLETE, 0.5).number, ledger.tally(ledger.read())
(0, (1, 0))
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sanas.search.chain import (
    CRASHED,
    FAIL_REASON_KEY,
    RETRY_OF_KEY,
    STATUS_KEY,
    TOKENS_KEY,
    U_KEY,
    TrialDelta,
    released,
    trial_tokens,
)
from sanas.search.samplers import SearchExhausted, TokenSampler, token_distributions

__all__ = ["CLOSING_KEY", "HEARTBEAT_KEY", "OWNER_KEY", "Lease", "Ledger", "owner_gone", "owner_identity"]

log = logging.getLogger("sanas.search")

#: Trial system attribute: a counter the evaluating worker bumps every ``heartbeat_interval`` seconds.
HEARTBEAT_KEY = "sanas:heartbeat"
#: Study system attribute a server sets when its process is closing (``None`` while it serves): its clients
#: then take no new candidate, and it stops serving once none of them holds one.
CLOSING_KEY = "sanas:server_closing"
#: Trial system attribute: the claiming worker as ``{"host", "ns", "pid", "start"}`` (see :func:`owner_identity`).
OWNER_KEY = "sanas:owner"
#: Seconds between heartbeats of a held candidate, and of silence after which another worker fails it.
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_GRACE_PERIOD = 60.0
#: Seconds between reads of the study while other workers' trials fill the remaining steps.
DEFAULT_POLL_INTERVAL = 0.5
#: Trial system attribute of the marker trial that tells every worker the sampler found nothing new.
EXHAUSTED = "exhausted"


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


def owner_identity() -> dict[str, Any]:
    """Who claims a trial: enough for a worker in the same PID namespace to tell whether the claimer still lives.

    ``start`` guards against PID reuse; ``ns`` against containers sharing a host name, whose PIDs differ.

    >>> me = owner_identity(); me["pid"] == os.getpid() and not owner_gone(me, me["ns"])
    True
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "ns": _namespace(), "pid": pid, "start": _start_time(pid)}


def owner_gone(owner: Any, here: str | None) -> bool:
    """Whether ``owner`` (a trial's :data:`OWNER_KEY`) is a process of this PID namespace that no longer runs."""
    if not isinstance(owner, dict) or here is None or owner.get("ns") != here or owner.get("start") is None:
        return False  # another machine or container, or no /proc: only the heartbeat can tell
    return _start_time(int(owner["pid"])) != owner["start"]


@dataclass
class Lease:
    """The candidate a worker holds: its trial, tokens, and the threads that keep the claim alive."""

    trial_id: int
    number: int
    tokens: list[int]
    retry_of: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    params_thread: threading.Thread | None = None
    params_error: Exception | None = None


class Ledger:
    """One worker's bookkeeping on a shared study: claims, its lease and heartbeat, reaping dead workers' trials.

    ``role`` is ``"local"`` (the study is in a file or database), ``"server"`` (this process serves it: its search
    ends only once no other worker holds a candidate) or ``"client"`` (of a server: it takes no new candidate once
    the server closes). Reads of the study go through :meth:`read`, which also fails the trials of dead workers.
    """

    def __init__(self, storage: BaseStorage, study: optuna.Study, sampler: TokenSampler, search_steps: int, *,
                 heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: float = DEFAULT_GRACE_PERIOD, poll_interval: float = DEFAULT_POLL_INTERVAL,
                 role: str = "local") -> None:
        self.storage, self.study, self.sampler = storage, study, sampler
        self.search_steps = search_steps
        self.heartbeat_interval, self.grace_period = float(heartbeat_interval), float(grace_period)
        self.poll_interval = float(poll_interval)
        self.role = role
        self.lease: Lease | None = None
        self.owner = owner_identity()
        self.snapshot: list[FrozenTrial] | None = None  # a read of the study the next proposal may reuse
        self.last_read: list[FrozenTrial] = []
        self.exhausted = False  # the sampler found nothing new (on any worker)
        self._complete = 0
        self._unfinished: list[FrozenTrial] = []
        self._delta, self._stale_delta = TrialDelta(), TrialDelta()  # each sees every read of the study once
        self._beats: dict[int, tuple[Any, float]] = {}  # trial id -> (last heartbeat seen, when first seen)
        self._crashed: dict[int, tuple[int, ...]] = {}  # crashed trials not yet proposed again: number -> tokens

    # --- reading the study ------------------------------------------------------------------------------------
    def read(self) -> list[FrozenTrial]:
        """The study's trials (the last :attr:`snapshot` if one is set), after failing dead workers' trials."""
        trials = self.snapshot if self.snapshot is not None else self.study.get_trials(deepcopy=False)
        self.snapshot = None
        if self.fail_stale(trials):
            trials = self.study.get_trials(deepcopy=False)
        self.last_read = trials
        return trials

    def tally(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        """``(COMPLETE, RUNNING)`` counts of ``trials``, updated from the trials that changed since last time."""
        newly, self._unfinished = self._delta.look(trials)
        for t in newly:
            if t.state == TrialState.COMPLETE:
                self._complete += 1
            elif t.system_attrs.get(STATUS_KEY) == EXHAUSTED:  # the end marker is a trial: no extra read
                self.exhausted = True
            elif released(t) and (tokens := trial_tokens(t)) is not None:
                self._crashed[t.number] = tokens
        return self._complete, sum(t.state == TrialState.RUNNING for t in self._unfinished)

    @property
    def complete(self) -> int:
        """Finished evaluations counted at the last :meth:`tally`."""
        return self._complete

    def server_closing(self) -> bool:
        """Whether the server of this study is closing (see :data:`CLOSING_KEY`)."""
        return bool(self.storage.get_study_system_attrs(self.study._study_id).get(CLOSING_KEY))

    # --- claiming ---------------------------------------------------------------------------------------------
    def acquire(self, propose: Callable[[list[FrozenTrial]], list[int]],
                on_closing: Callable[[], None] | None = None) -> Lease | None:
        """Claim the next candidate: a crashed trial's tokens first, else ``propose(trials)``; ``None`` at the end.

        The end: ``search_steps`` finished evaluations, the sampler exhausted (recorded in the study so every worker
        stops), or — on a client — the server closing (``on_closing`` is called). Waits while other workers' running
        trials fill the remaining steps.
        """
        while True:
            trials = self.read()
            complete, running = self.tally(trials)
            if complete >= self.search_steps or self.exhausted:
                if self.role == "server" and running:
                    # Another worker holds a trial (a claim about to be discarded as surplus, or a dead worker's
                    # that fail_stale will reap): a server's search ends only once no other candidate is live.
                    time.sleep(self.poll_interval)
                    continue
                return None
            if self.role == "client" and self.server_closing():
                if on_closing is not None:
                    on_closing()
                return None
            if complete + running >= self.search_steps:
                time.sleep(self.poll_interval)
                continue
            retry = self._retry_candidate(trials)
            if retry is not None:
                lease = self.claim(list(retry[1]), retry_of=retry[0])
                if lease is not None:
                    return lease
                continue
            try:
                tokens = propose(trials)
            except SearchExhausted as e:
                if running:  # others' results may move the chain somewhere with unseen neighbours
                    time.sleep(self.poll_interval)
                    continue
                log.warning("%s", e)
                self.mark_exhausted(str(e))
                return None
            lease = self.claim(tokens)
            if lease is not None:
                return lease

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

    def claim(self, tokens: list[int], retry_of: int | None = None) -> Lease | None:
        """Create the trial of ``tokens`` and keep it if it is neither surplus nor a collision; start its heartbeat.

        Returns the :class:`Lease` (also :attr:`lease`), or ``None`` when the claim was voided.
        """
        system_attrs: dict[str, Any] = {U_KEY: self.sampler.acceptance_draw(tokens), OWNER_KEY: self.owner}
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
        complete, running = self.tally(trials)
        me = next(t for t in self._unfinished if t._trial_id == trial_id)
        running -= 1  # me
        if complete + running >= self.search_steps:
            self.void(trial_id, "surplus", "other workers' trials already fill search_steps")
            time.sleep(random.uniform(0, self.poll_interval))  # desynchronise workers that raced here together
            return None
        if tuple(tokens) in self.sampler.claims.claimed(trials, exclude=me.number):
            self.void(trial_id, "collision", "another worker claimed the same tokens at the same moment")
            time.sleep(random.uniform(0, self.poll_interval / 4))
            return None
        lease = Lease(trial_id, me.number, tokens, retry_of)
        lease.thread = threading.Thread(target=self._heartbeat, args=(lease,), daemon=True,
                                        name=f"sanas-heartbeat-{me.number}")
        lease.thread.start()
        lease.params_thread = threading.Thread(target=self._record_params, args=(lease,), daemon=True,
                                               name=f"sanas-params-{me.number}")
        lease.params_thread.start()
        self.lease = lease
        return lease

    def _record_params(self, lease: Lease) -> None:
        """Store the tokens as Optuna parameters ``t0..t{n-1}`` while the candidate is evaluated.

        They are what optuna-dashboard plots and what a wrapped Optuna sampler learns from; claims and dedup use
        the ``tokens`` attribute, so nothing waits for this. :meth:`release` joins it before finishing the trial.
        """
        try:
            for i, (name, dist) in enumerate(token_distributions(self.sampler.range_table).items()):
                self.storage.set_trial_param(lease.trial_id, name, float(lease.tokens[i]), dist)
        except Exception as e:  # reported by release(), which runs in the caller's thread
            lease.params_error = e

    def _heartbeat(self, lease: Lease) -> None:
        beat = 0
        while not lease.stop.wait(self.heartbeat_interval):
            beat += 1
            try:
                self.storage.set_trial_system_attr(lease.trial_id, HEARTBEAT_KEY, beat)
            except UpdateFinishedTrialError:
                return  # finished (or failed as stale by another worker); release() reports it
            except Exception as e:  # a storage hiccup must not kill the thread: the next beat retries
                log.warning("heartbeat of trial %d failed: %s", lease.number, e)

    # --- finishing trials -------------------------------------------------------------------------------------
    def release(self, state: TrialState, value: float | None = None, reason: str | None = None,
                status: str | None = None, retry: bool = False) -> Lease:
        """Finish the held trial: ``state`` with ``value``, or failed with ``reason`` (a crash when ``retry``).

        Stops the heartbeat first. Raises ``RuntimeError`` when another worker already finished the trial (e.g.
        failed it as stale), and the storage's own error when the write fails; the lease is dropped either way.
        """
        lease = self.lease
        assert lease is not None, "release() without a lease"
        if lease.params_thread is not None:
            lease.params_thread.join()
        lease.stop.set()
        if lease.thread is not None:
            lease.thread.join()
        self.lease = None
        if lease.params_error is not None and not isinstance(lease.params_error, UpdateFinishedTrialError):
            log.warning("trial %d: could not store its parameters: %s",
                                                              lease.number, lease.params_error)
        try:
            if status is not None:
                self.storage.set_trial_system_attr(lease.trial_id, STATUS_KEY, status)
            if reason is not None:
                self.mark_failed(lease.trial_id, reason, crash=retry, retry_of=lease.retry_of)
            else:
                self.storage.set_trial_state_values(lease.trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError as e:
            trial = self.storage.get_trial(lease.trial_id)
            raise RuntimeError(f"trial {lease.number} was already finished as {trial.state.name} by another "
                               f"worker ({trial.user_attrs.get(FAIL_REASON_KEY, 'no reason')}); "
                               f"raise heartbeat_interval/grace_period if evaluations stall the process") from e
        return lease

    def void(self, trial_id: int, status: str, reason: str) -> None:
        """Fail a claim that is no proposal (``"surplus"``, ``"collision"``)."""
        self.storage.set_trial_system_attr(trial_id, STATUS_KEY, status)
        self.storage.set_trial_user_attr(trial_id, FAIL_REASON_KEY, f"{status}: {reason}")
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def mark_failed(self, trial_id: int, reason: str, crash: bool, retry_of: int | None) -> None:
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

    def mark_exhausted(self, reason: str) -> None:
        """Record in the study, as a FAIL marker trial, that the sampler found no new feasible candidate."""
        now = datetime.now()
        marker = FrozenTrial(
            number=0, state=TrialState.FAIL, value=None, values=None, datetime_start=now, datetime_complete=now,
            params={}, distributions={}, user_attrs={FAIL_REASON_KEY: f"{EXHAUSTED}: {reason}"},
            system_attrs={STATUS_KEY: EXHAUSTED}, intermediate_values={}, trial_id=0)
        self.storage.create_new_trial(self.study._study_id, template_trial=marker)
        self.exhausted = True

    def fail_stale(self, trials: Sequence[FrozenTrial]) -> bool:
        """Mark crashed the running trials of dead workers: a process of this machine that is gone (at once), or
        a heartbeat that has not moved for ``grace_period`` (our clock). Returns whether it failed any."""
        now = time.monotonic()
        mine = None if self.lease is None else self.lease.trial_id
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
            if owner_gone(owner, self.owner["ns"]):
                reason = f"stale: its worker (pid {owner['pid']} on {owner.get('host')}) is gone (killed or crashed)"
            elif seen is None or seen[0] != beat:
                self._beats[t._trial_id] = (beat, now)
                continue
            elif now - seen[1] >= self.grace_period:
                reason = f"stale: no heartbeat for {self.grace_period:g} s (worker killed or hung)"
            else:
                continue
            try:
                self.mark_failed(t._trial_id, f"{reason}; marked failed by pid {os.getpid()}", crash=True,
                                 retry_of=t.system_attrs.get(RETRY_OF_KEY))
                log.warning("trial %d: %s", t.number, reason)
                failed = True
            except UpdateFinishedTrialError:
                pass  # its worker finished it after all, or another worker failed it first
        self._beats = {k: v for k, v in self._beats.items() if k in running}
        return failed

    # --- a server's end ---------------------------------------------------------------------------------------
    def drain(self, on_wait: Callable[[int], None] | None = None) -> None:
        """Tell clients the server closes, then wait until no other worker has held a candidate for a while
        (clients poll every ``poll_interval``, so they read the end before the server goes). ``on_wait(n)`` is
        called while ``n`` other candidates run."""
        self.storage.set_study_system_attr(self.study._study_id, CLOSING_KEY, os.getpid())
        mine = None if self.lease is None else self.lease.trial_id
        linger = 2 * self.poll_interval + 1
        quiet_since = None
        while True:
            trials = self.study.get_trials(deepcopy=False)
            self.fail_stale(trials)
            others = [t for t in trials if t.state == TrialState.RUNNING and t._trial_id != mine]
            now = time.monotonic()
            if others:
                quiet_since = None
                if on_wait is not None:
                    on_wait(len(others))
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= linger:
                return
            time.sleep(self.poll_interval)
