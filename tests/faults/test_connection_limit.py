"""More workers than PostgreSQL has connections: the cliff, and PgBouncer as its cure.

A PostgreSQL cluster of its own (initdb on a free port, `max_connections = 12`) so the limit is
small enough to reach with a handful of real worker processes. Without a pooler the workers past
the limit are refused ("too many clients already"); through `hpsearch proxy`'s PgBouncer
(transaction pooling, 4 server connections) every worker runs and the budget is exact. An idle
worker holds at most one connection (`pg_stat_activity`, by application name).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from search.study import StudyRequest, create_study
from tests.conftest import free_port
from tests.faults.pg_cluster import cluster
from tests.support.study import FAST_TRAIN, TINY_SPACE, trials, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MAX_CONNECTIONS = 12
WORKERS = 16


@pytest.fixture(scope="module")
def small_cluster() -> Iterator[str]:
    with cluster(max_connections=MAX_CONNECTIONS) as url:
        yield url


def _study(url: str, name: str, n_trials: int, epochs: int = 40) -> None:
    request = StudyRequest(
        name=name, space_toml=TINY_SPACE, tiers=1, n_trials=n_trials, no_tracking=True,
        train={**FAST_TRAIN, "epochs": epochs}, heartbeat_interval_s=1, grace_period_s=10,
    )  # fmt: skip
    create_study(request.resolve(url), url)


def _start(url: str, name: str, log_dir: Path, n: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_CONNECT_TIMEOUT": "4",
           "HPSEARCH_TORCH_THREADS": "1"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = []
    for i in range(n):
        with open(log_dir / f"worker-{i}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "search", "worker", name],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


def _logs(log_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(log_dir.glob("*.log")))


def test_more_workers_than_connections_are_refused_without_a_pooler(
    small_cluster: str, tmp_path: Path
) -> None:
    # Long trials keep the first workers' connections open while the others try to connect.
    _study(small_cluster, "cliff", n_trials=WORKERS * 2, epochs=100000)
    procs = _start(small_cluster, "cliff", tmp_path, WORKERS)
    try:
        refused = wait_for(
            lambda: [p for p in procs if p.poll() not in (None, 0)], 240, "a refused worker"
        )
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert refused
    assert "too many clients" in _logs(tmp_path), _logs(tmp_path)[-3000:]


def test_pgbouncer_serves_more_workers_than_connections_with_an_exact_budget(
    small_cluster: str, tmp_path: Path
) -> None:
    from search.errors import StudyError
    from search.proxy import ProxySettings, pgbouncer_binary, running_proxy

    try:
        pgbouncer_binary()
    except StudyError as exc:
        if os.environ.get("HPSEARCH_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    upstream = small_cluster.rsplit("/", 1)[0]
    settings = ProxySettings(upstream, listen_port=free_port(), pool_size=4)
    pooled = settings.client_url("hp")
    with running_proxy(settings):
        _study(pooled, "cured", n_trials=WORKERS * 2)
        codes = _wait(_start(pooled, "cured", tmp_path, WORKERS), timeout=420)
        logs = _logs(tmp_path)
        assert codes == [0] * WORKERS, logs[-3000:]
        assert "too many clients" not in logs
        ts = trials(pooled, "cured")
    finished = [t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == WORKERS * 2 and len(ts) == WORKERS * 2  # exact, nothing failed
    assert sorted(t.number for t in ts) == list(range(WORKERS * 2))


def test_an_idle_worker_holds_at_most_one_connection(tmp_path: Path) -> None:
    # A cluster of its own: the refused and killed workers of the tests above leave nothing here.
    with cluster(max_connections=MAX_CONNECTIONS) as url:
        _idle_workers_hold_one_connection(url, tmp_path)


def _idle_workers_hold_one_connection(small_cluster: str, tmp_path: Path) -> None:
    # One long trial: the first worker trains it, the other two have nothing to claim (idle).
    _study(small_cluster, "idle", n_trials=1, epochs=100000)
    procs = _start(small_cluster, "idle", tmp_path, 3)
    engine = sa.create_engine(small_cluster, poolclass=sa.pool.NullPool)
    query = sa.text(
        "SELECT application_name, count(*) FROM pg_stat_activity "
        "WHERE application_name LIKE 'hpsearch-worker:%' GROUP BY application_name"
    )
    running = sa.text("SELECT count(*) FROM trials WHERE state = 'RUNNING'")

    def started() -> bool:
        # One engine for every poll: `trials()` opens a storage a call, and this cluster has
        # only MAX_CONNECTIONS to give.
        with engine.connect() as conn:
            return bool(conn.execute(running).scalar())

    try:
        wait_for(started, 120, "the trial to start")
        samples: list[dict[str, int]] = []
        for _ in range(10):
            with engine.connect() as conn:
                samples.append({name: int(n) for name, n in conn.execute(query)})
            time.sleep(0.5)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        engine.dispose()
    assert all(len(s) == 3 for s in samples[2:]), samples  # every worker is connected...
    assert max(n for s in samples for n in s.values()) <= 1, samples  # ...with one connection


def test_the_proxy_command_refuses_a_bad_upstream() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "search", "proxy", "--upstream", "mysql://u@h/db"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2 and "postgresql://" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
