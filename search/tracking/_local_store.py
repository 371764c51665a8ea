"""The embedded MLflow store (a SQLite file beside the study), created from a migrated template.

MLflow creates a SQLite store by running its whole chain of alembic migrations, seconds of
work on every new folder (the README's demo paid it on each first run). Here the first store a
machine needs is migrated once into a template in the user's cache, keyed by MLflow's version,
and every store after that is a copy of it. The copy goes into place atomically (written
beside, then hard-linked: a store already there wins), so two `hpsearch run` started at once in
a fresh folder end up with one working store, never a half-migrated one.
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
    """Make sure a local SQLite store exists, migrated, before MLflow opens it."""
    path = sqlite_store_path(tracking_uri)
    if path is None or (path.exists() and path.stat().st_size > 0):
        return
    try:
        template = _template()
        _copy_into_place(template, path)
    except (OSError, sqlite3.Error) as exc:  # MLflow creates it itself, the slow way
        _logger.debug("no store template (%s); MLflow migrates %s itself", exc, path)


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
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            # cast: mlflow leaves this constructor unannotated
            store = cast(Any, SqlAlchemyStore)(f"sqlite:///{fresh}", Path(tmp).as_uri())
            store.engine.dispose()
            os.replace(fresh, template)
    return template


def _copy_into_place(template: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template, tmp)
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            # The template's "Default" experiment points into the cache: point it beside the
            # store, where MLflow would have put it.
            conn.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                ((path.parent / "mlartifacts" / "0").as_uri(),),
            )
            conn.commit()
        with contextlib.suppress(FileExistsError):  # someone else's copy is there: theirs wins
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
