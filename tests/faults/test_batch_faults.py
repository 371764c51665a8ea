"""Faults of a worker that holds a batch of claimed trials (claims are sized to about a second of
training, so short trials come many at a time).

- Killed while holding several trials: each is failed as stale and retried once, the budget
  exact.
- Its cluster restarted again and again while it claims and records (own PostgreSQL cluster,
  so no other test's connections are cut): no orphan RUNNING trial, nothing lost or doubled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search.study import StudyRequest, create_study
from tests.faults.pg_cluster import ClusterURL, cluster
from tests.support.study import FAST_TRAIN, TINY_SPACE, trials, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[ClusterURL]:
    with cluster() as url:
        yield url


def _create(url: str, name: str, n_trials: int, epochs: int) -> None:
    request = StudyRequest(
        name=name, space_toml=TINY_SPACE, tiers=1, n_trials=n_trials, no_tracking=True,
        train={**FAST_TRAIN, "epochs": epochs}, heartbeat_interval_s=1, grace_period_s=3,
    )  # fmt: skip
    create_study(request.resolve(url), url)


def _worker(url: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_TORCH_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "search", "worker", name],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _whole(url: str, name: str, budget: int) -> list:
    ts = trials(url, name)
    states = Counter(t.state for t in ts)
    table = [(t.number, t.state.name, t.user_attrs.get("retry_of")) for t in ts]
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, table
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == budget, table
    for failed in (t for t in ts if t.state == TrialState.FAIL):
        retries = [t for t in ts if t.user_attrs.get("retry_of") == failed.number]
        assert len(retries) == 1 and retries[0].params == failed.params, table
    return ts


def test_a_worker_killed_holding_several_trials_gets_each_retried_once(
    own_cluster: ClusterURL, tmp_path: Path
) -> None:
    url, budget = str(own_cluster), 120
    _create(url, "batch-kill", budget, epochs=2)
    victim = _worker(url, "batch-kill", tmp_path / "victim.log")
    pid = f":{victim.pid}"

    def held() -> list:
        return [
            t for t in trials(url, "batch-kill")
            if t.state == TrialState.RUNNING and str(t.user_attrs.get("worker", "")).endswith(pid)
        ]  # fmt: skip

    try:
        victims = wait_for(lambda: (h := held()) and len(h) >= 3 and h, 120, "a batch of claims")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        victim.kill()
    dead = {t.number for t in trials(url, "batch-kill") if t.state == TrialState.RUNNING}
    assert len(dead) >= 3 and {t.number for t in victims} <= dead
    survivor = _worker(url, "batch-kill", tmp_path / "survivor.log")
    assert survivor.wait(timeout=300) == 0, (tmp_path / "survivor.log").read_text()[-3000:]
    ts = _whole(url, "batch-kill", budget)
    for number in dead:
        (attempt,) = [t for t in ts if t.number == number]
        assert attempt.state == TrialState.FAIL
        assert "stopped sending heartbeats" in attempt.user_attrs["reason"]
        (retry,) = [t for t in ts if t.user_attrs.get("retry_of") == number]
        assert retry.state == TrialState.COMPLETE


def test_restarts_of_the_database_while_a_worker_claims_leave_no_orphan(
    own_cluster: ClusterURL, tmp_path: Path
) -> None:
    # Trials of ~30 ms: the study lasts well past the five restarts (a restart takes ~1 s).
    url, budget = str(own_cluster), 600
    _create(url, "restarts", budget, epochs=3)
    log = tmp_path / "worker.log"
    env_timeout = os.environ.get("HPSEARCH_CONNECT_TIMEOUT")
    worker = _worker(url, "restarts", log)
    stop = threading.Event()
    restarts = []

    def restart_often() -> None:
        # Every few tenths of a second, while claims, heartbeats and results are in flight.
        while not stop.is_set() and len(restarts) < 5:
            if any(t.state.is_finished() for t in trials(url, "restarts")):
                time.sleep(0.3)
                own_cluster.cluster.restart()
                restarts.append(time.monotonic())
            time.sleep(0.7)

    thread = threading.Thread(target=restart_often, daemon=True)
    thread.start()
    try:
        code = worker.wait(timeout=300)
    finally:
        stop.set()
        thread.join(timeout=60)
        worker.kill()
    assert env_timeout is None or float(env_timeout) >= 10
    assert code == 0, log.read_text()[-3000:]
    assert len(restarts) >= 3, restarts
    ts = _whole(url, "restarts", budget)
    assert len({t.number for t in ts}) == len(ts)  # no number twice
    # Each restart cut every connection; a statement in flight then fails and is retried
    # ("storage unreachable" in the log), a pooled one is replaced at its next checkout.
