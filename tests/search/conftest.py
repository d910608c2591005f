"""Fixtures of the search tests: a fresh study name per test, and the (required) PostgreSQL server."""

from __future__ import annotations

import uuid

import pytest
from _support import POSTGRES_URL


@pytest.fixture
def study_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL; unreachable is a failure, never a skip (``make test`` sets it up)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except Exception as e:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable ({type(e).__name__}); run "
                    f"scripts/ensure_postgres.sh or set SANAS_TEST_POSTGRES_URL")
    finally:
        engine.dispose()
    return POSTGRES_URL
