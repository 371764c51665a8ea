"""Fixtures of the fault-injection suite: worker pools that are always cleaned up, a spool
directory per test, and the ordering that keeps the PostgreSQL restart away from other tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.support import WorkerPool, worker_env

PG_RESTART_MARK = "pg_restart"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{PG_RESTART_MARK}: restarts the PostgreSQL cluster (run after every other test)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A PostgreSQL restart cuts every connection of the cluster: run it after all other tests
    # of the session (stable order otherwise), so it cannot break a test of another package.
    items.sort(key=lambda item: item.get_closest_marker(PG_RESTART_MARK) is not None)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def make_pool(tmp_path: Path, spool: Path) -> Iterator[Callable[..., WorkerPool]]:
    """`make_pool(tracking_uri=None, **env)`: a pool of worker processes, killed at teardown."""
    pools: list[WorkerPool] = []

    def make(tracking_uri: str | None = None, **env: str) -> WorkerPool:
        cwd = tmp_path / f"pool-{len(pools)}"
        cwd.mkdir()
        pool = WorkerPool(cwd, worker_env(tracking_uri, spool, **env))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop_all()
