"""End to end: the CLI's `run` on the embedded default, PostgreSQL with an MLflow server and three
worker processes, a worker killed mid-trial, diverged trials in MLflow. All real components."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.study import create_study, load_spec
from search.worker import run_worker
from tests.support.mlflow_server import MlflowServer
from tests.support.study import (
    REPO,
    WILD_SPACE,
    finished,
    logs,
    request,
    start_worker,
    trials,
    wait_for,
    worker_env,
)

HPSEARCH = [sys.executable, "-m", "search"]


def _child_runs(client: MlflowClient, experiment_id: str, parent: str) -> list:
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=500
    )
    return [r for r in runs if r.data.tags.get("hpsearch.role") == "trial"]


@pytest.mark.slow
def test_hpsearch_run_on_the_embedded_default(tmp_path: Path) -> None:
    """`hpsearch run --trials 12 --workers 2`: SQLite + a local MLflow store, no server."""
    env = worker_env()
    env.pop("HPSEARCH_STORAGE", None)
    done = subprocess.run(
        [*HPSEARCH, "run", "--trials", "12", "--workers", "2", "--epochs", "3", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12/12 trials finished" in done.stdout
    assert "best trials by val_accuracy" in done.stdout and "hpsearch ui" in done.stdout
    assert (tmp_path / "hpsearch.db").exists() and (tmp_path / "mlflow.db").exists()

    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    ts = trials(url, "digits-lesson")
    assert len(finished(ts)) == 12 and len(ts) == 12
    spec = load_spec(url, "digits-lesson")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = _child_runs(client, spec.experiment_id, spec.parent_run_id)
    assert len(children) == 12
    by_id = {r.info.run_id: r for r in children}
    for t in ts:
        run = by_id[t.user_attrs["mlflow_run_id"]]  # linked both ways
        assert run.data.tags["hpsearch.trial_number"] == str(t.number)
        assert run.info.status in ("FINISHED", "FAILED", "KILLED")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert len(history) == t.user_attrs["epochs_run"]
        assert sorted(m.step for m in history) == list(range(1, t.user_attrs["epochs_run"] + 1))
    parent = client.get_run(spec.parent_run_id)
    assert "best_trial" in parent.data.tags  # the summary reached the parent run
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(spec.parent_run_id)}
    assert "best_config.toml" in artifacts


@pytest.mark.slow
@pytest.mark.postgres
def test_three_worker_processes_on_postgres_with_an_mlflow_server(
    postgres_db: Callable[[], str], mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    storage = postgres_db()
    env = {**worker_env(), "MLFLOW_TRACKING_URI": mlflow_server.uri}
    # Trials of ~0.5-1 s: a worker claims about a second of work at a time, so the study spans
    # several claims per worker, longer than the workers' staggered starts (with 0.1 s trials
    # the first worker up could finish all 15 before the others had imported torch).
    epochs = 16
    create = subprocess.run(
        [*HPSEARCH, "create", "--storage", storage, "--name", "pg", "--trials", "15",
         "--epochs", str(epochs), "--tiers", "1", "--dataset", "digits"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert create.returncode == 0, create.stderr
    procs = [start_worker("pg", storage, tmp_path, env=env) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=400) == 0, logs(tmp_path)

    ts = trials(storage, "pg")
    assert len(finished(ts)) == 15 and len(ts) == 15
    assert sorted(t.number for t in ts) == list(range(15))  # no duplicates
    assert len({t.user_attrs["worker"] for t in ts}) >= 2
    spec = load_spec(storage, "pg")
    client = MlflowClient(mlflow_server.uri)
    children = _child_runs(client, spec.experiment_id, spec.parent_run_id)
    assert len(children) == 15
    assert {r.data.tags["hpsearch.trial_number"] for r in children} == {str(n) for n in range(15)}
    assert all(r.info.status != "RUNNING" for r in children)
    run = children[0]
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == epochs
    # No `hpsearch run` process here (the docker-compose shape): the first worker to see the
    # budget met summarizes the study and ends its parent run.
    parent = client.get_run(spec.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert "trials.csv" in {a.path for a in client.list_artifacts(spec.parent_run_id)}


@pytest.mark.slow
def test_killed_worker_attempt_ends_killed_in_mlflow_and_is_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    req = request("kill", n_trials=2, no_tracking=False, tracking_uri=tracking,
                  train={"epochs": 800})  # fmt: skip
    create_study(req.resolve(url), url)
    victim = start_worker("kill", url, tmp_path)
    try:
        killed = wait_for(lambda: _training(url, "kill"), 90, "the victim to train")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        victim.kill()
    report = run_worker(url, "kill")  # the survivor: waits out the grace period, then retries
    ts = trials(url, "kill")
    assert len(finished(ts)) == 2 and {t.state for t in ts} == {
        TrialState.COMPLETE,
        TrialState.FAIL,
    }
    assert next(t for t in ts if t.number == killed.number).state == TrialState.FAIL
    retry = next(t for t in ts if t.user_attrs.get("retry_of") == killed.number)
    assert retry.params == killed.params and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["worker"] == report.worker
    assert "stopped sending heartbeats" in retry.user_attrs["retry_reason"]
    client = MlflowClient(tracking)
    dead = client.get_run(killed.user_attrs["mlflow_run_id"])
    assert dead.info.status == "KILLED", logs(tmp_path)
    assert "heartbeats" in dead.data.tags["hpsearch.reason"]
    again = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert again.info.status == "FINISHED" and again.info.run_id != dead.info.run_id
    assert again.data.tags["hpsearch.attempt"] == "1"


def _training(url: str, name: str) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial with its MLflow run started (the worker is inside `train()`)."""
    running = [t for t in trials(url, name) if t.state == TrialState.RUNNING]
    return next((t for t in running if t.user_attrs.get("mlflow_run_id")), None)


def test_diverged_trials_are_recorded_in_optuna_and_mlflow(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    req = request("div", n_trials=5, no_tracking=False, tracking_uri=tracking,
                  space_toml=WILD_SPACE, train={"optimizer": "gd"})  # fmt: skip
    spec, _ = create_study(req.resolve(url), url)
    run_worker(url, "div")
    ts = trials(url, "div")
    assert len(finished(ts)) == 5
    diverged = [t for t in ts if t.user_attrs["outcome"] == "diverged"]
    assert diverged
    client = MlflowClient(tracking)
    for t in diverged:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED"
        assert run.data.tags["outcome"] == "diverged"
        assert run.data.tags["reason"] == t.user_attrs["reason"]
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    run = client.get_run(complete[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.json"}
    best = optuna.load_study(study_name="div", storage=url).best_trial
    parent = client.get_run(spec.parent_run_id)
    assert parent.data.tags["best_trial"] == str(best.number)
    assert not (REPO / "mlruns").exists()  # artifacts went beside the store, not into the cwd
