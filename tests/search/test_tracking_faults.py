"""Tracking faults with real components: a tracking server that goes away and comes back,
and an artifact store that refuses writes even to root."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.tracking import (
    ReplayedRun,
    Tracker,
    ensure_study_run,
    mark_run_ended,
    replay_spool,
)
from tests.conftest import MlflowServer, sqlite_mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.mlflow_server]  # a module-scoped server

EPOCHS = 20
KEYS = ("train_loss", "val_loss", "val_accuracy", "grad_norm/0")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from sqlite_mlflow_server(tmp_path_factory, "mlflow-faults")


@pytest.fixture
def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # A refused connection is not retried: the test waits for the spool, not for backoff.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def log_epochs(run, offset: float = 0.0) -> list[dict[str, float]]:
    history = []
    for epoch in range(1, EPOCHS + 1):
        metrics = {key: offset + i + 1.0 / epoch for i, key in enumerate(KEYS)}
        run.log_epoch(epoch, metrics)
        history.append({"epoch": epoch, **metrics})
    return history


def assert_complete_once(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    run = client.get_run(run_id)
    assert run.info.status == status
    for key in KEYS:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)  # each point once
    assert {a.path for a in client.list_artifacts(run_id)} == {"config.json"}


def test_a_down_server_loses_nothing_and_fails_no_trial(
    server: MlflowServer, tmp_path: Path, fail_fast: None
) -> None:
    spool = tmp_path / "spool"
    ref = ensure_study_run(server.uri, "outage", {"budget": 3})
    created: list[ReplayedRun] = []
    tracker = Tracker(ref, spool, worker="w0", on_run_created=created.append)

    # trial 0 starts while the server is up, then the server dies mid-trial
    run0 = tracker.start_trial(0, 0, {"alpha": 0.01}, {})
    assert run0.run_id is not None
    history0 = log_epochs(run0)
    # another worker's attempt, whose process was killed: its run stays RUNNING
    client = MlflowClient(server.uri)
    dead_run_id = client.create_run(
        ref.experiment_id, tags={"mlflow.runName": "trial-9"}
    ).info.run_id
    server.stop()

    start = time.perf_counter()
    run0.finish("FINISHED", {"objective": 0.5}, {}, {"config.json": "{}"}, history0)
    # trial 1 starts while the server is down: its run cannot even be created
    run1 = tracker.start_trial(1, 0, {"alpha": 0.02}, {})
    assert run1.run_id is None
    history1 = log_epochs(run1, offset=10)
    run1.finish("FINISHED", {"objective": 0.6}, {}, {"config.json": "{}"}, history1)
    mark_run_ended(server.uri, dead_run_id, "KILLED", "heartbeat lost", spool_dir=spool)
    tracker.wait_finished()  # the background half of finish: it spools what it cannot send
    assert time.perf_counter() - start < 30, "a dead server must fail fast"
    assert len(list(spool.glob("*.jsonl"))) == 3

    replayed = replay_spool(server.uri, spool)  # still down: nothing is lost
    assert all(not r.complete for r in replayed)
    assert len(list(spool.glob("*.jsonl"))) == 3

    restarted_ms = int(time.time() * 1000)
    server.start()  # same port, same backend store
    # the next trial's finish replays the spool once the server answers again
    run2 = tracker.start_trial(2, 0, {"alpha": 0.03}, {})
    run2.finish("FINISHED", {"objective": 0.7}, {}, {"config.json": "{}"}, log_epochs(run2))
    tracker.close()
    assert list(spool.glob("*")) == []
    assert [(r.trial_number, r.attempt, r.created) for r in created] == [(1, 0, True)]
    assert replay_spool(server.uri, spool) == []  # replaying again sends nothing twice

    run1_id = created[0].run_id
    assert run1_id is not None
    for run_id in (run0.run_id, run1_id, run2.run_id):
        assert_complete_once(client, run_id)
    run1_info = client.get_run(run1_id)
    assert run1_info.data.tags["mlflow.runName"] == "trial-1: alpha=0.02"
    assert run1_info.data.tags["mlflow.parentRunId"] == ref.parent_run_id
    assert run1_info.data.params == {"alpha": "0.02"}
    # the replayed run keeps the times of the trial, not of the replay
    assert run1_info.info.start_time < restarted_ms
    assert run1_info.info.end_time < restarted_ms
    dead = client.get_run(dead_run_id)
    assert dead.info.status == "KILLED"
    assert dead.data.tags["hpsearch.reason"] == "heartbeat lost"


_DIES_AFTER_FINISH = """
import os, sys
from search.tracking import Tracker, ensure_study_run
uri, spool = sys.argv[1], sys.argv[2]
KEYS = %s
ref = ensure_study_run(uri, "write-ahead", {})
tracker = Tracker(ref, spool)
run = tracker.start_trial(0, 0, {"alpha": 0.01}, {})
history = []
for epoch in range(1, 21):
    metrics = {key: i + 1.0 / epoch for i, key in enumerate(KEYS)}
    run.log_epoch(epoch, metrics)
    history.append({"epoch": epoch, **metrics})
