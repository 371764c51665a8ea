"""Workers: exact budgets, outcomes, retries of dead or stopped workers, late results discarded.

Real SQLite files, real training on digits, real worker processes where a process must die.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.outcomes import Outcome, is_infrastructure_fault, value_outcome
from search.study import create_study
from search.worker import run_worker
from tests.support.study import (
    WILD_SPACE,
    finished,
    logs,
    request,
    sqlite_url,
    start_worker,
    trials,
    wait_for,
)


def _create(tmp_path: Path, name: str, **changes) -> str:
    url = sqlite_url(tmp_path)
    create_study(request(name, **changes).resolve(url), url)
    return url


def test_one_worker_runs_exactly_the_budget_and_records_each_trial(tmp_path: Path) -> None:
    url = _create(tmp_path, "b", n_trials=4)
    report = run_worker(url, "b")
    ts = trials(url, "b")
    assert [t.number for t in ts] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in ts)
    assert report.trials == [0, 1, 2, 3] and report.stop_reason == "the study's budget is met"
    for t in ts:
        assert t.user_attrs["outcome"] == "complete"
        assert t.user_attrs["config"]["alpha"] == t.params["alpha"]
        assert t.user_attrs["config"]["epochs"] == 3  # the study's [train] value
        assert t.user_attrs["config"]["optimizer"] == "momentum"  # the study's, not the space's
        assert t.intermediate_values == {}  # only written for a pruner (see worker.report)
    # A second worker on a finished study has nothing to do.
    assert run_worker(url, "b").trials == []


def test_diverged_configurations_count_toward_the_budget_and_are_not_retried(
    tmp_path: Path,
) -> None:
    url = _create(tmp_path, "wild", n_trials=6, space_toml=WILD_SPACE, train={"optimizer": "gd"})
    run_worker(url, "wild")
    ts = trials(url, "wild")
    assert len(ts) == 6 and len(finished(ts)) == 6  # no FAIL, no retry
    diverged = [t for t in ts if t.user_attrs["outcome"] == "diverged"]
    complete = [t for t in ts if t.user_attrs["outcome"] == "complete"]
    assert diverged and complete, [(t.params, t.user_attrs.get("reason")) for t in ts]
    for t in diverged:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["reason"]  # e.g. "gradient norm of layer 0 became inf at epoch 1"
        assert t.params["alpha"] > min(c.params["alpha"] for c in complete)


def test_outcome_table() -> None:
    assert Outcome.DIVERGED.state == TrialState.PRUNED
    assert Outcome.INFRA.state == TrialState.FAIL
    assert Outcome.PRUNED.mlflow_status == "KILLED"
    assert Outcome.DIVERGED.mlflow_status == "FAILED"
    assert value_outcome(float("nan"))[0] is Outcome.DIVERGED
    assert value_outcome(0.5) == (Outcome.COMPLETE, None)


@pytest.mark.parametrize(
    ("exc", "infra"),
    [
        (MemoryError(), True),
        (KeyboardInterrupt(), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (ConnectionError("reset"), True),
        (ValueError("bad shape"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (KeyError("x"), False),
    ],
)
def test_infrastructure_faults_are_told_apart_from_bugs(exc: BaseException, infra: bool) -> None:
    assert is_infrastructure_fault(exc) is infra


def test_oom_class_from_torch_is_infrastructure() -> None:
    import torch

    # A message no string rule matches: only the class can make this one infrastructure.
    message = "Tried to allocate 2.00 GiB"
    assert not is_infrastructure_fault(RuntimeError(message))
    assert is_infrastructure_fault(torch.cuda.OutOfMemoryError(message))


def test_the_median_pruner_prunes_and_pruned_trials_count(tmp_path: Path) -> None:
    url = _create(
        tmp_path, "p", n_trials=12, pruner="median", space_toml=WILD_SPACE,
        train={"epochs": 6, "optimizer": "gd"},
    )  # fmt: skip
    run_worker(url, "p")
    ts = trials(url, "p")
    assert len(finished(ts)) == 12 and len(ts) == 12
    outcomes = {t.user_attrs["outcome"] for t in ts}
    assert "complete" in outcomes
    for t in ts:
        if t.user_attrs["outcome"] == "pruned":
            assert t.state == TrialState.PRUNED and len(t.intermediate_values) < 6
        if t.user_attrs["outcome"] == "complete":
            assert sorted(t.intermediate_values) == [1, 2, 3, 4, 5, 6]  # one per epoch
            assert t.value == t.intermediate_values[6]


@pytest.mark.slow
def test_sigterm_fails_and_requeues_the_running_trial_at_once(tmp_path: Path) -> None:
    url = _create(tmp_path, "t", n_trials=2, train={"epochs": 2000})
    proc = start_worker("t", url, tmp_path)
    try:
        wait_for(lambda: _training(url, "t"), 60, "a trial to train")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
    ts = trials(url, "t")
    failed = [t for t in ts if t.state == TrialState.FAIL]
    waiting = [t for t in ts if t.state == TrialState.WAITING]
    assert len(failed) == 1 and len(waiting) == 1, logs(tmp_path)
    assert failed[0].user_attrs["outcome"] == "infra"
    assert waiting[0].params == failed[0].params
    assert waiting[0].user_attrs["retry_of"] == failed[0].number
    assert "mlflow_run_id" not in waiting[0].user_attrs  # the retry is a fresh attempt


@pytest.mark.slow
def test_a_worker_paused_past_the_grace_period_discards_its_late_result(tmp_path: Path) -> None:
    # Budget 1: the paused worker holds the only trial; the survivor must retry it.
    url = _create(tmp_path, "z", n_trials=1, train={"epochs": 800})
    paused = start_worker("z", url, tmp_path)
    try:
        first = wait_for(lambda: _training(url, "z"), 60, "the first worker to train")
        paused.send_signal(signal.SIGSTOP)
        survivor = threading.Thread(target=run_worker, args=(url, "z"))
        survivor.start()
        # The survivor fails the silent trial and re-queues it; then the paused worker wakes.
        wait_for(
            lambda: any(t.user_attrs.get("retry_of") == first.number for t in trials(url, "z")),
            60,
            "the stale trial to be re-queued",
        )
        paused.send_signal(signal.SIGCONT)
        assert paused.wait(timeout=120) == 0, logs(tmp_path)
        survivor.join(timeout=120)
    finally:
        paused.send_signal(signal.SIGCONT)
        paused.kill()
    ts = trials(url, "z")
    assert [t.state for t in ts] == [TrialState.FAIL, TrialState.COMPLETE]
    assert ts[1].params == first.params and ts[1].user_attrs["retry_of"] == first.number
    assert "its result is discarded" in logs(tmp_path)
    assert "0 trial(s) (none); 1 discarded" in logs(tmp_path)


@pytest.mark.slow
def test_one_and_three_workers_sample_the_same_configurations(tmp_path: Path) -> None:
    one, three = tmp_path / "one", tmp_path / "three"
    one.mkdir()
    three.mkdir()
    url_one = _create(one, "same", n_trials=8, seed=7)
    url_three = _create(three, "same", n_trials=8, seed=7)
    # A worker claims about a second of trials at once, so a fast one could take all eight;
    # capped at three each, the three workers must share them, however they are scheduled.
    procs = [start_worker("same", url_three, three, "--max-trials", "3") for _ in range(3)]
    run_worker(url_one, "same")
    for proc in procs:
        assert proc.wait(timeout=240) == 0, logs(three)
    a, b = trials(url_one, "same"), trials(url_three, "same")
    assert len(a) == len(b) == 8
    assert sorted(t.number for t in b) == list(range(8))  # no duplicates, no overshoot
    assert {t.number: t.params["alpha"] for t in a} == {t.number: t.params["alpha"] for t in b}
    workers = {t.user_attrs["worker"] for t in b}
    assert len(workers) == 3  # the work was really shared


def _training(url: str, name: str) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial whose worker has started training it (its attrs are set just before),
    after a pause that puts the caller well inside the training loop."""
    import time

    for t in trials(url, name):
        if t.state == TrialState.RUNNING and "worker" in t.user_attrs:
            time.sleep(0.5)
            return t
    return None


