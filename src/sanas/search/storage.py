"""Where a study lives: a run directory, a database URL, or a sanas server reached over gRPC.

Three ways, one Optuna storage interface, so the search code does not care which:

* **Run directory (default).** ``<run_dir>/sanas.journal``, Optuna's journal file store. Chosen over SQLite
  because many worker processes append to it under a file lock and each reads only the log lines it has not
  seen yet (O(new entries) per read), with no database server and none of SQLite's "database is locked" errors
  when several processes upgrade read transactions to writes at once. Heartbeats are ours (a trial attribute,
  see :mod:`sanas.search.api`), so the journal's lack of RDB heartbeats costs nothing. optuna-dashboard reads
  journal files directly.
* **Database URL** (``postgresql://user:pass@host/db``, ``sqlite:////abs/path.db``): Optuna's RDB storage,
  for many machines. Connecting is bounded by ``connect_timeout``; processes opening a new PostgreSQL database
  together create its tables one at a time (advisory lock). ``postgresql://`` means psycopg2 when installed.
* **Server** (``server_addr=(host, port)``): the process with ``is_server=True`` fronts its storage with
  Optuna's gRPC storage proxy; clients (``is_server=False``) talk to it. Optuna's proxy cannot front a journal
  store (optuna#6084), so a server's run directory holds ``sanas.db`` (SQLite, opened by the server process only).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import re
import socket
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "GrpcServer",
    "StorageUnavailable",
    "check_serve_address",
    "check_server_addr",
    "connect_server",
    "existing_store",
    "is_loopback",
    "join_storage",
    "open_storage",
    "ordered_finishes",
    "parse_storage_url",
    "redact",
    "server_answers",
    "server_unavailable",
    "start_server",
]

log = logging.getLogger("sanas.search")

#: Seconds to wait for a database or a sanas server to answer.
DEFAULT_CONNECT_TIMEOUT = 30.0

JOURNAL_FILE = "sanas.journal"
SQLITE_FILE = "sanas.db"


class StorageUnavailable(ConnectionError):
    """The storage (database or sanas server) could not be reached or used; the message says which step failed."""


_SCHEME_PREFIX = re.compile(r"^[^:@/]*:/+")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pwd|pass)=)[^&;#\s]*")
#: PostgreSQL advisory-lock key under which one process at a time creates or checks Optuna's tables.
_SCHEMA_LOCK_KEY = 0x73616E6173  # "sanas"
#: SQLSTATEs of PostgreSQL's start-up failures that are about who connects, not whether the server is there.
_AUTH_SQLSTATES = {"28000", "28P01"}


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages — also when ``url`` is malformed.

    Everything between the first ``:`` of the user part and the last ``@`` is hidden, so a password survives no
    typo in the rest of the URL (a bad port, a missing scheme, a single slash); ``password=`` query values too.

    >>> redact("postgresql://sanas:secret@db:5432/x")
    'postgresql://sanas:***@db:5432/x'
    >>> redact("postgresql+psycopg2://sanas:secret@db:notaport/x"), redact("sanas:secret@db/x")
    ('postgresql+psycopg2://sanas:***@db:notaport/x', 'sanas:***@db/x')
    """
    text = _SECRET_QUERY.sub(r"\1***", str(url))
    at = text.rfind("@")
    if at < 0:
        return text
    prefix = _SCHEME_PREFIX.match(text[:at])
    start = prefix.end() if prefix else 0
    user, colon, _password = text[start:at].partition(":")
    return text[:start] + user + (":***" if colon else "") + text[at:]


def _secrets(url: str) -> list[str]:
    """Every string that may be the password of ``url`` (parsed, percent-decoded, or as typed)."""
    found = set()
    at = url.rfind("@")
    if at >= 0:
        prefix = _SCHEME_PREFIX.match(url[:at])
        found.add(url[prefix.end() if prefix else 0:at].partition(":")[2])
    found.update(m.group(0).split("=", 1)[1] for m in _SECRET_QUERY.finditer(url))
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        found.add(parsed.password or "")
        found.update(str(v) for k, v in parsed.query.items() if k.lower() in ("password", "passwd", "pwd", "pass"))
    except Exception:
        pass
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with anything that may be ``url``'s password replaced by ``***``."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _first_line(e: BaseException, url: str) -> str:
    # SQLAlchemy wraps the driver's error as "(psycopg2.OperationalError) <message>\n[SQL ...]\n(Background ...)".
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip()
    line = text.splitlines()[0].strip() if text else type(e).__name__
    return _scrub(line.removeprefix("FATAL:").strip(), url)


