"""The embedded MLflow store (a SQLite file beside the study), created from a migrated template.

MLflow creates a SQLite store by running its whole chain of alembic migrations, seconds of
work on every new folder (the README's demo paid it on each first run). Here the first store a
machine needs is migrated once into a template in the user's cache, keyed by MLflow's version,
and every store after that is a copy of it. The copy is made under the folder's first-use lock
(`search.first_use`) and goes into place whole (written beside, then renamed), so two `hpsearch
run` started at once in a fresh folder end up with one working store, never a half-migrated
one; a store that an older version did leave half-created is refused with how to recover.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, cast

from trainers.dataset_cache import cache_dir

_logger = logging.getLogger("search.tracking")


def sqlite_store_path(tracking_uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking URI; None for anything else (a server, memory)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(tracking_uri).database
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser().resolve()


def prepare_local_store(tracking_uri: str) -> None:
    """Make sure a local SQLite store exists, whole, before MLflow opens it.

    Raises `InfrastructureError` (one line: how to recover) for a store left half-created."""
    path = sqlite_store_path(tracking_uri)
    if path is None or path in _checked:
        return
    if not _has_content(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        from search.first_use import folder_lock

        with folder_lock(path.parent):  # one creator; the others find it made
            if not _has_content(path):
                _create(path)
    problem = _half_created(path)
    if problem:
        from search.errors import InfrastructureError

        raise InfrastructureError(
            f"the MLflow store {str(path)!r} is half-created ({problem}): an earlier first run "
            f"was interrupted while making it. Move it away (mv {path} {path}.broken) and run "
            "again: a new store is made, and any runs the old one holds stay in the moved file"
        )
    _checked.add(path)


# Stores found whole in this process (checked once: MLflow clients are made per trial).
_checked: set[Path] = set()
_TABLES = frozenset({"experiments", "runs", "metrics", "params", "tags", "alembic_version"})


def _has_content(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _half_created(path: Path) -> str | None:
    """What shows the store's creation did not finish; None when it did."""
    try:
        # Read-write, never created (`mode=rw`): a worker killed mid-write leaves a hot journal
        # that only a writable connection may roll back; read-only, SQLite refuses with
        # "attempt to write a readonly database" and a whole store would look broken.
        with contextlib.closing(
            sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=60)
        ) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp"))
            if leftovers:
                return f"a migration's temporary table {leftovers[0]!r} is still there"
            missing = sorted(_TABLES - tables)
            if missing:
                return f"tables {missing} are missing"
            versions = conn.execute("SELECT count(*) FROM alembic_version").fetchone()
            if not versions or versions[0] != 1:
                return "it has no schema version"
    except sqlite3.DatabaseError as exc:
        return f"not a readable SQLite database: {exc}"
    return None


def _create(path: Path) -> None:
    """The store, copied from the migrated template (or, without a usable cache, migrated
    beside it), moved into place whole. Called under the folder's lock."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            shutil.copyfile(_template(), tmp)
        except (OSError, sqlite3.Error) as exc:
            _logger.debug("no store template (%s); migrating %s in place", exc, path)
            tmp.unlink(missing_ok=True)
            _migrate(tmp)
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            # The template's "Default" experiment points into the cache: point it beside the
            # store, where MLflow would have put it.
            conn.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                ((path.parent / "mlartifacts" / "0").as_uri(),),
            )
            conn.commit()
        os.replace(tmp, path)  # whole or not at all (an empty file left by a crash included)
    finally:
        tmp.unlink(missing_ok=True)


def _migrate(fresh: Path) -> None:
    """MLflow's whole chain of migrations, into a new file nobody else opens."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # cast: mlflow leaves this constructor unannotated
    store = cast(Any, SqlAlchemyStore)(f"sqlite:///{fresh}", fresh.parent.as_uri())
    store.engine.dispose()


def _template() -> Path:
    import mlflow

    cache = cache_dir()
    template = cache / f"mlflow-{mlflow.__version__}-store.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".template.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # one process migrates, the others wait
        if template.exists():
            return template
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            fresh = Path(tmp) / "store.db"
            _migrate(fresh)
            os.replace(fresh, template)
    return template