def test_optuna_cli_reads_the_study(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = _create(tmp_path, "o", n_trials=2)
    run_worker(url, "o")
    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run(
        [str(optuna_cli), "trials", "--storage", url, "--study-name", "o", "-f", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    rows = json.loads(out.stdout)
    assert [r["number"] for r in rows] == [0, 1]
    assert all(r["state"] == "COMPLETE" for r in rows)
    # The study names its metric (`set_metric_names`): Optuna's CLI keys the value by it.
    assert all(set(r["value"]) == {"val_accuracy"} for r in rows), rows
    values = [r["value"]["val_accuracy"] for r in rows]
    # Optuna's own reading of the best trial follows the study's direction (val_accuracy: max).
    assert values[0] != values[1]  # else any trial would do
    best = rows[values.index(max(values))]
    assert optuna.load_study(study_name="o", storage=url).best_trial.number == best["number"]


def test_a_result_whose_commit_was_acknowledged_late_is_not_written_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart can drop the connection after a commit went through and before the
    client heard of it (CI saw it in the PostgreSQL-restart scenario). Here every write of
    results commits, then raises the error a dropped connection raises: the worker retries,
    sees its own results already there, and goes on; nothing is written twice, nothing
    crashes."""
    import sqlalchemy as sa

    from search.trial_queue import TrialQueue

    real_record = TrialQueue.record
    dropped: list[int] = []

    def record_then_drop(self, results):
        statuses = real_record(self, results)
        fresh = [r.trial_id for r in results if r.trial_id not in dropped]
        if fresh:
            dropped.extend(fresh)
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return statuses

    monkeypatch.setattr(TrialQueue, "record", record_then_drop)
    url = _create(tmp_path, "acked", n_trials=3)
    report = run_worker(url, "acked")
    ts = trials(url, "acked")
    assert sorted(dropped) == sorted(t._trial_id for t in ts)  # every result was dropped once
    assert report.trials == [0, 1, 2] and report.outcomes["complete"] == 3
    assert [t.state for t in ts] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["outcome"] == "complete" for t in ts)


def test_a_lost_connection_right_after_ask_leaves_no_orphan_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first claim commits, then fails as a dropped connection does. Retrying the claim
    blindly would claim a second trial and leave the first RUNNING under a live worker that
    does not know it holds it: nobody would train it until the grace period failed it. The
    retry takes the trials the lost claim gave it instead."""
    import sqlalchemy as sa

    from search.trial_queue import TrialQueue

    real = TrialQueue.claim
    failed: list[int] = []

    def drop_first(self, *args, **kwargs):
        claim = real(self, *args, **kwargs)
        if not failed:
            failed.extend(t.number for t in claim.trials)
            raise sa.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return claim

    monkeypatch.setattr(TrialQueue, "claim", drop_first)
    url = _create(tmp_path, "orphan", n_trials=2)
    reports: list = []
    # A daemon: when the bug is back, the stuck worker must not keep pytest from exiting.
    worker = threading.Thread(target=lambda: reports.append(run_worker(url, "orphan")), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), f"the worker waits forever: {trials(url, 'orphan')}"
    assert failed == [0] and reports[0].trials == [0, 1]
    assert [t.state for t in trials(url, "orphan")] == [TrialState.COMPLETE] * 2
