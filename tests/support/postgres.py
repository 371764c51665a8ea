"""The PostgreSQL server the tests use: 127.0.0.1:5432, trust auth, user postgres (or the
HPSEARCH_TEST_PG_* variables). Databases are made per test by conftest's `postgres_db`."""

from __future__ import annotations

import os
import socket

import pytest

from tests.support import markers

PG_HOST = os.environ.get("HPSEARCH_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HPSEARCH_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HPSEARCH_TEST_PG_USER", "postgres")


def pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def pg_admin(sql: str) -> None:
    """Run one statement on the server's `postgres` database, outside a transaction."""
    import sqlalchemy as sa

    markers.require("postgres")
    engine = sa.create_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def postgres_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def skip_or_fail_without_postgres() -> None:
    """Skip the test without PostgreSQL; fail it instead when CI says it must be there
    (HPSEARCH_REQUIRE_POSTGRES=1)."""
    if not postgres_available():
        if os.environ.get("HPSEARCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable on {PG_HOST}:{PG_PORT}")
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT}")
