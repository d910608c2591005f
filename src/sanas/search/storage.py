"""Where a study lives: a run directory, a database URL, or a sanas server reached over gRPC.

Three ways, one Optuna storage interface, so the search code does not care which:

* **Run directory (default).** ``<run_dir>/sanas.journal``, Optuna's journal file store. Chosen over SQLite
  because many worker processes append to it under a file lock and each reads only the log lines it has not
  seen yet (O(new entries) per read), with no database server and none of SQLite's "database is locked" errors
  when several processes upgrade read transactions to writes at once. Heartbeats are ours (a trial attribute,
  see :mod:`sanas.search.api`), so the journal's lack of RDB heartbeats costs nothing. optuna-dashboard reads
  journal files directly.
* **Database URL** (``postgresql+psycopg2://user:pass@host/db``, ``sqlite:///path.db``): Optuna's RDB storage,
  for many machines. Connecting is bounded by ``connect_timeout``.
* **Server** (``server_addr=(host, port)``): the process with ``is_server=True`` fronts its storage with
  Optuna's gRPC storage proxy; clients (``is_server=False``) talk to it. Optuna's proxy cannot front a journal
  store (optuna#6084), so a server's run directory holds ``sanas.db`` (SQLite, opened by the server process only).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage

__all__ = ["GrpcServer", "StorageUnavailable", "connect_server", "existing_store", "open_storage", "redact",
           "start_server"]

log = logging.getLogger("sanas.search")

JOURNAL_FILE = "sanas.journal"
SQLITE_FILE = "sanas.db"


class StorageUnavailable(ConnectionError):
    """The storage (database or sanas server) could not be reached within the allowed time."""


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for error messages.

    >>> redact("postgresql://sanas:secret@db:5432/x")
    'postgresql://sanas:***@db:5432/x'
    """
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _rdb_storage(url: str, connect_timeout: float) -> BaseStorage:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ValueError(f"storage {url!r} is not a database URL; expected e.g. "
                         f"'postgresql+psycopg2://user:pass@host:5432/db' or 'sqlite:///run/sanas.db'") from e
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
    elif parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": max(1.0, connect_timeout)}
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
            # WAL lets readers run while one process writes; the mode is stored in the file, so set it once here.
            with sqlite3.connect(parsed.database, timeout=max(1.0, connect_timeout)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
    try:
        rdb = RDBStorage(url, engine_kwargs=engine_kwargs)
    except (ImportError, NoSuchModuleError, ArgumentError) as e:
        raise ValueError(f"storage {redact(url)!r}: no database driver for it ({e})") from e
    except Exception as e:  # OperationalError from the driver, or Optuna's StorageInternalError around it
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageUnavailable(f"cannot reach storage {redact(url)!r} within {connect_timeout:g} s: {first}") from e
    # The cached wrapper re-reads only unfinished and new trials, which keeps proposals fast at 1,000s of trials.
    return optuna.storages.get_storage(rdb)


def _journal_storage(path: str) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # The open-lock (O_EXCL lock file) works on network filesystems too. Its grace period frees a lock left by a
    # process killed while appending; appends take milliseconds, so 10 s (not Optuna's 30) is still generous.
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path, grace_period=10)))


def open_storage(storage: str | BaseStorage | None = None, run_dir: str | os.PathLike[str] | None = None,
                 server: bool = False, connect_timeout: float = 30.0) -> BaseStorage:
    """The storage for a search: ``storage`` if given, else a store inside ``run_dir``, else in memory.

    ``server=True`` picks SQLite for the run directory, because the gRPC proxy cannot front a journal store.

    >>> import tempfile
    >>> type(open_storage(run_dir=tempfile.mkdtemp())).__name__
    'JournalStorage'
    """
    if isinstance(storage, BaseStorage):
        return storage
    if storage is not None:
        if not isinstance(storage, str) or "://" not in storage:
            raise ValueError(f"storage {storage!r} is not a database URL; expected e.g. "
                             f"'postgresql+psycopg2://user:pass@host:5432/db' or 'sqlite:///run/sanas.db' "
                             f"(for a local store, pass save_checkpoint=<run directory> instead)")
        return _rdb_storage(storage, connect_timeout)
    if run_dir is None:
        return InMemoryStorage()
    run_dir = os.fspath(run_dir)
    journal, db = os.path.join(run_dir, JOURNAL_FILE), os.path.join(run_dir, SQLITE_FILE)
    if server and os.path.exists(journal) and not os.path.exists(db):
        raise ValueError(f"run directory {run_dir!r} holds a journal store ({JOURNAL_FILE}), which the gRPC server "
                         f"cannot serve (optuna#6084); search it without server_addr, or serve a new directory")
    if server or (os.path.exists(db) and not os.path.exists(journal)):
        # A directory first searched through a server stays SQLite when searched locally later.
        return _rdb_storage(f"sqlite:///{os.path.abspath(db)}", connect_timeout)
    return _journal_storage(journal)


def existing_store(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds a sanas store (journal or SQLite)."""
    return any(os.path.exists(os.path.join(run_dir, f)) for f in (JOURNAL_FILE, SQLITE_FILE))


def _parse_addr(server_addr: Sequence[Any], default_host: str) -> tuple[str, int]:
    if isinstance(server_addr, str) or not isinstance(server_addr, Sequence) or len(server_addr) != 2:
        raise ValueError(f"server_addr must be a (host, port) pair, got {server_addr!r}")
    host, port = server_addr
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"server_addr port must be an integer in [1, 65535], got {port!r}")
    return (host or default_host), port


@dataclass
class GrpcServer:
    """A running gRPC storage proxy; :meth:`stop` it when the search is over."""

    server: Any
    host: str
    port: int

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; calls in flight get ``grace`` seconds to finish."""
        self.server.stop(grace).wait()


def start_server(storage: BaseStorage, server_addr: Sequence[Any]) -> GrpcServer:
    """Serve ``storage`` through Optuna's gRPC storage proxy at ``server_addr`` (host defaults to 127.0.0.1).

    Raises ``OSError`` when the port cannot be bound (e.g. another server holds it).
    """
    import grpc

    # Optuna's own run_grpc_proxy_server blocks forever and hides bind failures; these are the same parts.
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    host, port = _parse_addr(server_addr, "127.0.0.1")
    # Without so_reuseport=0, a second server on the same port would silently share it with the first.
    server = grpc.server(ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)])
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:
        raise OSError(f"cannot serve the study on {host}:{port}: {e}") from e
    if bound == 0:
        raise OSError(f"cannot serve the study on {host}:{port}: the address is in use or not local")
    server.start()
    log.info("serving the study on %s:%d", host, port)
    return GrpcServer(server, host, port)


def connect_server(server_addr: Sequence[Any], connect_timeout: float = 30.0) -> BaseStorage:
    """A client storage talking to the sanas server at ``server_addr``; fails after ``connect_timeout`` seconds."""
    from optuna.storages import GrpcStorageProxy

    host, port = _parse_addr(server_addr, "127.0.0.1")
    with warnings.catch_warnings():  # "experimental" since Optuna 4.2; we pin its behaviour with our tests
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=connect_timeout)
    except ConnectionError as e:
        proxy.close()
        raise StorageUnavailable(f"no sanas server answered at {host}:{port} within {connect_timeout:g} s "
                                 f"(start one with is_server=True, or check server_addr)") from e
    return proxy
