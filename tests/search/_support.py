"""Helpers of the search tests: a tiny exhaustible space, fresh PostgreSQL databases, free ports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import Any

from torch import nn

from sanas.spaces import SearchSpace

#: The test server and role (``scripts/ensure_postgres.sh`` sets them up; the role needs CREATEDB). Its database
#: part is not used: every test session works in databases of its own, created empty (see create_database).
POSTGRES_URL = os.environ.get("SANAS_TEST_POSTGRES_URL",
                              "postgresql+psycopg2://sanas:sanas@127.0.0.1:5432/sanas_test")
_TEST_DB = re.compile(r"^sanas_test_p(\d+)_[0-9a-f]{8}$")


def _admin(base_url: str) -> Any:
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = make_url(base_url).set(database="postgres")
    return sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool,
                                    connect_args={"connect_timeout": 5})


def create_database(base_url: str = POSTGRES_URL) -> str:
    """A new, empty database on the test server (named after this process, so leftovers can be found); its URL.

    Every test session (and the start-up race test, every repetition) walks the first-day path: Optuna's
    tables do not exist yet. Parallel sessions never share a database.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = f"sanas_test_p{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = _admin(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


#: How long :func:`drop_database` waits for connections it may not close (an autovacuum worker, a superuser's).
DROP_PATIENCE_S = 60.0


def drop_database(url: str, patience_s: float = DROP_PATIENCE_S) -> None:
    """Drop a database made by :func:`create_database`, closing whatever still connects to it.

    ``WITH (FORCE)`` terminates the test role's own connections, but not a backend the role may not signal: an
    autovacuum worker that the server started on the new database (the role is not in ``pg_signal_backend``), or a
    superuser's session. Those end by themselves, so the drop is retried until ``patience_s`` has passed.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    assert name and _TEST_DB.match(name), name
    deadline = time.monotonic() + patience_s
    while True:
        engine = _admin(url)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as e:
            # InsufficientPrivilege (42501, a backend we may not terminate) or ObjectInUse (55006): wait and retry
            if getattr(e.orig, "pgcode", None) not in ("42501", "55006") or time.monotonic() > deadline:
                raise
        finally:
            engine.dispose()
        time.sleep(0.2)


def drop_abandoned_databases(base_url: str = POSTGRES_URL) -> list[str]:
    """Drop the test databases of sessions that died without cleaning up (their process is gone).

    Only for a server on this machine: a process id says nothing about another host's sessions.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    if make_url(base_url).host not in ("127.0.0.1", "localhost", "::1"):
        return []
    engine = _admin(base_url)
    try:
        with engine.connect() as conn:
            names = [r[0] for r in conn.execute(sqlalchemy.text("SELECT datname FROM pg_database"))]
    finally:
        engine.dispose()
    dropped = []
    for name in names:
        match = _TEST_DB.match(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its session still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        drop_database(make_url(base_url).set(database=name).render_as_string(hide_password=False))
        dropped.append(name)
    return dropped


class TinySpace(SearchSpace):
    """``n`` positions of ``r`` values each; params = sum of tokens. Small enough to exhaust."""

    name = "TinySpace"

    def __init__(self, n: int = 2, r: int = 2) -> None:
        self.n, self.r = n, r

    def init_tokens(self) -> list[int]:
        return [0] * self.n

    def range_table(self) -> list[int]:
        return [self.r] * self.n

    def token2arch(self, tokens: Sequence[int]) -> nn.Module:
        return nn.Linear(1 + sum(tokens), 1)

    def count_params(self, tokens: Sequence[int]) -> int:
        return sum(tokens)

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return sum(tokens)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "r": self.r}



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until something listens on 127.0.0.1:``port``, as long as ``proc`` (the server) lives.

    Clients are started once their server serves, as a user would: a client gives up after its ``connect_timeout``
    (30 s), and a loaded 2-core CI machine can take that long just to import torch in the server process.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"no server came up on port {port} (server exit status {proc.poll()})")
