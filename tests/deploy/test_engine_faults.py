"""Faults on a real Docker engine: scenarios 2 and 3 of issue 12, one compose stack.

2. A worker container dies mid-trial, two ways: `docker kill` (Docker counts it as stopped by
   hand, so `restart: on-failure` leaves it down) and its process killed from outside (a crash,
   as an out-of-memory kill: `restart: on-failure` starts the container again). Either way the
   trial is failed and retried with its parameters, the budget is exact, the run ends KILLED.
3. `docker-compose restart postgres` mid-study: the worker containers keep running (not
   restarted) and nothing is lost.
Checked by reading PostgreSQL and MLflow back through the published loopback ports.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from search.study import load_spec
from tests.deploy.conftest import EngineImages
from tests.deploy.engine import Stack, docker
from tests.faults.support import (
    assert_study_whole,
    assert_tracking_whole,
    runs_by_attempt,
    trial_runs,
)

pytestmark = [pytest.mark.slow, pytest.mark.engine]

TIMEOUT_S = 600
# Trials of seconds (digits, 100 epochs: 1-8 s by batch size), so that each is caught while
# it trains with its MLflow run already created: the run's id is recorded asynchronously, by
# the worker's tracking thread, and on a loaded machine a 0.5 s trial (40 epochs at batch 128)
# could end before it; the survivor then finished the study uncaught (a CI failure).
EPOCHS = 100


@pytest.fixture(scope="module")
def stack(engine_images: EngineImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("faults"),
        env={"STUDY_NAME": "engine-kill", "STUDY_TRIALS": "8", "STUDY_EPOCHS": str(EPOCHS)},
    )
    try:
        yield stack
    finally:
        stack.down("-v")


def training_in(stack: Stack, study: optuna.Study, exclude: set[int]) -> tuple[FrozenTrial, str]:
    """A trial being trained now (its run recorded) and the worker container training it."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        by_hostname = {
            str(stack.inspect(c)["Config"]["Hostname"]): c  # type: ignore[index]
            for c in stack.containers("worker-cpu", all_=False)
        }
        if not by_hostname:
            break  # every worker has exited: nothing will train any more
        for t in study.get_trials(deepcopy=False):
            if t.state != TrialState.RUNNING or t.number in exclude:
                continue
            if "worker" not in t.user_attrs or "mlflow_run_id" not in t.user_attrs:
                continue
            host = str(t.user_attrs["worker"]).split(":")[0]
            if host in by_hostname:
                return t, by_hostname[host]
        time.sleep(0.5)
    trials = [(t.number, t.state.name, sorted(t.user_attrs)) for t in study.get_trials()]
    raise AssertionError(f"no trial caught training; trials: {trials}\n{stack.logs(tail=30)}")


def state_of(stack: Stack, container: str) -> dict[str, object]:
    info = stack.inspect(container)
    return {"restarts": info["RestartCount"], **info["State"]}  # type: ignore[dict-item]


def test_2_a_worker_container_killed_mid_trial(stack: Stack) -> None:
    stack.up(workers=2)
    storage = stack.storage_url()
    study = optuna.load_study(study_name=stack.env["STUDY_NAME"], storage=storage)

    # `docker kill`: the container stays down (Docker ignores the restart policy of a
    # container stopped by hand).
    first, killed = training_in(stack, study, exclude=set())
    docker("kill", killed)
    time.sleep(5)
    after_kill = state_of(stack, killed)
    assert after_kill["restarts"] == 0 and after_kill["Status"] == "exited", after_kill
    assert after_kill["ExitCode"] == 137, after_kill

    # A crash: the worker's process killed from outside the engine. `restart: on-failure`
    # starts the same container again, and the study goes on.
    (survivor,) = [c for c in stack.containers("worker-cpu") if c != killed]
    second, _ = training_in(stack, study, exclude={first.number})
    pid = int(state_of(stack, survivor)["Pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)  # the container's process, started by this test's stack

    codes = stack.wait_exited("worker-cpu", TIMEOUT_S)
    assert sorted(codes) == [0, 137], codes
    assert state_of(stack, survivor)["restarts"] == 1

    spec = load_spec(storage, stack.env["STUDY_NAME"])
    ts = assert_study_whole(storage, spec)
    by_number = {t.number: t for t in ts}
    for hit in (first, second):
        assert by_number[hit.number].state == TrialState.FAIL, by_number[hit.number]
        retry = [t for t in ts if t.user_attrs.get("retry_of") == hit.number]
        assert len(retry) == 1 and retry[0].params == hit.params
    assert_tracking_whole(stack.tracking_uri(), spec, ts, EPOCHS)
    runs = runs_by_attempt(trial_runs(stack.tracking_uri(), spec))
    for hit in (first, second):
        (run,) = [r for (n, _), r in runs.items() if n == hit.number]
        assert run.info.status == "KILLED", (hit.number, run.info.status)


def test_3_postgres_restarted_mid_study(stack: Stack) -> None:
    stack.write_env(STUDY_NAME="engine-pg-restart", STUDY_SEED="1")
    stack.up(workers=2)
    storage = stack.storage_url()
    study = optuna.load_study(study_name=stack.env["STUDY_NAME"], storage=storage)
    training_in(stack, study, exclude=set())
    workers = stack.containers("worker-cpu")
    before = {c: (state_of(stack, c)["restarts"], state_of(stack, c)["StartedAt"]) for c in workers}
    stack.compose("restart", "postgres", timeout=180)

    codes = stack.wait_exited("worker-cpu", TIMEOUT_S)
    assert codes == [0, 0], (codes, stack.logs(tail=30))
    after = {c: (state_of(stack, c)["restarts"], state_of(stack, c)["StartedAt"]) for c in workers}
    assert after == before, "a worker container was restarted: it did not survive"
    spec = load_spec(storage, stack.env["STUDY_NAME"])
    ts = assert_study_whole(storage, spec)
    assert_tracking_whole(stack.tracking_uri(), spec, ts, EPOCHS, replayed_ok=True)