_URL_HELP = "expected e.g. 'postgresql://user:pass@host:5432/db' or 'sqlite:////abs/path/sanas.db'"


def parse_storage_url(url: str) -> Any:
    """Check a database URL without connecting: its form, its scheme, its driver, and an SQLite file's folder.

    Returns the SQLAlchemy URL to connect with: the plain ``postgresql://`` scheme (the README's form) is mapped
    to the installed driver, psycopg2 (``sanas[postgres]``) or else psycopg 3. Raises ``ValueError`` with one line
    that names the URL, password hidden.

    >>> parse_storage_url("postgresql://u:pw@db/x").drivername
    'postgresql+psycopg2'
    >>> try:
    ...     parse_storage_url("mongodb://u:pw@db/x")
    ... except ValueError as e:
    ...     print(str(e).split(";")[0])
    storage 'mongodb://u:***@db/x': unknown database scheme 'mongodb'
    >>> parse_storage_url("sqlite:////no/such/folder/sanas.db")
    Traceback (most recent call last):
    ValueError: storage 'sqlite:////no/such/folder/sanas.db': folder /no/such/folder does not exist (sanas ...)
    """
    import importlib.util

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact(url)
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"storage {shown!r} is not a database URL; {_URL_HELP} (for a local store, pass the run "
                         f"directory instead)")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        detail = _scrub(str(e).splitlines()[0], url) if isinstance(e, ValueError) else "cannot parse it"
        raise ValueError(f"storage {shown!r} is not a database URL ({detail}); {_URL_HELP}") from None
    if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 maps it to psycopg 3; use whichever driver is installed
        driver = next((d for d in ("psycopg2", "psycopg") if importlib.util.find_spec(d) is not None), None)
        if driver is None:
            raise ValueError(f"storage {shown!r}: no PostgreSQL driver is installed; pip install 'sanas[postgres]'")
        parsed = parsed.set(drivername=f"postgresql+{driver}")
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"storage {shown!r}: unknown database scheme {parsed.drivername!r}; {_URL_HELP}") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        hint = " pip install 'sanas[postgres]'" if parsed.get_backend_name() == "postgresql" else ""
        raise ValueError(f"storage {shown!r}: its database driver {parsed.get_driver_name()!r} is not installed "
                         f"({e});{hint or ' install it'}") from None
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_path(parsed.database, shown)
    return parsed


def _check_sqlite_path(database: str | None, shown: str) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = os.path.abspath(database)
    if os.path.isdir(path):
        raise ValueError(f"storage {shown!r}: {path} is a folder; expected a database file in an existing folder")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        blocker = folder
        while blocker != os.path.dirname(blocker) and not os.path.exists(blocker):
            blocker = os.path.dirname(blocker)
        what = (f"{blocker} is a file, not a folder" if os.path.exists(blocker) and not os.path.isdir(blocker)
                else f"folder {folder} does not exist (sanas creates no folders for a storage URL: create it first)")
        raise ValueError(f"storage {shown!r}: {what}")


def _classify_connect_error(e: BaseException, url: str, connect_timeout: float) -> Exception:
    """A one-line error for a failed connection: unreachable, refused credentials, or a missing database."""
    orig = getattr(e, "orig", e)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    line = _first_line(e, url)
    low = line.lower()
    shown = redact(url)
    if "no password supplied" in low:  # the client's own message: the server asked, and the URL has none
        return StorageUnavailable(f"storage {shown!r} asks for a password and the URL gives none: {line} (write "
                                  f"it in the URL, e.g. postgresql://user:PASSWORD@host:5432/db)")
    if code in _AUTH_SQLSTATES or "authentication failed" in low or "no pg_hba.conf entry" in low or (
            "role" in low and "does not exist" in low):
        return StorageUnavailable(f"storage {shown!r} refused the login: {line} (check the user and password "
                                  f"in the URL)")
    if code == "3D000" or ("database" in low and "does not exist" in low):
        return StorageUnavailable(f"storage {shown!r}: {line} (create it first, e.g. createdb)")
    return StorageUnavailable(f"cannot reach storage {shown!r} within {connect_timeout:g} s: {line}")


