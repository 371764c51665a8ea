"""Scenario 4: the PostgreSQL server restarts while two workers are mid-trial.

Every connection of the cluster is cut, so this test is marked `pg_restart`: the suite's
conftest runs it after every other test of the session. The cluster is started again in a
`finally` even when the restart command fails half-way.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PG_HOST, PG_PORT, _postgres_available
from tests.faults.support import (
    WorkerPool,
    assert_study_whole,
    create,
    fault_request,
    training,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.pg_restart]


def _cluster() -> list[str]:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*"))
    if not versions or shutil.which("pg_ctlcluster") is None or PG_HOST != "127.0.0.1":
        pytest.skip("no local PostgreSQL cluster this test may restart")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _ensure_up(cluster: list[str]) -> None:
    if not _postgres_available():
        subprocess.run([*cluster, "start"], check=False, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = subprocess.run(["pg_isready", "-h", PG_HOST, "-p", str(PG_PORT), "-q"])
        if ready.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("PostgreSQL did not come back up")


def test_a_postgres_restart_mid_study_loses_nothing(
    postgres_db: Callable[[], str], make_pool: Callable[..., WorkerPool]
) -> None:
    cluster = _cluster()
    storage = postgres_db()
    train = {"epochs": 40, "batch_size": 8}
    spec = create(storage, fault_request("pg-restart", 6, train=train))
    pool = make_pool()
    for _ in range(2):
        pool.start(spec.name, storage)
    wait_for(lambda: len(training(storage, spec.name)) == 2, 120, "two trials training")
    try:
        restart = subprocess.run([*cluster, "restart"], capture_output=True, text=True)
        assert restart.returncode == 0, restart.stderr
    finally:
        _ensure_up(cluster)
    codes = pool.wait_all(timeout=300)
    assert codes == [0, 0], pool.text()  # the workers survive the restart
    ts = assert_study_whole(storage, spec)
    failed = [t for t in ts if t.state.name == "FAIL"]
    for t in failed:  # a trial cut by the restart is an infrastructure failure, retried
        assert t.user_attrs.get("outcome", "infra") == "infra", t.user_attrs
