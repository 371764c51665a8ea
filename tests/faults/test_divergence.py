"""Scenario 7: a non-finite loss at epoch k is a result (diverged), not a crash.

A space whose learning rate reaches 1e3 with plain gradient descent: the upper part of the
range blows up. The worker runs in this process (`run_worker`: the same code a worker process
runs), logging to a real `mlflow server`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from optuna.trial import TrialState

from search.worker import run_worker
from tests.conftest import MlflowServer
from tests.faults.support import (
    WILD_SPACE,
    assert_study_whole,
    assert_tracking_whole,
    create,
    fault_request,
    metric_lengths,
    runs_by_attempt,
    trial_runs,
)

EPOCHS = 4


def test_a_diverged_trial_is_recorded_with_its_reason_and_the_study_goes_on(
    postgres_db: Callable[[], str], mlflow_server_factory: Callable[..., MlflowServer]
) -> None:
    storage, server = postgres_db(), mlflow_server_factory()
    request = fault_request(
        "diverge", 8, tracking_uri=server.uri, space_toml=WILD_SPACE, seed=3,
        # No gradient-norm ceiling: the run goes on until a value overflows to inf/nan.
        train={"optimizer": "gd", "epochs": EPOCHS, "explode_threshold": 1e300},
    )  # fmt: skip
    spec = create(storage, request)
    report = run_worker(storage, spec.name)
    assert report.stop_reason == "the study's budget is met"

    ts = assert_study_whole(storage, spec)  # diverged trials count; none is retried
    assert not [t for t in ts if t.state == TrialState.FAIL]
    diverged = [t for t in ts if t.user_attrs["outcome"] == "diverged"]
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    assert diverged and complete, [(t.params, t.user_attrs.get("reason")) for t in ts]
    # The study goes on: a configuration after the first divergence still completes.
    assert max(t.number for t in complete) > min(t.number for t in diverged)

    runs = runs_by_attempt(trial_runs(server.uri, spec))
    for t in diverged:
        assert t.state == TrialState.PRUNED and t.value is None
        reason = t.user_attrs["reason"]
        assert re.search(r"became -?(nan|inf) at epoch \d+$", reason), reason
        k = int(re.search(r"epoch (\d+)", reason).group(1))
        assert 1 <= k <= EPOCHS
        run = runs[(t.number, "0")]
        assert run.info.status == "FAILED"
        assert run.data.tags["outcome"] == "diverged"
        assert run.data.tags["reason"] == reason
        # The epochs before the blow-up are kept (finite points; a non-finite one is tagged).
        lengths = metric_lengths(server.uri, run.info.run_id, ("train_loss",))
        assert lengths["train_loss"] >= k - 1, (lengths, reason)
    assert_tracking_whole(server.uri, spec, ts, EPOCHS)
