"""Who gets in (scenario 7 of issue 12): the private-network override turns on MLflow's login.

host 1 runs docker-compose.yml with deploy/compose.private-network.yml, its "private address"
being 127.0.0.2 (a loopback address: nothing here is reachable from another machine), and a
worker host (docker-compose.worker-host.yml) joins through that address. MLflow refuses a
request without a valid login (401); the runs of both hosts land; the credentials come from
the env file only and appear in no log, no run and no image layer.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.study import load_spec
from tests.deploy.compose_model import MAIN_FILE, PRIVATE_NETWORK_FILE, WORKER_HOST_FILE
from tests.deploy.conftest import EngineImages
from tests.deploy.engine import PROJECT_IMAGE, Stack, docker, http_status
from tests.faults.support import assert_study_whole, assert_tracking_whole, mlflow_client
from tests.support.study import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.engine]

PRIVATE_IP = "127.0.0.2"
TIMEOUT_S = 480
EPOCHS = 20


@pytest.fixture(scope="module")
def host1(engine_images: EngineImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("login"),
        files=[MAIN_FILE, PRIVATE_NETWORK_FILE],
        env={
            "STUDY_NAME": "engine-login",
            "STUDY_EPOCHS": str(EPOCHS),
            "HPSEARCH_PRIVATE_IP": PRIVATE_IP,
            "MLFLOW_ALLOWED_HOSTS": f"mlflow,mlflow:5000,127.0.0.1:*,{PRIVATE_IP}:*",
            "MLFLOW_TRACKING_USERNAME": "hpsearch-ci",
            "MLFLOW_TRACKING_PASSWORD": f"mlpw{uuid.uuid4().hex}",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        },
    )
    try:
        yield stack
    finally:
        stack.down("-v")


def test_7_mlflow_login_refuses_strangers_and_admits_the_workers(
    host1: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = host1.env["MLFLOW_TRACKING_USERNAME"], host1.env["MLFLOW_TRACKING_PASSWORD"]
    host1.up(workers=0)  # the study, its experiment and parent run: created through the login
    host2 = Stack(
        tmp_path,
        files=[WORKER_HOST_FILE],
        env={
            **{k: host1.env[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "OPTUNA_DB")},
            "STUDY_NAME": host1.env["STUDY_NAME"],
            "HPSEARCH_PRIMARY_HOST": PRIVATE_IP,
            "POSTGRES_HOST_PORT": host1.env["POSTGRES_HOST_PORT"],
            "MLFLOW_HOST_PORT": host1.env["MLFLOW_HOST_PORT"],
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
        },
    )
    storage = host1.storage_url(PRIVATE_IP)
    try:
        # The worker host first, until it has finished a trial; then host 1's own worker.
        host2.up(workers=1)
        study = optuna.load_study(study_name=host1.env["STUDY_NAME"], storage=storage)
        wait_for(
            lambda: any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)),
            TIMEOUT_S, "a trial finished by the worker host",
        )  # fmt: skip
        host1.up(workers=1)
        for stack in (host2, host1):
            assert stack.wait_exited("worker-cpu", TIMEOUT_S) == [0], stack.logs(tail=30)
        logs = host1.logs() + host2.logs()
    finally:
        host2.down("-v")

    # Strangers: no login, a wrong one, on either address, get 401; the right one gets in.
    api = "/api/2.0/mlflow/experiments/search?max_results=5"
    wrong = base64.b64encode(f"{user}:not-{password}".encode()).decode()
    right = base64.b64encode(f"{user}:{password}".encode()).decode()
    for host in ("127.0.0.1", PRIVATE_IP):
        uri = host1.tracking_uri(host)
        assert http_status(uri + api) == 401
        assert http_status(uri + api, {"Authorization": f"Basic {wrong}"}) == 401
        assert http_status(uri + api, {"Authorization": f"Basic {right}"}) == 200
        assert http_status(uri + "/health") == 200  # the healthcheck's way in stays open

    # The runs of both hosts landed (read back with the login, as the workers do).
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    spec = load_spec(storage, host1.env["STUDY_NAME"])
    ts = assert_study_whole(storage, spec)
    assert_tracking_whole(host1.tracking_uri(PRIVATE_IP), spec, ts, EPOCHS)
    hosts = {str(t.user_attrs["worker"]).split(":")[0] for t in ts}
    assert socket.gethostname() in hosts, hosts  # the worker host's (host network) trials
    containers = {
        str(host1.inspect(c)["Config"]["Hostname"]) for c in host1.containers("worker-cpu")
    }  # type: ignore[index]
    assert hosts <= containers | {socket.gethostname()}, hosts

    # The credentials: in no log, no run's params or tags, no layer of the image.
    assert "database system is ready" in logs
    runs = mlflow_client(host1.tracking_uri()).search_runs(
        [str(spec.experiment_id)], max_results=1000
    )
    assert len(runs) == len(ts) + 1
    for secret in (
        password,
        host1.env["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        host1.env["POSTGRES_PASSWORD"],
    ):
        assert secret not in logs
        assert secret not in docker("history", "--no-trunc", PROJECT_IMAGE)
        assert secret not in docker("image", "inspect", PROJECT_IMAGE)
        for run in runs:
            assert secret not in json.dumps({**run.data.params, **run.data.tags})
    # And never in a URL: the tracking URI every hpsearch process got has no userinfo.
    for container in host1.containers("worker-cpu") + host1.containers("create-study"):
        env = dict(e.split("=", 1) for e in host1.inspect(container)["Config"]["Env"])  # type: ignore[index]
        assert "@" not in env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"]
        assert env["MLFLOW_TRACKING_USERNAME"] == user
