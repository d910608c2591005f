"""Fixtures of the search tests: a fresh study name per test, and a fresh database on the (required) PostgreSQL
server for each test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from _support import POSTGRES_URL, create_database, drop_abandoned_databases, drop_database
from sqlalchemy.engine import make_url


@pytest.fixture
def study_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's URL, checked; unreachable is a failure, never a skip (``make test`` sets it up)."""
    shown = make_url(POSTGRES_URL).render_as_string(hide_password=True)
    try:
        drop_abandoned_databases(POSTGRES_URL)
        probe = create_database(POSTGRES_URL)
        drop_database(probe)
    except Exception as e:
        pytest.fail(f"cannot create a test database on the PostgreSQL server of {shown} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0]}); run scripts/ensure_postgres.sh (it gives the role CREATEDB) or "
                    f"set SANAS_TEST_POSTGRES_URL")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database created empty for this test session (no Optuna tables yet), dropped at its end."""
    url = create_database(postgres_server)
    yield url
    drop_database(url)
