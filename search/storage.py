"""The Optuna storage a study lives in: URL resolution, safe engines, heartbeats, the budget lock.

A storage URL comes from `--storage`, else `HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db` in
the working directory (the embedded default: no server). Two dialects are supported, because the
budget lock needs a cross-process lock the database (or the file system) provides:

- SQLite: several local worker processes share one file. WAL mode lets readers and one writer
  work at once, and a 60 s busy timeout makes a writer wait for the lock instead of failing
  with "database is locked". The budget lock is an `fcntl.flock` on `<db>.lock`.
- PostgreSQL: many hosts. `pool_pre_ping` replaces connections the server dropped; the budget
  lock is `pg_advisory_lock` keyed by the study name, held on a dedicated connection.

Passwords never reach messages: every URL shown to a user goes through `redact_url`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL, make_url

from search.errors import InfrastructureError, StudyError
from search.redact import redact

_logger = logging.getLogger("search.storage")
T = TypeVar("T")

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"
CONNECT_TIMEOUT_ENV = "HPSEARCH_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 30.0
SUPPORTED_DIALECTS = ("sqlite", "postgresql")

StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def resolve_storage_url(url: str | None = None) -> str:
    """`url` if given, else `$HPSEARCH_STORAGE`, else the embedded SQLite default."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***`; unparseable text is hidden after `://`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}***" if sep else "***"


def parse_storage_url(url: str) -> URL:
    """Check a storage URL's form and dialect without connecting; `StudyError` names the rule."""
    try:
        parsed = make_url(url)
    except Exception:
        raise StudyError(
            f"the storage URL must be a SQLAlchemy URL such as {DEFAULT_STORAGE!r} or "
            f"'postgresql://user@host:5432/db', but got {redact_url(url)!r}"
        ) from None
    dialect = parsed.get_backend_name()
    if dialect not in SUPPORTED_DIALECTS:
        raise StudyError(
            f"the storage URL's database must be one of {list(SUPPORTED_DIALECTS)}, "
            f"but got {dialect!r} in {redact_url(url)!r}"
        )
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StudyError(
                "the storage must be a SQLite *file* that worker processes can share, "
                f"but got an in-memory database {redact_url(url)!r}; use e.g. {DEFAULT_STORAGE!r}"
            )
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StudyError(
                f"the SQLite storage's directory must exist, but got {str(parent)!r} "
                f"(from {redact_url(url)!r})"
            )
    return parsed


