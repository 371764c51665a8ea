"""Scenarios 1-3: workers killed, all killed, or paused past the grace period.

PostgreSQL storage, a real `mlflow server`, worker processes. Trials are made slow enough
(digits with mini-batches of 8: about 0.1 s an epoch) that a fault lands in the middle of one.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import MlflowServer
from tests.faults.support import (
    WorkerPool,
    assert_study_whole,
    assert_tracking_whole,
    create,
    fault_request,
    mlflow_client,
    signal_worker,
    training,
    trial_runs,
    trials,
    wait_for,
)

EPOCHS = 40
SLOW_TRAIN = {"epochs": EPOCHS, "batch_size": 8}

pytestmark = pytest.mark.slow


def _pid_of(worker_attr: str) -> int:
    return int(worker_attr.rsplit(":", 1)[1])


def _by_pid(pool: WorkerPool, pid: int):
    return next(p for p in pool.procs if p.pid == pid)


def _run_of(uri: str, spec, number: int):
    return [r for r in trial_runs(uri, spec) if r.data.tags["hpsearch.trial_number"] == str(number)]


def test_sigkilled_worker_trial_is_failed_and_retried_with_the_same_params(
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
    make_pool: Callable[..., WorkerPool],
) -> None:
    storage, server = postgres_db(), mlflow_server_factory()
    spec = create(storage, fault_request("kill-one", 4, tracking_uri=server.uri, train=SLOW_TRAIN))
    pool = make_pool(server.uri)
    for _ in range(2):
        pool.start(spec.name, storage)
    # Mid-training, with its run's id recorded (the run is created while the trial trains; a
    # kill before the id is on the trial is the next test's case).
    victim_trial = wait_for(
        lambda: training(storage, spec.name, tracked=True),
        90,
        "a trial mid-training with its MLflow run recorded",
    )[0]
    victim = _by_pid(pool, _pid_of(victim_trial.user_attrs["worker"]))
    signal_worker(victim, signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    survivor = next(p for p in pool.procs if p is not victim)
    assert survivor.wait(timeout=180) == 0, pool.text()

    ts = assert_study_whole(storage, spec)
    killed = next(t for t in ts if t.number == victim_trial.number)
    assert killed.state == TrialState.FAIL
    retry = next(t for t in ts if t.user_attrs.get("retry_of") == killed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert "stopped sending heartbeats" in retry.user_attrs["retry_reason"]
    assert_tracking_whole(server.uri, spec, ts, EPOCHS)
    (dead_run,) = _run_of(server.uri, spec, killed.number)
    assert dead_run.info.status == "KILLED"
    assert "heartbeats" in dead_run.data.tags["hpsearch.reason"]
    assert killed.user_attrs["mlflow_run_id"] == dead_run.info.run_id


def test_every_worker_killed_then_one_restarted_resumes_the_study(
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
    make_pool: Callable[..., WorkerPool],
) -> None:
    storage, server = postgres_db(), mlflow_server_factory()
    # A budget of 6, not 3: a worker that starts several seconds after the other (a loaded CI
    # machine) must still find trials left to train at the same time as the first one.
    spec = create(storage, fault_request("kill-all", 6, tracking_uri=server.uri, train=SLOW_TRAIN))
    pool = make_pool(server.uri)
    first = [pool.start(spec.name, storage) for _ in range(2)]
    # Both workers mid-trial, then both die at once: nobody is left to notice.
    wait_for(
        lambda: len(training(storage, spec.name, tracked=True)) == 2, 90, "two trials training"
    )
    for proc in first:
        signal_worker(proc, signal.SIGKILL)
    for proc in first:
        proc.wait(timeout=10)
    # The two trials in training, and any a worker had claimed but not started yet (claims
    # are batched to about a second of work once a worker has timed a trial).
    stale = [t for t in trials(storage, spec.name) if t.state == TrialState.RUNNING]
    assert len([t for t in stale if "mlflow_run_id" in t.user_attrs]) == 2, stale

    restarted = pool.start(spec.name, storage)
    assert restarted.wait(timeout=180) == 0, pool.text()
    ts = assert_study_whole(storage, spec)
    for dead in stale:
        assert next(t for t in ts if t.number == dead.number).state == TrialState.FAIL
        retry = next(t for t in ts if t.user_attrs.get("retry_of") == dead.number)
        assert retry.state == TrialState.COMPLETE and retry.params == dead.params
        assert retry.user_attrs["worker"].endswith(f":{restarted.pid}")
        runs = _run_of(server.uri, spec, dead.number)
        if "mlflow_run_id" in dead.user_attrs:  # it was training: its run ended KILLED
            (dead_run,) = runs
            assert dead_run.info.status == "KILLED"
        else:  # claimed, never started: no run was made for it
            assert runs == []
    assert_tracking_whole(server.uri, spec, ts, EPOCHS)


def test_a_worker_paused_past_the_grace_period_survives_and_its_late_result_is_void(
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
    make_pool: Callable[..., WorkerPool],
) -> None:
    storage, server = postgres_db(), mlflow_server_factory()
    spec = create(storage, fault_request("pause", 3, tracking_uri=server.uri, train=SLOW_TRAIN))
    pool = make_pool(server.uri)
    for _ in range(2):
        pool.start(spec.name, storage)
    target = wait_for(lambda: training(storage, spec.name), 90, "a trial training")[0]
    paused = _by_pid(pool, _pid_of(target.user_attrs["worker"]))
    signal_worker(paused, signal.SIGSTOP)
    try:
        # The other worker fails the silent trial (grace 3 s) and re-queues its parameters.
        wait_for(
            lambda: any(t.user_attrs.get("retry_of") == target.number
                        for t in trials(storage, spec.name)),
            90,
            "the paused worker's trial to be failed and re-queued",
        )  # fmt: skip
    finally:
        signal_worker(paused, signal.SIGCONT)
    codes = pool.wait_all(timeout=180)
    assert codes == [0, 0], pool.text()  # the paused worker survives, it does not crash
    log = pool.text()
    assert "Should not reach" not in log and "Traceback" not in log, log
    assert "1 discarded" in log, log

    ts = assert_study_whole(storage, spec)
    late = next(t for t in ts if t.number == target.number)
    assert late.state == TrialState.FAIL  # the late result was not recorded
    assert late.value is None
    retry = next(t for t in ts if t.user_attrs.get("retry_of") == target.number)
    assert retry.state == TrialState.COMPLETE and retry.params == late.params
    assert_tracking_whole(server.uri, spec, ts, EPOCHS)
    (late_run,) = _run_of(server.uri, spec, target.number)
    assert late_run.info.status == "KILLED"  # never FINISHED: no second completion in MLflow
    assert mlflow_client(server.uri).get_run(late_run.info.run_id).data.tags["outcome"] == (
        "discarded"
    )


def test_a_worker_killed_before_recording_its_run_id_still_gets_its_run_killed(
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run is created while the trial trains and its id is written to the trial a moment
    later: a worker dying in between leaves a RUNNING run the trial does not name. The worker
    that fails the trial as stale finds that run by its tags and ends it KILLED."""
    import optuna

    from search.tracking import StudyRunRef, Tracker
    from search.worker import SPOOL_ENV, run_worker
    from spaces import Space

    storage, server = postgres_db(), mlflow_server_factory()
    spec = create(storage, fault_request("no-run-id", 2, tracking_uri=server.uri))
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    # The dead worker, step by step: pull trial 0, heartbeat, mark it as training, create its
    # run (its id never recorded), die (stop heartbeating).
    study = optuna.load_study(study_name=spec.name, storage=storage)
    trial = study.ask()
    Space.from_toml(spec.space_toml).suggest(trial, spec.tiers)
    study._storage.record_heartbeat(trial._trial_id)
    study._storage.set_trial_user_attr(trial._trial_id, "worker", "gone-host:1")
    ref = StudyRunRef(spec.experiment_id, spec.parent_run_id, server.uri, spec.name)
    with Tracker(ref, tmp_path / "dead-spool") as tracker:
        orphan = tracker.start_trial(trial.number, 0, {}, {}).wait_created()
    assert orphan is not None
    assert mlflow_client(server.uri).get_run(orphan).info.status == "RUNNING"
    time.sleep(spec.grace_period_s + 0.5)  # its heartbeat goes stale

    report = run_worker(storage, spec.name)
    assert report.trials, report
    ts = assert_study_whole(storage, spec)
    dead = next(t for t in ts if t.number == trial.number)
    assert dead.state == TrialState.FAIL and "mlflow_run_id" not in dead.user_attrs
    run = mlflow_client(server.uri).get_run(orphan)
    assert run.info.status == "KILLED"
    assert "heartbeats" in run.data.tags["hpsearch.reason"]
    assert run.data.tags["outcome"] == "infra"