def _rdb_storage(url: str, connect_timeout: float, create_folder: bool = False) -> BaseStorage:
    """Optuna's RDB storage for ``url``; ``create_folder`` only for sanas' own ``sanas.db`` in a run directory."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    if create_folder:
        database = url.partition(":///")[2]
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    parsed = parse_storage_url(url)
    shown = redact(url)
    backend = parsed.get_backend_name()
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
    elif backend == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": max(1.0, connect_timeout)}
        if parsed.database and parsed.database != ":memory:":
            # WAL lets readers run while one process writes; the mode is stored in the file, so set it once here.
            try:
                with sqlite3.connect(parsed.database, timeout=max(1.0, connect_timeout)) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as e:
                raise ValueError(f"storage {shown!r}: cannot open {parsed.database} as an SQLite database "
                                 f"({_scrub(str(e), url)})") from None
    full = parsed.render_as_string(hide_password=False)
    lock = None
    if backend == "postgresql":
        # Optuna creates its tables (and PostgreSQL types) with CREATE statements that race when several
        # processes open a new database at once (UniqueViolation on pg_type). One process at a time does it,
        # under an advisory lock, which also tells a failed connection apart from a failed schema creation.
        engine = sqlalchemy.create_engine(parsed, poolclass=NullPool, **engine_kwargs)
        try:
            lock = engine.connect()
        except Exception as e:
            engine.dispose()
            raise _classify_connect_error(e, url, connect_timeout) from None
        try:
            lock.execute(sqlalchemy.text(f"SET lock_timeout = '{max(30, round(connect_timeout))}s'"))
            lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        except Exception as e:
            lock.close()
            engine.dispose()
            raise StorageUnavailable(f"storage {shown!r}: timed out waiting for another process to create "
                                     f"Optuna's tables ({_first_line(e, url)})") from None
    try:
        for attempt in range(5):
            try:
                rdb = RDBStorage(full, engine_kwargs=engine_kwargs)
                break
            except Exception as e:
                # Without a lock (SQLite, MySQL), two processes creating the tables together may collide; the
                # loser finds them made on its next try.
                text = str(e).lower()
                if attempt == 4 or lock is not None or not ("already exists" in text or "unique" in text):
                    raise
                time.sleep(0.1 + 0.2 * random.random())
    except Exception as e:
        line = _first_line(e, url)
        if lock is None and isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            raise _classify_connect_error(e, url, connect_timeout) from None
        raise StorageUnavailable(f"storage {shown!r}: cannot create or check Optuna's tables: {line}") from None
    finally:
        if lock is not None:  # closing the session releases its advisory lock
            lock.close()
            lock.engine.dispose()
    # The cached wrapper re-reads only unfinished and new trials, which keeps proposals fast at 1,000s of trials.
    return optuna.storages.get_storage(rdb)


def _journal_storage(path: str) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # The open-lock (O_EXCL lock file) works on network filesystems too. Its grace period frees a lock left by a
    # process killed while appending; appends take milliseconds, so 10 s (not Optuna's 30) is still generous.
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path, grace_period=10)))


def open_storage(storage: str | BaseStorage | None = None, run_dir: str | os.PathLike[str] | None = None,
                 server: bool = False, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> BaseStorage:
    """The storage for a search: ``storage`` if given, else a store inside ``run_dir``, else in memory.

    ``server=True`` picks SQLite for the run directory, because the gRPC proxy cannot front a journal store.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as run_dir:
    ...     before = existing_store(run_dir)
    ...     print(before, type(open_storage(run_dir=run_dir)).__name__, existing_store(run_dir))
    False JournalStorage True
    >>> import os
    >>> with tempfile.TemporaryDirectory() as run_dir:  # a server's store is SQLite, and stays so when searched locally
    ...     _ = open_storage(run_dir=run_dir, server=True), open_storage(run_dir=run_dir)
    ...     print([os.path.exists(os.path.join(run_dir, f)) for f in (SQLITE_FILE, JOURNAL_FILE)])
    [True, False]
    >>> type(open_storage()).__name__
    'InMemoryStorage'
    """
    if isinstance(storage, BaseStorage):
        return storage
    if storage is not None:
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
        return _rdb_storage(f"sqlite:///{os.path.abspath(db)}", connect_timeout, create_folder=True)
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


def check_server_addr(server_addr: Sequence[Any]) -> tuple[str, int]:
    """``(host, port)`` of a server address, checked without connecting (host ``""``/``None`` → 127.0.0.1).

    >>> check_server_addr(("", 8377))
    ('127.0.0.1', 8377)
    """
    return _parse_addr(server_addr, "127.0.0.1")


def check_serve_address(server_addr: Sequence[Any]) -> tuple[str, int]:
    """``(host, port)`` of ``server_addr`` if a server could bind it now; else ``ValueError`` naming the address.

    Checked with a plain socket (bound, then released at once), so a search can refuse a bad ``--server-addr``
    before it writes anything.
    """
    host, port = _parse_addr(server_addr, "127.0.0.1")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            probe.bind(address)
    except OSError as e:  # socket.gaierror too
        raise ValueError(f"cannot serve the study on {host}:{port}: {e.strerror or e}") from None
    return host, port


@dataclass
class GrpcServer:
    """A running gRPC storage proxy; :meth:`stop` it when the search is over."""

    server: Any
    host: str
    port: int

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; calls in flight get ``grace`` seconds to finish."""
        self.server.stop(grace).wait()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only ever means this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def ordered_finishes(storage: BaseStorage) -> BaseStorage:
    """Make ``storage`` store finished trials in the order of their completion times, within this process.

    Optuna stamps ``datetime_complete`` before it takes its lock (journal) or commits (RDB), so two threads finishing
    at once — a server's gRPC threads and its own loop — can store the later stamp first. The chain orders results by
    that stamp, so a reader between the two writes (the ``reward()`` of the later-stamped one) judged a chain that
    the other result then enters *before* it, and the verdict it returned could differ from every replay. One lock
    around the stamp and the write makes the stored order the stamp order for every writer that goes through this
    process (a server and all its clients); separate processes writing to one database keep the documented caveat.
    Patches the instance (idempotent) and returns it.
    """
    if getattr(storage, "_sanas_ordered", False):
        return storage
    lock = threading.Lock()
    finish = storage.set_trial_state_values

    def set_trial_state_values(trial_id: int, state: Any, values: Sequence[float] | None = None) -> bool:
        with lock:
            return finish(trial_id, state, values)

    storage.set_trial_state_values = set_trial_state_values  # type: ignore[method-assign]
    storage._sanas_ordered = True  # type: ignore[attr-defined]
    return storage


