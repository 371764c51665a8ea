"""A disk cache for the datasets that are generated, not read: scikit-learn's built-ins and
`synthetic:N[:F[:C]]`.

Why: both need scikit-learn, whose import (with SciPy and pandas behind it) costs a worker
about 0.7 s on a quiet 2-core machine, more than the first trials of a small study. The arrays
themselves are tiny (digits: 1797 x 64) and a pure function of their name and of
scikit-learn's version, so the first load on a machine stores them as an `.npz` file and every
later process reads that file with NumPy alone.

The cache lives in `$HPSEARCH_CACHE_DIR` (else `$XDG_CACHE_HOME/hpsearch`, else
`~/.cache/hpsearch`), under `datasets/sklearn-<version>/`. Writes are atomic (a temporary file
renamed into place), so concurrent first loads each write a whole file and one of them wins; a
cache that cannot be written or read is skipped, never an error. Datasets larger than
`MAX_CACHED_BYTES` are not cached (generating them costs more than the import).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

CACHE_ENV = "HPSEARCH_CACHE_DIR"
MAX_CACHED_BYTES = 64 * 2**20

_logger = logging.getLogger(__name__)


class Generated(NamedTuple):
    """What a generator returns: float64 features, their names and the raw target."""

    x: np.ndarray
    names: list[str]
    y: np.ndarray


def cache_dir() -> Path:
    """hpsearch's cache folder for this user (also used for the MLflow store template)."""
    base = os.environ.get(CACHE_ENV) or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "hpsearch"


def cached(name: str, generate: Callable[[], Generated]) -> Generated:
    """`generate()`, read from the cache when an earlier process stored it for this name."""
    path = _path(name)
    if path is None:
        return generate()
    try:
        with np.load(path, allow_pickle=False) as archive:
            return Generated(archive["x"], [str(n) for n in archive["names"]], archive["y"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        _logger.debug("dataset cache %s unreadable (%s); generating %s", path, exc, name)
    data = generate()
    if data.x.nbytes + data.y.nbytes <= MAX_CACHED_BYTES:
        _store(path, data)
    return data


def _path(name: str) -> Path | None:
    try:
        version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None
    # ':' is not allowed in Windows file names and reads badly elsewhere.
    return cache_dir() / "datasets" / f"sklearn-{version}" / f"{name.replace(':', '_')}.npz"


def _store(path: Path, data: Generated) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, x=data.x, names=np.asarray(data.names, dtype=str), y=data.y)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        _logger.debug("dataset cache %s not written: %s", path, exc)
