"""`search.tracking` against a real `mlflow server` (SQLite backend) and a real SQL store."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.tracking import (
    StudyRunRef,
    Tracker,
    default_tracking_uri,
    ensure_study_run,
    find_trial_run,
    mark_run_ended,
    update_study_best,
)
from tests.conftest import MlflowServer, sqlite_mlflow_server

# Each module starts its own `mlflow server` (seconds to tens of seconds on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.mlflow_server]  # a module-scoped server

EPOCHS = 20
SECRET = "s3cretPW"
API_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) /(api|ajax-api)/')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from sqlite_mlflow_server(tmp_path_factory, "mlflow")


def api_requests(server: MlflowServer) -> list[str]:
    """The API requests the server has answered so far, from its access log."""
    return [line for line in server.log.read_text().splitlines() if API_LINE.search(line)]


def requests_since(server: MlflowServer, before: int) -> list[str]:
    # The access log is written by the server process: give it a moment to land.
    deadline = time.monotonic() + 5
    seen = api_requests(server)[before:]
    while time.monotonic() < deadline:
        time.sleep(0.3)
        again = api_requests(server)[before:]
        if len(again) == len(seen):
            break
        seen = again
    return seen


def epoch_metrics(epoch: int) -> dict[str, float]:
    return {
        "train_loss": 1.0 / epoch,
        "val_loss": 1.2 / epoch,
        "val_accuracy": 1.0 - 0.5 / epoch,
        "lr": 1e-3,
        "grad_norm/0": 0.5,
        "grad_norm/1": 0.25,
    }


def run_trial(tracker: Tracker, number: int, attempt: int = 0) -> tuple[str | None, float]:
    """A 20-epoch trial through the Tracker; returns its run id and finish() time in s."""
    run = tracker.start_trial(
        number,
        attempt,
        {"alpha": 3e-3, "hidden_units": 64, "storage": f"postgresql://hp:{SECRET}@db/x"},
        {"hpsearch.space": "lesson"},
    )
    history = []
    for epoch in range(1, EPOCHS + 1):
        metrics = epoch_metrics(epoch)
        run.log_epoch(epoch, metrics)
        history.append({"epoch": epoch, **metrics})
    start = time.perf_counter()
    run.finish(
        "FINISHED",
        {"val_accuracy": history[-1]["val_accuracy"], "objective": 0.975},
        {"hpsearch.outcome": "complete", "note": f"trained against http://u:{SECRET}@h"},
        {"config.json": f'{{"alpha": 0.003, "storage": "postgresql://hp:{SECRET}@db/x"}}'},
        history,
    )
    waited = time.perf_counter() - start  # what the worker waits: the rest is in the background
    tracker.wait_finished()
    return run.run_id, waited


def test_ensure_study_run_is_idempotent_and_race_safe(server: MlflowServer) -> None:
    params = {"storage": f"postgresql://hp:{SECRET}@db/hpsearch", "budget": 50}
    first = ensure_study_run(server.uri, "race-study", params, tags={"owner": "ci"})
    again = ensure_study_run(server.uri, "race-study", params)
    assert again == first

    refs: list[StudyRunRef] = []
    barrier = threading.Barrier(4)

    def join(name: str) -> None:
        barrier.wait()
        refs.append(ensure_study_run(server.uri, name, params))

    threads = [threading.Thread(target=join, args=("fresh-race",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refs) == 4
    assert len({(r.experiment_id, r.parent_run_id) for r in refs}) == 1

    client = MlflowClient(server.uri)
    for name, ref in (("race-study", first), ("fresh-race", refs[0])):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None and experiment.experiment_id == ref.experiment_id
        parents = client.search_runs(
            [ref.experiment_id], filter_string="tags.`hpsearch.role` = 'study'"
        )
        assert [r.info.run_id for r in parents] == [ref.parent_run_id]
        parent = parents[0]
        assert parent.data.params["storage"] == "postgresql://hp:***@db/hpsearch"
        assert parent.data.params["budget"] == "50"
        assert parent.data.tags["hpsearch.study"] == name
    leaky = StudyRunRef("1", "r", f"http://u:{SECRET}@mlflow:5000", "s")
    assert SECRET not in repr(leaky) and "http://u:***@mlflow:5000" in repr(leaky)


def test_a_20_epoch_trial_is_logged_in_few_requests(server: MlflowServer, tmp_path: Path) -> None:
    ref = ensure_study_run(server.uri, "count-study", {"budget": 3})
    tracker = Tracker(ref, tmp_path / "spool", worker="host-1/w0")
    counts = []
    run_ids = []
    for number in range(3):
        before = len(api_requests(server))
        run_id, _ = run_trial(tracker, number)
        counts.append(len(requests_since(server, before)))
        run_ids.append(run_id)
    tracker.close()
    # create_run + one log_batch + the config.json PUT + terminate, for every trial.
    assert counts == [4, 4, 4], requests_since(server, 0)[-sum(counts) :]

    client = MlflowClient(server.uri)
    for number, run_id in enumerate(run_ids):
        assert run_id is not None
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == ref.parent_run_id
        assert tags["mlflow.runName"].startswith(f"trial-{number}: alpha=")  # + its config
        assert tags["hpsearch.study"] == "count-study"
        assert tags["hpsearch.trial_number"] == str(number)
        assert tags["hpsearch.attempt"] == "0"
        assert tags["hpsearch.worker"] == "host-1/w0"
        assert tags["hpsearch.outcome"] == "complete"
        assert run.data.params["alpha"] == "0.003"
        assert run.data.params["hidden_units"] == "64"
        for key in epoch_metrics(1):
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), key
        # a final value of an epoch metric does not add a 21st point to its history
        assert run.data.metrics["final/val_accuracy"] == pytest.approx(0.975)
        assert run.data.metrics["objective"] == pytest.approx(0.975)
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert artifacts == {"config.json"}  # the UI charts histories itself: no picture
        config = Path(client.download_artifacts(run_id, "config.json", str(tmp_path)))
        # no password anywhere: params, tags, artifacts
        assert SECRET not in config.read_text()
        assert SECRET not in repr(run.data.params) + repr(run.data.tags)
    assert not list((tmp_path / "spool").glob("*")), "nothing may be spooled while the server is up"


def test_retried_attempt_gets_its_own_run_and_nonfinite_metrics_are_kept(
    server: MlflowServer, tmp_path: Path
) -> None:
    ref = ensure_study_run(server.uri, "diverge-study", {})
    with Tracker(ref, tmp_path / "spool") as tracker:
        run = tracker.start_trial(4, 1, {"alpha": 10.0}, {})
        run.log_epoch(1, {"train_loss": 3.0, "val_loss": 2.0})
        run.log_epoch(2, {"train_loss": math.inf, "val_loss": math.nan})
        run.finish("FAILED", {"val_loss": math.nan}, {"hpsearch.reason": "loss became nan"})
    client = MlflowClient(server.uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["mlflow.runName"] == "trial-4-attempt-1: alpha=10"
    assert got.data.tags["hpsearch.nonfinite_metrics"] == "final/val_loss,train_loss,val_loss"
    val = {m.step: m.value for m in client.get_metric_history(run.run_id, "val_loss")}
    assert val[1] == 2.0 and math.isnan(val[2])
    train = {m.step: m.value for m in client.get_metric_history(run.run_id, "train_loss")}
    assert train[2] > 1e300  # MLflow stores inf as the largest float


def test_long_trials_are_flushed_in_the_background(server: MlflowServer, tmp_path: Path) -> None:
    ref = ensure_study_run(server.uri, "flush-study", {})
    client = MlflowClient(server.uri)
    with Tracker(ref, tmp_path / "spool", flush_interval_s=0.2) as tracker:
        run = tracker.start_trial(0, 0, {"alpha": 0.1}, {})
        run.log_epoch(1, {"train_loss": 1.0})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not client.get_metric_history(
            run.run_id, "train_loss"
        ):
            time.sleep(0.1)
        assert [m.step for m in client.get_metric_history(run.run_id, "train_loss")] == [1]
        assert client.get_run(run.run_id).data.params == {"alpha": "0.1"}
        run.log_epoch(2, {"train_loss": 0.5})
        run.finish("FINISHED", {}, {})
    assert [m.step for m in client.get_metric_history(run.run_id, "train_loss")] == [1, 2]


def test_mark_run_ended_kills_a_dead_attempt_with_its_reason(
    server: MlflowServer, tmp_path: Path
) -> None:
    ref = ensure_study_run(server.uri, "stale-study", {})
    tracker = Tracker(ref, tmp_path / "spool")
    run = tracker.start_trial(2, 0, {"alpha": 0.01}, {})
    reason = f"worker w3 stopped heartbeating (storage postgresql://u:{SECRET}@db/x)"
    mark_run_ended(server.uri, run.run_id, "KILLED", reason)
    got = MlflowClient(server.uri).get_run(run.run_id)
    assert got.info.status == "KILLED"
    assert got.data.tags["hpsearch.reason"] == reason.replace(SECRET, "***")
    assert got.info.end_time is not None
    with pytest.raises(ValueError, match="`status` must be one of"):
        mark_run_ended(server.uri, run.run_id, "DEAD", reason)


def test_update_study_best_logs_one_point_per_call(server: MlflowServer) -> None:
    ref = ensure_study_run(server.uri, "best-study", {})
    before = len(api_requests(server))
    update_study_best(ref, 0.91, trial_number=3, step=4)
    assert len(requests_since(server, before)) == 1
    update_study_best(ref, 0.95, trial_number=7, step=8)
    client = MlflowClient(server.uri)
    history = client.get_metric_history(ref.parent_run_id, "best_value")
    assert [(m.step, m.value) for m in history] == [(4, 0.91), (8, 0.95)]
    assert client.get_run(ref.parent_run_id).data.tags["best_trial"] == "7"


def test_default_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert default_tracking_uri(f"sqlite:///{tmp_path}/optuna.db") == ("http://mlflow:5000", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri, artifacts = default_tracking_uri(f"sqlite:///{tmp_path}/sub/optuna.db")
    assert uri == f"sqlite:///{tmp_path}/sub/mlflow.db"
    assert artifacts == (tmp_path / "sub" / "mlartifacts").as_uri()
    monkeypatch.chdir(tmp_path)
    uri, artifacts = default_tracking_uri("postgresql://u:pw@db/optuna")
    assert uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert artifacts == (tmp_path / "mlartifacts").as_uri()


def test_embedded_sql_store_without_a_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, artifacts = default_tracking_uri(f"sqlite:///{tmp_path}/optuna.db")
    ref = ensure_study_run(uri, "local-study", {"alpha_low": 1e-4}, artifact_location=artifacts)
    with Tracker(ref, tmp_path / "spool") as tracker:
        run_id, _ = run_trial(tracker, 0)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "val_loss")) == EPOCHS
    assert {a.path for a in client.list_artifacts(run_id)} == {"config.json"}
    assert (tmp_path / "mlartifacts").is_dir()


def test_the_run_is_created_off_the_trial_and_its_id_handed_back(
    server: MlflowServer, tmp_path: Path
) -> None:
    ref = ensure_study_run(server.uri, "created-study", {})
    seen: list[tuple[str, str]] = []
    with Tracker(ref, tmp_path / "spool") as tracker:
        run = tracker.start_trial(
            5, 1, {"alpha": 0.1}, {},
            on_created=lambda run_id: seen.append((threading.current_thread().name, run_id)),
        )  # fmt: skip
        run_id = run.wait_created()
        assert run_id is not None and seen == [(seen[0][0], run_id)]
        assert seen[0][0].startswith("hpsearch-mlflow")  # the sender, not the trial's thread
        run.finish("FINISHED", {"objective": 0.5}, {})
    assert find_trial_run(ref, 5, 1) == run_id  # found by its tags, as a stale trial's is
    assert find_trial_run(ref, 5, 0) is None
    assert find_trial_run(ref, 6, 1) is None


def test_a_hung_tracking_server_never_holds_up_a_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts connections and never answers: the trial starts, trains and
    finishes at once; only the background threads wait (then the run goes to the spool)."""
    import socket

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        ref = StudyRunRef("1", "parent", uri, "hung-study")
        tracker = Tracker(ref, tmp_path / "spool")
        started = time.perf_counter()
        run = tracker.start_trial(0, 0, {"alpha": 0.1}, {})
        start_s = time.perf_counter() - started
        for epoch in range(1, EPOCHS + 1):
            run.log_epoch(epoch, epoch_metrics(epoch))
        assert start_s < 1.0, start_s  # the create request alone waits 2 s for its timeout
        assert run.wait_created() is None  # timed out: the create op waits in the outbox
        run.finish("FINISHED", {"objective": 0.5}, {})
        tracker.close()
    (spooled,) = (tmp_path / "spool").glob("*.jsonl")
    ops = [line for line in spooled.read_text().splitlines()[1:]]
    assert '"create_run"' in ops[0] and '"terminate"' in ops[-1]