def start_server(storage: BaseStorage, server_addr: Sequence[Any]) -> GrpcServer:
    """Serve ``storage`` through Optuna's gRPC storage proxy at ``server_addr`` (host defaults to 127.0.0.1).

    Raises ``OSError`` when the port cannot be bound (e.g. another server holds it).
    """
    import grpc

    # Optuna's own run_grpc_proxy_server blocks forever and hides bind failures; these are the same parts.
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    host, port = _parse_addr(server_addr, "127.0.0.1")
    storage = ordered_finishes(storage)  # its gRPC threads and the server's own loop finish trials at once
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
    if not is_loopback(host):
        print(f"sanas: serving the study on {host}:{port}, which is not a loopback address: the port is "
              f"unauthenticated and unencrypted, and anyone who can reach it can read and change the whole study "
              f"(every candidate, reward and setting). Serve 127.0.0.1, or only on a network you trust.",
              file=sys.stderr, flush=True)
    return GrpcServer(server, host, port)


def connect_server(server_addr: Sequence[Any], connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> BaseStorage:
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


def join_storage(storage: str | BaseStorage | None, run_dir: str | os.PathLike[str] | None,
                 server_addr: Sequence[Any] | None, is_server: bool,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> tuple[BaseStorage, tuple[str, int] | None]:
    """The storage one process of a search works on, and the ``(host, port)`` of the server it is a client of
    (``None`` for a local store or a server's own): a client (``server_addr`` with ``is_server=False``) talks to
    the server; everyone else opens ``storage`` or ``run_dir``'s store (a server's, serialised for serving)."""
    if server_addr is not None and not is_server:
        if storage is not None:
            raise ValueError("a client (is_server=False) uses the server's storage; do not pass storage")
        return connect_server(server_addr, connect_timeout), _parse_addr(server_addr, "127.0.0.1")
    return open_storage(storage, run_dir, server=server_addr is not None, connect_timeout=connect_timeout), None


def server_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is a client's RPC to a sanas server that is not answering (stopped, or the network)."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def server_answers(proxy: BaseStorage, timeout: float) -> bool:
    """After an unanswered RPC: wait up to ``timeout`` seconds for the server (a network blip); whether it answers."""
    try:
        proxy.wait_server_ready(timeout=timeout)  # type: ignore[attr-defined]
    except ConnectionError:
        return False
    return True
