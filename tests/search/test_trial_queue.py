"""The trial queue on Optuna's tables: what it writes is what Optuna reads, claims never overlap,
the budget is exact, late results are refused. Real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.optuna_internals import HEARTBEATS, PARAMS, TRIALS, USER_ATTRS, VALUES, rdb_storage
from search.storage import open_storage
from search.trial_queue import Draw, Recorded, TrialQueue, TrialResult

ALPHA = FloatDistribution(1e-4, 1.0, log=True)


def _draw(number: int) -> Draw:
    return Draw({"alpha": 10 ** -(1 + number % 3)}, {"alpha": ALPHA})


def _queue(url: str, name: str = "q") -> tuple[TrialQueue, optuna.Study]:
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    return TrialQueue(storage.engine, storage.get_study_id_from_name(name)), study


def test_the_private_tables_are_the_ones_optuna_uses() -> None:
    """Fails loudly when a pinned upgrade of Optuna renames what the queue writes."""
    assert TRIALS.name == "trials" and {"trial_id", "number", "study_id", "state"} <= set(
        TRIALS.c.keys()
    )
    assert {"param_name", "param_value", "distribution_json"} <= set(PARAMS.c.keys())
    assert {"objective", "value", "value_type"} <= set(VALUES.c.keys())
    assert {"key", "value_json"} <= set(USER_ATTRS.c.keys())
    assert {"trial_id", "heartbeat"} <= set(HEARTBEATS.c.keys())


def test_a_claimed_trial_reads_back_through_optuna(tmp_path: Path) -> None:
    queue, study = _queue(f"sqlite:///{tmp_path}/q.db")
    claim = queue.claim(2, budget=5, draw=_draw, attrs_of=lambda t: {"worker": "w1"})
    assert [t.number for t in claim.trials] == [0, 1]
    ts = study.get_trials()
    assert [t.state for t in ts] == [TrialState.RUNNING] * 2
    assert ts[1].params == {"alpha": 0.01} and ts[1].distributions == {"alpha": ALPHA}
    assert ts[0].user_attrs == {"worker": "w1"}
    # Heartbeats as Optuna keeps them: a grace of 0 s makes both stale to Optuna itself.
    rdb = rdb_storage(study._storage)
    rdb.heartbeat_interval, rdb.grace_period = 1, 0
    import time

    time.sleep(1.1)
    assert sorted(rdb._get_stale_trial_ids(study._study_id)) == sorted(
        t.trial_id for t in claim.trials
    )

    first, second = claim.trials
    status = queue.record(
        [
            TrialResult(first.trial_id, TrialState.COMPLETE, 0.75, {"outcome": "complete"}),
            TrialResult(second.trial_id, TrialState.PRUNED, None, {"outcome": "diverged"}),
        ]
    )
    assert status == {first.trial_id: Recorded.WRITTEN, second.trial_id: Recorded.WRITTEN}
    ts = study.get_trials()
    assert [t.state for t in ts] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study.best_trial.number == 0 and study.best_value == 0.75
    assert ts[0].user_attrs == {"worker": "w1", "outcome": "complete"}
    assert ts[0].datetime_complete is not None and ts[0].duration is not None


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_concurrent_claimers_never_share_a_trial_and_meet_the_budget_exactly(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_db")()
        if dialect == "postgresql"
        else (f"sqlite:///{tmp_path}/q.db")
    )
    _queue(url)  # create the study once
    budget, got, errors = 60, [], []

    def claimer() -> None:
        queue, _ = _queue(url)  # its own engine, its own connections
        try:
            while True:
                claim = queue.claim(3, budget=budget, draw=_draw)
                if not claim.trials:
                    return
                got.extend(t.number for t in claim.trials)
                queue.record(
                    [TrialResult(t.trial_id, TrialState.COMPLETE, 0.5, {"outcome": "complete"})
                     for t in claim.trials]
                )  # fmt: skip
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(got) == list(range(budget))  # each number once: no overlap, no overshoot
    _, study = _queue(url)
    assert len(study.get_trials()) == budget
    assert {t.params["alpha"] for t in study.get_trials()} == {0.1, 0.01, 0.001}


def test_fail_requeues_with_the_same_params_and_a_late_result_is_refused(tmp_path: Path) -> None:
    queue, study = _queue(f"sqlite:///{tmp_path}/q.db")
    (trial,) = queue.claim(1, budget=1, draw=_draw).trials
    failed = queue.fail({trial.trial_id: "worker w1 stopped sending heartbeats"}, max_retries=3)
    assert [(f.number, f.requeued, f.attempt) for f in failed] == [(0, True, 0)]
    assert queue.fail({trial.trial_id: "again"}, max_retries=3) == []  # not RUNNING any more
    # The late result of the dead attempt is refused; the retry trains the same parameters.
    late = TrialResult(trial.trial_id, TrialState.COMPLETE, 0.9, {"outcome": "complete"})
    assert queue.record([late]) == {trial.trial_id: Recorded.LATE}
    ts = study.get_trials()
    assert [t.state for t in ts] == [TrialState.FAIL, TrialState.WAITING]
    assert ts[0].value is None and ts[0].user_attrs["outcome"] == "infra"
    assert ts[1].params == ts[0].params and ts[1].user_attrs["retry_of"] == 0
    assert ts[1].system_attrs["retry_history"] == [0]
    # Budget 1 is met by the retry alone: no fresh trial, the WAITING one is claimed.
    (retry,) = queue.claim(5, budget=1, draw=_draw).trials
    assert (retry.number, retry.retry_of, retry.attempt) == (1, 0, 1)
    assert retry.params == trial.params


def test_a_result_written_twice_is_recognised_as_already_there(tmp_path: Path) -> None:
    queue, study = _queue(f"sqlite:///{tmp_path}/q.db")
    (trial,) = queue.claim(1, budget=1, draw=_draw).trials
    result = TrialResult(trial.trial_id, TrialState.COMPLETE, 0.5, {"outcome": "complete"})
    assert queue.record([result]) == {trial.trial_id: Recorded.WRITTEN}
    assert queue.record([result]) == {trial.trial_id: Recorded.ALREADY}  # a retried commit
    assert len(study.get_trials()[0].values) == 1


def test_released_trials_go_back_to_the_queue_and_a_lost_claim_is_adopted(
    tmp_path: Path,
) -> None:
    queue, study = _queue(f"sqlite:///{tmp_path}/q.db")
    claim = queue.claim(3, budget=3, draw=_draw, attrs_of=lambda t: {"worker": "w1"})
    queue.release([t.trial_id for t in claim.trials[1:]])
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] + [TrialState.WAITING] * 2
    assert "worker" not in study.get_trials()[1].user_attrs
    adopted = queue.adopt("w1")
    assert [t.number for t in adopted] == [0] and adopted[0].params == claim.trials[0].params
    assert queue.adopt("w2") == []
