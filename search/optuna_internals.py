"""The private Optuna names `search` relies on, all in one place.

Optuna keeps these out of its public API, so a minor release may move or change them. Each
is reached only through this module, and tests/search/test_optuna_internals.py checks the
behaviour we rely on against the pinned Optuna (constraints.txt): an upgrade that changes one
fails there, by name, not somewhere deep in a study.

- `SearchSpaceTransform` (`optuna._transform._SearchSpaceTransform`): maps a distribution to
  a box in which a uniform draw is the right draw (log scales, integer steps) and back. It is
  exactly what `RandomSampler` does, which is what the keyed samplers must match.
- `study_storage(study)` (`Study._storage`, `Study._study_id`): the storage and id of a study,
  for study-level system attributes, which `Study` exposes only read-only.
- The relational tables (`optuna.storages._rdb.models`) and the private writer of trial
  attributes: the worker path reads and writes Optuna's own tables with set-based
  statements (see `search.trial_queue`), because Optuna's public storage API costs one
  transaction per parameter, attribute and state change (12.6 commits per trial, measured).
  What is written is what Optuna's own `RDBStorage` writes (checked by reading it back
  through Optuna's public API in tests/search/test_trial_queue.py).
- `optuna_trial(study, trial_id)`: an `optuna.Trial` over an existing trial row.
- `open_joining_storage(...)`: an `RDBStorage` over a database whose tables exist, without
  `RDBStorage.__init__`'s schema bookkeeping (`create_all`'s per-table checks, the
  `version_info` row, alembic's import and stamp: ~0.4 s of a worker's start-up, measured).
  Optuna builds its `_VersionManager` unconditionally; the one swapped in here does the same
  work on first use instead.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

import optuna
import sqlalchemy as sa
from optuna._transform import _SearchSpaceTransform as SearchSpaceTransform
from optuna.storages import BaseStorage, RDBStorage

# Private API (optuna is pinned in constraints.txt); see the module docstring.
from optuna.storages._rdb import models as _models
from optuna.storages._rdb import storage as _rdb_storage


def study_storage(study: optuna.Study) -> tuple[BaseStorage, int]:
    """The storage a study object talks to, and the study's id in it."""
    return study._storage, study._study_id


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


def optuna_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """An `optuna.Trial` over an existing RUNNING trial row (for pruning and adaptive samplers;
    `Study.ask` would create a new trial).

    The row was written by `TrialQueue.claim`, not through this study's storage, and Optuna's
    `_CachedStorage` refuses `suggest_*` on a trial id it has not read (a `KeyError` from
    `set_trial_param`): read the study's new trials into its cache first (one query, on the
    adaptive path only; the sampler reads them all anyway).
    """
    import optuna

    storage: Any = study._storage
    known = getattr(storage, "_trial_id_to_study_id_and_number", None)
    if known is not None and trial_id not in known:
        storage.get_all_trials(study._study_id, deepcopy=False)
    return optuna.trial.Trial(study, trial_id)


class _DeferredVersionManager(_rdb_storage._VersionManager):
    """Optuna's `_VersionManager`, its set-up (a `version_info` query, importing alembic and
    reading its revision) postponed to the first method called: a worker never calls one."""

    def __init__(self, url: str, engine: Any, scoped_session: Any) -> None:
        self.url = url
        self.engine = engine
        self.scoped_session = scoped_session
        self._ready = False

    def _set_up(self) -> None:
        if not self._ready:
            self._init_version_info_model()
            self._init_alembic()
            self._ready = True

    def check_table_schema_compatibility(self) -> None:
        self._set_up()
        super().check_table_schema_compatibility()

    def get_current_version(self) -> str:
        self._set_up()
        return super().get_current_version()

    def get_head_version(self) -> str:
        self._set_up()
        return super().get_head_version()

    def get_all_versions(self) -> list[str]:
        self._set_up()
        return super().get_all_versions()

    def upgrade(self) -> None:
        self._set_up()
        super().upgrade()


# `RDBStorage.__init__` reads the module's `_VersionManager` name: swapped for one call, under
# a lock so that two threads opening storages at once each get the class they asked for.
_SWAP = threading.Lock()


def open_joining_storage(url: str, **kwargs: Any) -> RDBStorage:
    """`RDBStorage(url, **kwargs)` for a database that has Optuna's tables: no table creation,
    no schema check, and the version bookkeeping deferred (see `_DeferredVersionManager`)."""
    with _SWAP:
        original = _rdb_storage._VersionManager
        _rdb_storage._VersionManager = _DeferredVersionManager  # type: ignore[misc]
        try:
            return RDBStorage(
                url, skip_table_creation=True, skip_compatibility_check=True, **kwargs
            )
        finally:
            _rdb_storage._VersionManager = original  # type: ignore[misc]


def has_optuna_tables(storage: RDBStorage) -> bool:
    """Optuna's tables exist in the storage's database (one cheap query)."""
    try:
        with storage.engine.connect() as conn:
            conn.execute(sa.select(STUDIES.c.study_id).limit(0))
        return True
    except (sa.exc.ProgrammingError, sa.exc.OperationalError):
        return False


__all__ = [
    "HEARTBEATS",
    "INTERMEDIATE",
    "PARAMS",
    "STUDIES",
    "SYSTEM_ATTRS",
    "TRIALS",
    "USER_ATTRS",
    "VALUES",
    "SearchSpaceTransform",
    "has_optuna_tables",
    "open_joining_storage",
    "optuna_trial",
    "rdb_storage",
    "set_trial_user_attrs",
    "stored_value",
    "study_storage",
    "trial_id_of",
    "utc_now",
]
