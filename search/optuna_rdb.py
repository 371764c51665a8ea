"""Optuna's relational tables and the private attributes hpsearch reaches, all in one place.

The worker path reads and writes Optuna's own tables (`trials`, `trial_params`, ...) with
set-based statements, because Optuna's public storage API costs one transaction per parameter,
attribute and state change (12.6 commits per trial, measured): a claim, a heartbeat and a
result of many trials each become one transaction here. Every private name this needs is bound
below, so a pinned upgrade that moves one fails at import and in `tests/search/
test_optuna_rdb.py`, not in the middle of a study. What is written is exactly what Optuna's
own `RDBStorage` writes (checked there by reading it back through Optuna's public API).
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from optuna.storages import RDBStorage

# Private API (optuna is pinned in constraints.txt); see the module docstring.
from optuna.storages._rdb import models as _models

TRIALS: sa.Table = _models.TrialModel.__table__
PARAMS: sa.Table = _models.TrialParamModel.__table__
VALUES: sa.Table = _models.TrialValueModel.__table__
USER_ATTRS: sa.Table = _models.TrialUserAttributeModel.__table__
SYSTEM_ATTRS: sa.Table = _models.TrialSystemAttributeModel.__table__
HEARTBEATS: sa.Table = _models.TrialHeartbeatModel.__table__
INTERMEDIATE: sa.Table = _models.TrialIntermediateValueModel.__table__
STUDIES: sa.Table = _models.StudyModel.__table__


def stored_value(value: float) -> tuple[float | None, Any]:
    """A trial value as Optuna stores it (infinities as a type, not a float)."""
    return _models.TrialValueModel.value_to_stored_repr(value)


def utc_now() -> datetime.datetime:
    """Trial datetimes are stored as naive UTC (see Optuna's `TrialModel`)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rdb_storage(storage: Any) -> RDBStorage:
    """The `RDBStorage` under Optuna's caching wrapper (`Study._storage` may be either)."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage):
        raise TypeError(f"an RDBStorage is required, but got {type(backend).__name__}")
    return backend


def trial_id_of(trial: Any) -> int:
    """The storage id of an `optuna.Trial` (Optuna exposes only its number publicly)."""
    return int(trial._trial_id)


def set_trial_user_attrs(storage: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    """Several user attributes of a RUNNING trial in one transaction, through Optuna's own
    (private) writer: it refuses a finished trial with `UpdateFinishedTrialError`."""
    from optuna.storages._rdb.storage import _create_scoped_session

    backend = rdb_storage(storage)
    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(
                session, _models.TrialUserAttributeModel, trial_id, key, value
            )


def optuna_trial(study: Any, trial_id: int) -> Any:
    """An `optuna.Trial` over an existing RUNNING trial row (for pruning and adaptive samplers;
    `Study.ask` would create a new trial)."""
    import optuna

    return optuna.trial.Trial(study, trial_id)


def study_id_of(study: Any) -> int:
    return int(study._study_id)


def storage_of(study: Any) -> Any:
    return study._storage
