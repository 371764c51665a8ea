"""Scenario 9: four workers race for a budget of 40, five times over.

Tiny trials (wine, 1 epoch: milliseconds of training) make the workers spend nearly all their
time in the budget lock, `ask` and `tell`: the worst case for an overshoot, a duplicate trial
number or a lost run. PostgreSQL storage (the multi-host setup) and a real `mlflow server`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optuna.trial import TrialState

from tests.conftest import MlflowServer
from tests.faults.support import (
    WorkerPool,
    assert_study_whole,
    create,
    fault_request,
    trial_runs,
)

BUDGET = 40
WORKERS = 4
REPEATS = 5
WINE = {"dataset": "wine", "epochs": 1, "batch_size": 32}


@pytest.mark.slow
def test_four_workers_finish_exactly_the_budget_every_time(
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
    make_pool: Callable[..., WorkerPool],
) -> None:
    storage, server = postgres_db(), mlflow_server_factory()
    for repeat in range(REPEATS):
        spec = create(
            storage,
            fault_request(f"race-{repeat}", BUDGET, tracking_uri=server.uri, train=WINE),
        )
        pool = make_pool(server.uri, HPSEARCH_N_WORKERS=str(WORKERS))
        for _ in range(WORKERS):
            pool.start(spec.name, storage)
        assert pool.wait_all(timeout=240) == [0] * WORKERS, pool.text()

        ts = assert_study_whole(storage, spec)
        assert len(ts) == BUDGET, f"repeat {repeat}: {len(ts)} trials"  # nothing failed either
        assert sorted(t.number for t in ts) == list(range(BUDGET))
        assert all(t.state == TrialState.COMPLETE for t in ts)
        workers = {t.user_attrs["worker"] for t in ts}
        assert len(workers) >= 2, f"repeat {repeat}: one worker did everything"

        runs = trial_runs(server.uri, spec)
        numbers = sorted(int(r.data.tags["hpsearch.trial_number"]) for r in runs)
        assert numbers == list(range(BUDGET)), f"repeat {repeat}: child runs {numbers}"
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert {t.user_attrs["mlflow_run_id"] for t in ts} == {r.info.run_id for r in runs}
