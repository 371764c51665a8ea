"""The Optuna storage a study lives in: URL resolution, safe engines, riding out restarts.

A storage URL comes from `--storage`, else `HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db` in
the working directory (the embedded default: no server). Two dialects are supported, because
the trial queue (`search.trial_queue`) needs transactions that serialize trial creation:

- SQLite: several local worker processes share one file. WAL mode lets readers and one writer
  work at once, and a 60 s busy timeout makes a writer wait for the lock instead of failing
  with "database is locked".
- PostgreSQL: many hosts. `pool_pre_ping` replaces connections the server dropped; a process
  keeps one connection while idle (a rack of workers must fit in `max_connections`, or behind
  PgBouncer: see `search.proxy`), and sends no prepared statement (transaction pooling).

Passwords never reach messages: every URL is remembered by `search.redact` when it is parsed,
and every message goes through `redact`. A mistake that waiting cannot fix (a malformed URL, an
unknown driver option, a SQLite file that cannot be created) is a `StudyError` at once, never
retried as if the database were down.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy.engine import URL, make_url

from search.errors import InfrastructureError, StudyError
from search.optuna_internals import has_optuna_tables, open_joining_storage
from search.redact import redact, remember_url
from search.sqlite_file import (
    check_sqlite_writable,
    open_sqlite,
    sqlite_on_connect,
    unwritable_sqlite,
)
from search.trial_queue import TrialCounts, count_by_state

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
    """The URL as it may be shown: `search.redact.redact`, the one redaction (kept as a name:
    callers read better with it)."""
    return redact(url)


def parse_storage_url(url: str) -> URL:
    """Check a storage URL's form and dialect without connecting; `StudyError` names the rule."""
    remember_url(url)
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
    if "@" in (parsed.host or "") or (dialect != "sqlite" and "@" in (parsed.database or "")):
        # SQLAlchemy splits a raw `@` of the password at its first `@`: the rest would be
        # looked up as a host name, and the driver's error would print it.
        raise StudyError(
            "the storage URL's password must write `@` as `%40` (percent-encoded), but got "
            f"a second `@` in {redact_url(url)!r}"
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise StudyError(
            f"the storage URL's port must be in 1..65535, but got {parsed.port} in "
            f"{redact_url(url)!r}"
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


def engine_kwargs(parsed: URL, application_name: str = "hpsearch") -> dict[str, Any]:
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}
    return {
        "pool_pre_ping": True,
        # One connection kept while idle; bursts (the heartbeat thread, the tracker's thread
        # recording a run id) open a short-lived overflow connection.
        "pool_size": 1,
        "max_overflow": 4,
        "connect_args": {
            # psycopg prepares a statement server-side after 5 runs; PgBouncer's transaction
            # pooling (before 1.21) hands the next transaction another server connection,
            # where that statement does not exist.
            "prepare_threshold": None,
            # Who holds which connection, in `pg_stat_activity` (at most 63 characters).
            "application_name": application_name[:63],
        },
    }


def open_storage(
    url: str,
    *,
    heartbeat: Heartbeat | None = None,
    stale_trial_callback: StaleTrialCallback | None = None,
    timeout_s: float | None = None,
    application_name: str = "hpsearch",
    check_schema: bool = True,
) -> RDBStorage:
    """An `RDBStorage` for `url`, retrying an unreachable database for up to `timeout_s`.

    Raises `StudyError` for a malformed URL (nothing is attempted) and `InfrastructureError`
    when the database stays unreachable (nothing is created).

    `check_schema=False` (a worker joining a study that `create`/`run` made, after that
    command checked the schema) skips Optuna's schema-version check, which holds one
    connection in a transaction while it opens a second: behind a pooler with few server
    connections, many workers starting at once would each hold one and wait forever for
    another. It also skips the rest of Optuna's set-up when the tables are there (see
    `open_joining_storage`): part of a worker's start-up.
    """
    parsed = parse_storage_url(url)
    timeout = connect_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    delay = 0.25

    def make() -> RDBStorage:
        kwargs: dict[str, Any] = {
            "engine_kwargs": engine_kwargs(parsed, application_name),
            "heartbeat_interval": heartbeat.interval_s if heartbeat else None,
            "grace_period": heartbeat.grace_s if heartbeat else None,
            "heartbeat_stale_trial_callback": stale_trial_callback if heartbeat else None,
        }
        with warnings.catch_warnings():
            # heartbeat_interval is "experimental" in Optuna; the warning would reach users.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if not check_schema:
                joined = open_joining_storage(url, **kwargs)
                if has_optuna_tables(joined):
                    return joined
                joined.engine.dispose()  # an empty database: Optuna's own set-up creates them
            return RDBStorage(url, skip_compatibility_check=not check_schema, **kwargs)

    while True:
        try:
            if parsed.get_backend_name() == "sqlite":
                storage = open_sqlite(parsed, make)
                sa.event.listen(storage.engine, "connect", sqlite_on_connect)
                storage.engine.dispose()  # pooled connections predate the listener
                return storage
            return make()
        except sa.exc.IntegrityError:
            # Two processes (or threads) creating a fresh PostgreSQL storage at once: Optuna's
            # first `alembic_version` insert collides. The other one has created the tables:
            # open again, now on an initialized database.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        except (sa.exc.DatabaseError, sa.exc.InterfaceError, sqlite3.Error) as exc:
            reason = redact(_first_line(exc))
            permanent = _permanent_problem(url, parsed, exc, reason)
            if permanent is not None:
                raise StudyError(permanent) from None
            if time.monotonic() + delay > deadline:
                raise InfrastructureError(
                    f"the storage {redact_url(url)!r} was unreachable for {timeout:g} s "
                    f"(set {CONNECT_TIMEOUT_ENV} to wait longer): {reason}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def check_storage_writable(url: str) -> None:
    """Refuse, before anything is resolved or written, a SQLite storage that can never be
    written (`StudyError`); a server's storage is checked when it is opened."""
    parsed = parse_storage_url(url)
    if parsed.get_backend_name() == "sqlite":
        check_sqlite_writable(parsed)


def _permanent_problem(url: str, parsed: URL, exc: BaseException, reason: str) -> str | None:
    """The message for an error that waiting cannot fix; None for one that it may (a server
    restarting, a host name not yet in DNS, a SQLite file locked by another writer)."""
    if parsed.get_backend_name() == "sqlite":
        if "locked" in reason or "busy" in reason:
            return None
        return unwritable_sqlite(parsed, reason)
    # libpq refuses the connection string itself (an unknown option, a bad value): the same
    # URL fails the same way every time.
    if re.match(r"(connection is bad: )?invalid ", reason):
        return (
            "the storage URL's options must be ones the PostgreSQL driver accepts, but got "
            f"{redact_url(url)!r} ({reason})"
        )
    if isinstance(exc, sa.exc.ProgrammingError):  # e.g. no right to create Optuna's tables
        return f"the storage {redact_url(url)!r} refused hpsearch: {reason}"
    return None


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
    Raises Optuna's `UpdateFinishedTrialError` when the trial is already finished."""
    from search.optuna_internals import set_trial_user_attrs

    set_trial_user_attrs(storage, trial_id, attrs)


# --- counting trials --------------------------------------------------------------------------


def count_trials(storage: RDBStorage, study_id: int) -> TrialCounts:
    """A study's trials by state: one GROUP BY query, not a load of every trial."""
    with storage.engine.connect() as conn:
        return count_by_state(conn, study_id)
