"""Fixtures for real components: a fresh PostgreSQL database, real `mlflow server` processes.

The helpers behind them live in tests/support/. Each test is marked from the fixtures it uses
(tests/support/markers.py), so `pytest -m "not slow"` and `-m "not postgres"` select what they
say.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from spaces import Space, load_space
from tests.support import markers
from tests.support.mlflow_server import MlflowServer, free_port, sqlite_mlflow_server
from tests.support.postgres import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    pg_admin,
    pg_url,
    postgres_available,
    skip_or_fail_without_postgres,
)

# Imported from here by tests/faults, tests/search/test_tracking*.py and bench/ (older names).
_pg_admin = pg_admin
_postgres_available = postgres_available
__all__ = [
    "PG_HOST",
    "PG_PORT",
    "PG_USER",
    "MlflowServer",
    "_pg_admin",
    "_postgres_available",
    "free_port",
    "pg_url",
    "sqlite_mlflow_server",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    markers.mark_from_fixtures(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    markers.enter(item)
    try:
        yield
    finally:
        markers.leave()


@pytest.fixture
def postgres_db() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases (dropped after the test); returns URLs.

    Fails (not skips) when CI says PostgreSQL must be there: HPSEARCH_REQUIRE_POSTGRES=1.
    """
    skip_or_fail_without_postgres()
    created: list[str] = []

    def make() -> str:
        name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
        pg_admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return pg_url(name)

    yield make
    for name in created:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_db: Callable[[], str]) -> str:
    """One fresh PostgreSQL database for this test."""
    return postgres_db()


@pytest.fixture
def mlflow_server_factory(tmp_path: Path) -> Iterator[Callable[..., MlflowServer]]:
    """Start real `mlflow server` processes, each the test's own:
    `factory(backend_uri=None, workers=1, artifacts=None)`.

    `artifacts`: the artifact root to serve (default: a fresh folder); a test may pass one that
    refuses writes.
    """
    servers: list[MlflowServer] = []

    def start(
        backend_uri: str | None = None, workers: int = 1, artifacts: Path | None = None
    ) -> MlflowServer:
        backend = backend_uri or f"sqlite:///{tmp_path / f'mlflow-{len(servers)}.db'}"
        if artifacts is None:
            artifacts = tmp_path / f"mlartifacts-{len(servers)}"
            artifacts.mkdir()
        server = MlflowServer(backend, artifacts, workers=workers, log_dir=tmp_path)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mlflow_server(
    mlflow_server_factory: Callable[..., MlflowServer], postgres_db: Callable[[], str]
) -> MlflowServer:
    """A real `mlflow server` backed by a fresh PostgreSQL database."""
    return mlflow_server_factory(postgres_db())


@pytest.fixture(scope="session")
def lesson() -> Space:
    """The built-in `lesson` space."""
    return load_space("lesson")
