"""The compose services' own commands, run as local processes: a study runs to its budget.

The `deployment` fixture (tests/deploy/conftest.py) starts mlflow, runs create-study twice and
three workers (two replicas of `worker`, one `worker-cpu` from the worker-host file) against
real PostgreSQL and a real MLflow server; these tests check what they left behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.deploy.conftest import CANARY_PASSWORD, TRIALS, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_every_service_exits_cleanly(deployment: Deployment) -> None:
    assert [run.returncode for run in deployment.create_runs] == [0, 0]
    for proc in deployment.worker_runs:
        assert proc.popen.returncode == 0, f"{proc.name}:\n{proc.output()[-3000:]}"


def test_scaled_gpu_workers_take_different_gpus(deployment: Deployment) -> None:
    gpus = set()
    for proc in deployment.worker_runs:
        if proc.name == "worker":
            found = re.findall(r"hpsearch-gpu-slot: GPU (\d+)", proc.output())
            assert len(found) == 1, proc.output()[-2000:]
            gpus.add(found[0])
    assert gpus == {"0", "1"}


def test_study_finishes_with_exactly_its_budget(deployment: Deployment) -> None:
    study = optuna.load_study(study_name=deployment.study_name, storage=deployment.storage_url)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = [s for s in states if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == TRIALS, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    assert TrialState.FAIL not in states, states  # nothing broke: no infrastructure failure


def _runs(deployment: Deployment) -> tuple[MlflowClient, str, list]:
    client = MlflowClient(deployment.tracking_uri)
    experiment = client.get_experiment_by_name(deployment.study_name)
    assert experiment is not None, "one MLflow experiment per study, named after it"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return client, experiment.experiment_id, runs


def test_mlflow_holds_the_parent_and_every_trial_run(deployment: Deployment) -> None:
    _, _, runs = _runs(deployment)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == TRIALS
    assert len(runs) == TRIALS + 1
    assert all(r.info.status in ("FINISHED", "KILLED", "FAILED") for r in children)


def test_no_password_in_params_tags_artifacts_or_logs(
    deployment: Deployment, tmp_path: Path
) -> None:
    client, _, runs = _runs(deployment)
    for run in runs:
        for key, value in {**run.data.params, **run.data.tags}.items():
            assert CANARY_PASSWORD not in f"{key}={value}", (run.info.run_id, key)
        downloaded = Path(
            client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id))
        )
        for path in downloaded.rglob("*"):
            if path.is_file():
                assert CANARY_PASSWORD.encode() not in path.read_bytes(), path
    # Every artifact on the server's volume, including any not linked to a run.
    assert deployment.artifacts_dir is not None
    stored = [p for p in deployment.artifacts_dir.rglob("*") if p.is_file()]
    assert stored, "the trials' artifacts went through the server to its volume"
    for path in stored:
        assert CANARY_PASSWORD.encode() not in path.read_bytes(), path
    for log in deployment.logs:
        assert CANARY_PASSWORD not in log.read_text(errors="replace"), log.name
