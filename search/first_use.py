"""First use of a folder: the local stores (Optuna's SQLite file, MLflow's `mlflow.db`) are
created by one process at a time.

Two `hpsearch run` started at once in a fresh folder would otherwise both create the same
tables: SQLite answers the second `CREATE TABLE` with "table ... already exists", and MLflow's
alembic chain, run twice over one file, leaves it half-migrated for good. `folder_lock` is an
exclusive `flock` on the folder itself (no lock file is left behind; a lock held by a process
that dies is released by the kernel). Whoever takes it first creates the store; the others
wait, then find it created.

The lock is never taken on the database file: SQLite's own locks are POSIX record locks, which
a process loses when it closes *any* descriptor of that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

_logger = logging.getLogger("search.first_use")


@contextlib.contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (which must exist) for the block."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        # Nothing to lock on (a folder this user may not open): creation goes on unguarded,
        # as it did before, and any collision is reported by the caller.
        _logger.debug("cannot lock %s for first use: %s", directory, exc)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without flock on folders (some NFS mounts)
            _logger.debug("cannot lock %s for first use: %s", directory, exc)
        yield
    finally:
        os.close(fd)  # releases the lock