run.wait_created()
tracker._io_lock.acquire()  # the sender can never send the rest...
spooled = run.finish("FINISHED", {"objective": 0.5}, {}, {"config.json": "{}"}, history)
spooled.result()  # what a worker waits for before it tells Optuna the trial's result
print(run.run_id, flush=True)
os._exit(0)  # ...because the process dies the moment the run's data is spooled
"""


def test_a_worker_that_dies_right_after_finish_loses_nothing(
    server: MlflowServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    run_id = _dead_worker_run(server, spool)
    client = MlflowClient(server.uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # nothing was sent after create
    assert (
        len(list(spool.glob("*.claimed-*"))) == 1
    )  # the write-ahead file, claimed by the dead pid

    replayed = replay_spool(server.uri, spool)  # the dead claim is released and replayed
    assert [r.run_id for r in replayed] == [run_id] and replayed[0].complete
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in KEYS:  # every epoch's point, once
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(1, EPOCHS + 1)), (key, steps)
    # The config travels with the write-ahead: a crash after it loses nothing.
    assert {f.path for f in client.list_artifacts(run_id)} == {"config.json"}
    assert list(spool.iterdir()) == []


def test_an_unwritable_artifact_store_keeps_metrics(
    mlflow_server_factory: Callable[..., MlflowServer], tmp_path: Path, fail_fast: None
) -> None:
    # Tests run as root, where chmod does not stop writes. A path *under a regular file*
    # fails for everyone: mkdir gives ENOTDIR. The broken store is this test's own server's,
    # not the module's shared one.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the artifact root's parent should be")
    server = mlflow_server_factory(artifacts=blocker / "artifacts")

    ref = ensure_study_run(server.uri, "no-artifacts", {})
    with Tracker(ref, tmp_path / "spool") as tracker:
        run = tracker.start_trial(0, 0, {"alpha": 0.01}, {})
        history = log_epochs(run)
        run.finish("FINISHED", {"objective": 0.5}, {}, {"config.json": "{}"}, history)
    client = MlflowClient(server.uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert "config.json" in got.data.tags["hpsearch.artifact_error"]
    assert got.data.params == {"alpha": "0.01"}
    for key in KEYS:
        assert len(client.get_metric_history(run.run_id, key)) == EPOCHS
    assert not list((tmp_path / "spool").glob("*.jsonl")), "a store error is not an outage"


def _dead_worker_run(server: MlflowServer, spool: Path) -> str:
    """A worker that spooled its trial's end (FINISHED) and died before sending it."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _DIES_AFTER_FINISH.replace("%s", repr(KEYS)), server.uri, spool],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return out.stdout.split()[-1]


def _assert_killed_with_every_metric(client: MlflowClient, run_id: str) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["hpsearch.reason"] == "heartbeat lost"
    assert run.data.tags["outcome"] == "infra"  # not the dead attempt's "complete"
    for key in KEYS:  # the dead attempt's metrics are real: they still go in, once
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(1, EPOCHS + 1)), (key, steps)


def test_a_dead_attempt_marked_killed_stays_killed_when_its_own_end_is_replayed(
    server: MlflowServer, tmp_path: Path
) -> None:
    # The race CI found: the worker dies between spooling FINISHED and telling Optuna, another
    # worker fails the trial as stale and marks the run KILLED, then replays the dead file.
    spool = tmp_path / "spool"
    run_id = _dead_worker_run(server, spool)
    mark_run_ended(server.uri, run_id, "KILLED", "heartbeat lost", spool_dir=spool)
    assert len(replay_spool(server.uri, spool)) == 1
    _assert_killed_with_every_metric(MlflowClient(server.uri), run_id)
    assert list(spool.iterdir()) == []


def test_a_spooled_killed_mark_wins_over_the_older_spooled_finish(
    server: MlflowServer, tmp_path: Path, fail_fast: None
) -> None:
    # The same, with the server down when the run is marked: both ends are in the spool, the
    # dead attempt's (older) is replayed first, the KILLED mark after it must still win.
    spool = tmp_path / "spool"
    run_id = _dead_worker_run(server, spool)
    server.stop()
    try:
        mark_run_ended(server.uri, run_id, "KILLED", "heartbeat lost", spool_dir=spool)
    finally:
        server.start()
    assert len(list(spool.glob("*.jsonl*"))) == 2
    assert len(replay_spool(server.uri, spool)) == 2
    _assert_killed_with_every_metric(MlflowClient(server.uri), run_id)