def absolute_storage_url(url: str) -> str:
    """A SQLite URL with an absolute path, so processes started elsewhere find the same file."""
    parsed = parse_storage_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database)).expanduser().resolve()
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def connect_timeout_s() -> float:
    raw = os.environ.get(CONNECT_TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise StudyError(
            f"`{CONNECT_TIMEOUT_ENV}` must be a number of seconds >= 0, but got {raw!r}"
        )
    return value


@dataclass(frozen=True)
class Heartbeat:
    """How often a worker proves it is alive, and how long a silent trial may stay RUNNING.

    Optuna takes whole seconds. A grace period of several intervals tolerates a slow database
    or a long garbage-collection pause without failing a healthy trial.
    """

    interval_s: int = 5
    grace_s: int = 20

    def __post_init__(self) -> None:
        if self.interval_s < 1:
            raise StudyError(
                f"`heartbeat_interval >= 1` (seconds) must hold, but got {self.interval_s}"
            )
        if self.grace_s <= self.interval_s:
            raise StudyError(
                "`grace_period > heartbeat_interval` must hold (or a live worker's trial is "
                f"failed between two heartbeats), but got ({self.grace_s=}, {self.interval_s=})"
            )


def _sqlite_prepare(parsed: URL) -> None:
    # WAL is a property of the database file: set once, every later connection uses it.
    path = Path(str(parsed.database)).expanduser()
    conn = sqlite3.connect(path, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NORMAL is durable across process crashes in WAL mode (only an OS crash may lose the last
    # commits) and avoids an fsync per commit, which is most of a small transaction's cost.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def engine_kwargs(parsed: URL) -> dict[str, Any]:
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def open_storage(
    url: str,
    *,
    heartbeat: Heartbeat | None = None,
    stale_trial_callback: StaleTrialCallback | None = None,
    timeout_s: float | None = None,
) -> RDBStorage:
    """An `RDBStorage` for `url`, retrying an unreachable database for up to `timeout_s`.

    Raises `StudyError` for a malformed URL (nothing is attempted) and `InfrastructureError`
    when the database stays unreachable (nothing is created).
    """
    parsed = parse_storage_url(url)
    timeout = connect_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            if parsed.get_backend_name() == "sqlite":
                _sqlite_prepare(parsed)
            with warnings.catch_warnings():
                # heartbeat_interval is "experimental" in Optuna; the warning would reach users.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs(parsed),
                    heartbeat_interval=heartbeat.interval_s if heartbeat else None,
                    grace_period=heartbeat.grace_s if heartbeat else None,
                    heartbeat_stale_trial_callback=stale_trial_callback if heartbeat else None,
                )
            if parsed.get_backend_name() == "sqlite":
                sa.event.listen(storage.engine, "connect", _sqlite_on_connect)
                storage.engine.dispose()  # pooled connections predate the listener
            return storage
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sqlite3.OperationalError) as exc:
            if time.monotonic() + delay > deadline:
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
                raise InfrastructureError(
                    f"the storage {redact_url(url)!r} was unreachable for {timeout:g} s "
                    f"(set {CONNECT_TIMEOUT_ENV} to wait longer): {redact_url_in(reason, url)}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def redact_url_in(text: str, url: str) -> str:
    """`text` with `url`'s password (if any) masked: driver errors sometimes echo it."""
    try:
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text


# --- riding out a database restart ---------------------------------------------------------------


def is_transient_storage_error(exc: BaseException) -> bool:
    """A lost or refused connection (a restart, a failover), not a bad write: retrying helps.

    Optuna wraps a failed commit in `StorageInternalError` whatever the cause (a dropped
    connection and a too-long value alike); only the connection-level cause is transient.
    """
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        exc = exc.__cause__ or exc
    return isinstance(
        exc, sa.exc.OperationalError | sa.exc.InterfaceError | sqlite3.OperationalError
    )


def retry_transient(fn: Callable[[], T], what: str, timeout_s: float | None = None) -> T:
    """`fn()`, called again while the database is unreachable, for up to `timeout_s` seconds
    (default `$HPSEARCH_CONNECT_TIMEOUT`); then `InfrastructureError` naming `what`.

    `pool_pre_ping` replaces connections the server dropped, but a statement already in flight
    when the server went away fails: a worker must not die of it while the server restarts.
    """
    timeout = connect_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient_storage_error(exc):
                raise
            cause = exc.__cause__ or exc
            reason = str(getattr(cause, "orig", cause)).strip().splitlines()[0][:200]
            if time.monotonic() + delay > deadline:
                raise InfrastructureError(
                    f"the storage was unreachable for {timeout:g} s while {what} (set "
                    f"{CONNECT_TIMEOUT_ENV} to wait longer): {redact(reason)}"
                ) from None
            _logger.warning("storage unreachable while %s, retrying: %s", what, redact(reason))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# --- writing a trial's attributes ---------------------------------------------------------------


def set_user_attrs(storage: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    """Several user attributes of a RUNNING trial in one transaction (Optuna: one per key).

    A trial records about ten attributes; one commit instead of ten is most of a worker's
    per-trial database time on PostgreSQL. Uses RDBStorage internals (Optuna is pinned in
    constraints.txt); any other storage gets one call per key. Raises Optuna's
    `UpdateFinishedTrialError` when the trial is already finished (e.g. failed as stale).
    """
    backend = getattr(storage, "_backend", storage)  # unwrap Optuna's _CachedStorage
    write = getattr(backend, "_set_trial_attr_without_commit", None)
    if not isinstance(backend, RDBStorage) or write is None:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    from optuna.storages._rdb.models import TrialUserAttributeModel
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            write(session, TrialUserAttributeModel, trial_id, key, value)


# --- counting trials --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialCounts:
    """A study's trials by state. PRUNED holds both pruned and diverged trials (both finished)."""

    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        """Trials that count toward the budget: a real result of their configuration."""
        return self.complete + self.pruned

    @property
    def live(self) -> int:
        """Finished plus those that will finish: a new trial is asked only while this < budget."""
        return self.finished + self.running + self.waiting


def count_trials(storage: RDBStorage, study_id: int) -> TrialCounts:
    """One GROUP BY query, not a load of every trial (this runs before each ask)."""
    # Optuna's table model is private API; it is the only way to count without loading trials.
    from optuna.storages._rdb.models import TrialModel

    query = (
        sa.select(TrialModel.state, sa.func.count())
        .where(TrialModel.study_id == study_id)
        .group_by(TrialModel.state)
    )
    with storage.engine.connect() as conn:
        by_state = {TrialState[str(getattr(s, "name", s))]: int(n) for s, n in conn.execute(query)}
    return TrialCounts(
        complete=by_state.get(TrialState.COMPLETE, 0),
        pruned=by_state.get(TrialState.PRUNED, 0),
        running=by_state.get(TrialState.RUNNING, 0),
        waiting=by_state.get(TrialState.WAITING, 0),
        failed=by_state.get(TrialState.FAIL, 0),
    )


# --- the budget lock ----------------------------------------------------------------------------


class BudgetLock:
    """A cross-process mutex around "count the trials, then ask one", per study.

    Without it two workers can both see `live == budget - 1` and both ask, overshooting the
    budget. With it, asks are serialized; training runs outside the lock.
    """

    def __init__(self, url: str, study_name: str) -> None:
        self._parsed = parse_storage_url(url)
        self._url = url
        self._study_name = study_name
        self._file: Any = None
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None

    @property
    def key(self) -> int:
        """A signed 64-bit advisory-lock key from the study name (stable across hosts)."""
        digest = hashlib.blake2b(f"hpsearch-budget:{self._study_name}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._parsed.get_backend_name() == "sqlite":
            with self._file_lock():
                yield
        else:
            with self._advisory_lock():
                yield

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self._file is None:
            path = Path(str(self._parsed.database)).expanduser()
            # One lock file per database, shared by its studies: SQLite has one writer anyway.
            self._file = open(f"{path}.lock", "a+b")  # noqa: SIM115 (held for the worker's life)
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _advisory_lock(self) -> Iterator[None]:
        lock = sa.text("SELECT pg_advisory_lock(:k)")
        try:
            conn = self._connection()
            conn.execute(lock, {"k": self.key})
        except sa.exc.DBAPIError:
            # The server dropped our connection (restart, idle timeout): the lock died with
            # it, so a new connection may simply take it again.
            self._drop_connection()
            conn = self._connection()
            conn.execute(lock, {"k": self.key})
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except sa.exc.DBAPIError:
                self._drop_connection()  # a lost connection has released the lock already

    def _connection(self) -> sa.Connection:
        # A session-level advisory lock belongs to a connection: one dedicated connection,
        # outside any pool, kept for the worker's life.
        if self._conn is None:
            if self._engine is None:
                self._engine = sa.create_engine(
                    self._url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
                )
            self._conn = self._engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
