"""A SQLite storage is a file that local worker processes share: made ready, checked, created.

- WAL mode (set once on the file) lets readers and one writer work at once; every connection
  waits up to 60 s for a lock instead of failing with "database is locked".
- `check_sqlite_writable`: a path that can never be written (`/proc/x.db`, a folder) is
  refused before anything is resolved or written.
- `open_sqlite`: a file without Optuna's schema is created under the folder's first-use lock
  (`search.first_use`), so two commands started at once never both create its tables.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.storages import RDBStorage
from sqlalchemy.engine import URL

from search.errors import StudyError
from search.first_use import folder_lock

__all__ = [
    "check_sqlite_writable",
    "open_sqlite",
    "sqlite_has_schema",
    "sqlite_on_connect",
    "sqlite_prepare",
    "unwritable_sqlite",
]


def sqlite_prepare(parsed: URL) -> None:
    # WAL is a property of the database file: set once, every later connection uses it.
    path = Path(str(parsed.database)).expanduser()
    conn = sqlite3.connect(path, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NORMAL is durable across process crashes in WAL mode (only an OS crash may lose the last
    # commits) and avoids an fsync per commit, which is most of a small transaction's cost.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def unwritable_sqlite(parsed: URL, reason: str) -> str:
    path = str(Path(str(parsed.database)).expanduser().resolve())
    if Path(path).exists() and not Path(path).is_file():
        reason = "not a regular file"
    return (
        "the storage must be a SQLite database file this user can create and write, but got "
        f"{path!r} ({reason})"
    )


def check_sqlite_writable(parsed: URL) -> None:
    """Refuse, before anything is resolved or written, a SQLite storage that can never be
    written: an existing file this user cannot write, or a folder where no file can be made
    (`/proc`). Checked by trying, not by `os.access`, which says yes to root everywhere."""
    path = Path(str(parsed.database)).expanduser().resolve()
    if path.exists():
        if not path.is_file():
            raise StudyError(unwritable_sqlite(parsed, "not a regular file"))
        if not os.access(path, os.R_OK | os.W_OK):
            raise StudyError(unwritable_sqlite(parsed, "permission denied"))
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as exc:
        raise StudyError(unwritable_sqlite(parsed, exc.strerror or str(exc))) from None
    os.close(fd)
    os.unlink(probe)


def open_sqlite(parsed: URL, make: Callable[[], RDBStorage]) -> RDBStorage:
    """`make()` on a SQLite file, its first creation under the folder's lock: two processes
    creating one file at once would both create Optuna's tables."""
    path = Path(str(parsed.database)).expanduser().resolve()
    if sqlite_has_schema(path):
        sqlite_prepare(parsed)
        return make()
    with folder_lock(path.parent):
        sqlite_prepare(parsed)
        return make()


def sqlite_has_schema(path: Path) -> bool:
    """Optuna's tables are there (opened read-only: nothing is created by looking)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT count(*) FROM alembic_version").fetchone()
            return bool(rows and rows[0])
    except sqlite3.Error:
        return False
