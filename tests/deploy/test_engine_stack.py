"""docker-compose.yml on a real Docker engine: scenarios 1, 4, 5 and 6 of issue 12, one stack.

In file order on one compose project: two CPU workers finish a study (1); nothing secret in
the image, the logs or the published ports (6); `down` without `-v`, then `up`: everything is
still there and a second study runs (4); a worker host (docker-compose.worker-host.yml, host
network) joins through the published loopback ports (5). Each is checked by reading
PostgreSQL and MLflow back through those ports, with the fault suite's "nothing lost" helpers.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from search.study import StudySpec, load_spec
from tests.deploy.compose_model import WORKER_HOST_FILE
from tests.deploy.conftest import EngineImages
from tests.deploy.engine import PROJECT_IMAGE, Stack, docker
from tests.faults.support import assert_study_whole, assert_tracking_whole, mlflow_client

pytestmark = [pytest.mark.slow, pytest.mark.engine]

TIMEOUT_S = 480


@pytest.fixture(scope="module")
def stack(engine_images: EngineImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("stack"), env={"STUDY_NAME": "engine-first"})
    try:
        yield stack
    finally:
        stack.down("-v")


def finished_study(stack: Stack, workers: str = "worker-cpu") -> StudySpec:
    """Waits for the workers to exit 0; the study, read back whole from PostgreSQL and MLflow."""
    codes = stack.wait_exited(workers, TIMEOUT_S)
    assert codes and set(codes) == {0}, (codes, stack.logs(tail=30))
    spec = load_spec(stack.storage_url(), stack.env["STUDY_NAME"])
    assert spec.n_trials == int(stack.env["STUDY_TRIALS"])
    ts = assert_study_whole(stack.storage_url(), spec)
    assert_tracking_whole(stack.tracking_uri(), spec, ts, int(stack.env["STUDY_EPOCHS"]))
    return spec


def runs_of(stack: Stack, spec: StudySpec) -> list:
    client = mlflow_client(stack.tracking_uri())
    return list(client.search_runs([str(spec.experiment_id)], max_results=1000))


def worker_hosts(stack: Stack, spec: StudySpec) -> set[str]:
    from tests.support.study import trials

    return {
        str(t.user_attrs["worker"]).split(":")[0] for t in trials(stack.storage_url(), spec.name)
    }


def test_1_two_cpu_workers_finish_the_exact_budget(stack: Stack) -> None:
    stack.up(workers=2)
    spec = finished_study(stack)
    # MLflow, through the published port: the parent run and one child run per trial.
    runs = runs_of(stack, spec)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == spec.n_trials == len(runs) - 1
    # The trials were trained in the two worker containers (their hostnames), nowhere else.
    containers = stack.containers("worker-cpu")
    assert len(containers) == 2
    hostnames = {str(stack.inspect(c)["Config"]["Hostname"]) for c in containers}  # type: ignore[index]
    assert worker_hosts(stack, spec) <= hostnames, (worker_hosts(stack, spec), hostnames)


def test_6_no_secret_in_the_image_or_logs_and_only_loopback_ports(stack: Stack) -> None:
    password = stack.env["POSTGRES_PASSWORD"]
    history = docker("history", "--no-trunc", PROJECT_IMAGE)
    image = docker("image", "inspect", PROJECT_IMAGE)
    assert history.strip() and image.strip()
    assert password not in history and password not in image
    logs = stack.logs()
    assert "database system is ready to accept connections" in logs  # the logs were read
    assert password not in logs
    published = []
    for container in stack.containers():
        for line in docker("port", container).splitlines():
            # e.g. "5000/tcp -> 127.0.0.1:49153"
            published.append(line)
            assert re.search(r"-> 127\.0\.0\.1:\d+$", line), line
    ports = {stack.env["POSTGRES_HOST_PORT"], stack.env["MLFLOW_HOST_PORT"]}
    assert {line.rsplit(":", 1)[1] for line in published} == ports, published
    # And MLflow holds no password in any run's params or tags.
    spec = load_spec(stack.storage_url(), stack.env["STUDY_NAME"])
    for run in runs_of(stack, spec):
        assert password not in json.dumps({**run.data.params, **run.data.tags})


def test_4_down_then_up_keeps_studies_and_runs_and_a_second_study_runs(stack: Stack) -> None:
    first = load_spec(stack.storage_url(), stack.env["STUDY_NAME"])
    before = sorted(r.info.run_id for r in runs_of(stack, first))
    stack.down()  # no -v: the named volumes stay
    assert stack.containers() == []
    volumes = docker(
        "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={stack.name}"
    )
    assert {"pgdata", "mlflow-artifacts"} <= {
        v.removeprefix(f"{stack.name}_") for v in volumes.split()
    }
    # `up` again, with a second study: the first is still whole, with the same runs.
    stack.write_env(STUDY_NAME="engine-second", STUDY_SEED="1")
    stack.up(workers=2)
    second = finished_study(stack)
    assert second.experiment_id != first.experiment_id
    ts = assert_study_whole(stack.storage_url(), first)
    assert_tracking_whole(stack.tracking_uri(), first, ts, int(stack.env["STUDY_EPOCHS"]))
    assert sorted(r.info.run_id for r in runs_of(stack, first)) == before


def test_5_a_worker_host_joins_through_the_published_loopback_ports(
    stack: Stack, tmp_path: Path
) -> None:
    # Host 1 creates the study and starts no worker of its own; the worker host trains it all.
    stack.write_env(STUDY_NAME="engine-joined", STUDY_SEED="2")
    stack.up(workers=0)
    shared = {k: stack.env[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "OPTUNA_DB")}
    host2 = Stack(
        tmp_path,
        files=[WORKER_HOST_FILE],
        env={
            **shared,
            "STUDY_NAME": "engine-joined",
            "HPSEARCH_PRIMARY_HOST": "127.0.0.1",
            "POSTGRES_HOST_PORT": stack.env["POSTGRES_HOST_PORT"],
            "MLFLOW_HOST_PORT": stack.env["MLFLOW_HOST_PORT"],
        },
    )
    try:
        host2.up(workers=2)
        spec = finished_study(host2)
        # Read back from host 1's side: the same study, its runs in host 1's MLflow.
        assert_tracking_whole(
            stack.tracking_uri(), spec, assert_study_whole(stack.storage_url(), spec),
            int(stack.env["STUDY_EPOCHS"]),
        )  # fmt: skip
        # The host network: the workers' hostname is this machine's, not a container's.
        assert worker_hosts(stack, spec) == {socket.gethostname()}
    finally:
        host2.down("-v")
