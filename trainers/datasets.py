"""Load a dataset into host memory, before any split: built-ins, synthetic data, CSV and NPZ.

Dataset names (`TrainConfig.dataset`):

- `digits`, `breast_cancer`, `wine` (classification) and `diabetes` (regression): the small
  datasets that ship inside scikit-learn (no download).
- `synthetic:N`, `synthetic:N:F`, `synthetic:N:F:C`: scikit-learn's `make_classification` with
  N samples, F features (default 20) and C classes (default 2), always generated with
  `random_state=0` so that a name means one dataset (the split seed varies the split only).
- a path ending in `.csv`: one row per sample, a header row, the target column named by
  `TrainConfig.target` (default `"target"`). Numeric columns may have missing values; text
  columns are categorical (one-hot encoded later, with levels from the training split).
- a path ending in `.npz`: the target array named by `TrainConfig.target` (default `"target"`)
  and the features in array `X` (or `data`); without either, every other array of the same
  length is a feature column.

`task="auto"` picks classification for the built-in classification sets, synthetic data, text
targets and integer-valued targets with at most `MAX_AUTO_CLASSES` distinct values; anything
else is regression. scikit-learn and pandas are imported here, lazily, so `import trainers`
stays quick; built-in and synthetic arrays are cached on disk after their first generation
(`trainers.dataset_cache`), so a worker usually never imports scikit-learn at all.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainers.config import TrainConfig
from trainers.dataset_cache import Generated, cached
from trainers.errors import DataError
from trainers.synthetic_memory import check_synthetic_memory

BUILTIN_CLASSIFICATION = ("digits", "breast_cancer", "wine")
BUILTIN_REGRESSION = ("diabetes",)
BUILTINS = BUILTIN_CLASSIFICATION + BUILTIN_REGRESSION
MAX_AUTO_CLASSES = 50  # an integer target with more distinct values is taken as a quantity
MAX_CATEGORY_LEVELS = 100  # more levels than this is an identifier, not a category: refused
DEFAULT_TARGET = "target"


@dataclass(frozen=True, eq=False)
class RawDataset:
    """Every row of a dataset, before splitting. Missing numeric values are NaN."""

    source: str  # how messages name it: a built-in name or the file path
    task: str  # "classification" | "regression"
    numeric: np.ndarray  # (n, k) float64, NaN where missing
    numeric_names: list[str]
    categorical: np.ndarray  # (n, m) object (str or None where missing)
    categorical_names: list[str]
    y: np.ndarray  # int64 class indices (classification) or float64 values (regression)
    class_names: list[str] = field(default_factory=list)
    dropped_rows: int = 0  # rows with a missing target, left out (`missing_target = "drop"`)

    @property
    def n_rows(self) -> int:
        return int(self.y.shape[0])


def raw_cache_key(config: TrainConfig) -> tuple[object, ...]:
    """The fields a raw load depends on; a file's size and mtime make an edited file reload."""
    key: tuple[object, ...] = (
        config.dataset, config.target, config.task, config.drop, config.missing_target,
    )  # fmt: skip
    path = Path(config.dataset)
    if path.suffix.lower() in (".csv", ".npz") and path.is_file():
        stat = path.stat()
        key += (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    return key


def load_raw(config: TrainConfig) -> RawDataset:
    """Load `config.dataset` with the target and task the config asks for (DataError if not),
    without the columns in `config.drop` and, with `missing_target = "drop"`, without the rows
    whose target is missing."""
    name = config.dataset
    if name in BUILTINS:
        return drop_columns(_load_builtin(name, config.task), config.drop)
    if name.startswith("synthetic:"):
        return drop_columns(_load_synthetic(name, config.task), config.drop)
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".npz"):
        if not Path(name).is_file():
            raise DataError(f"dataset file {name!r} does not exist (or is not a file)")
        target = config.target or DEFAULT_TARGET
        if suffix == ".csv":
            return _load_csv(Path(name), target, config.task, config.drop, config.missing_target)
        raw = _load_npz(Path(name), target, config.task, config.missing_target)
        return drop_columns(raw, config.drop)
    raise DataError(
        f"`dataset` must be one of {list(BUILTINS)}, 'synthetic:N[:F[:C]]', or a path ending "
        f"in .csv or .npz, but got dataset={name!r}"
    )


def drop_columns(raw: RawDataset, drop: tuple[str, ...]) -> RawDataset:
    """`raw` without the feature columns named in `drop` (every name must be one of them)."""
    if not drop:
        return raw
    names = raw.numeric_names + raw.categorical_names
    _check_drop(drop, names, raw.source, target=None)
    keep_num = [i for i, n in enumerate(raw.numeric_names) if n not in drop]
    keep_cat = [i for i, n in enumerate(raw.categorical_names) if n not in drop]
    if not keep_num and not keep_cat:
        raise DataError(f"`drop` leaves no feature column of {raw.source!r}: {list(drop)}")
    return dataclasses.replace(
        raw,
        numeric=raw.numeric[:, keep_num],
        numeric_names=[raw.numeric_names[i] for i in keep_num],
        categorical=raw.categorical[:, keep_cat],
        categorical_names=[raw.categorical_names[i] for i in keep_cat],
    )


def _check_drop(drop: tuple[str, ...], columns: list[str], source: str, target: str | None) -> None:
    if target is not None and target in drop:
        raise DataError(
            f"`drop` must not name the target column {target!r} of '{source}' (set `target` to "
            "another column to predict it instead)"
        )
    unknown = [d for d in drop if d not in columns]
    if unknown:
        raise DataError(
            f"`drop` names column(s) {unknown} that are not in '{source}' (its columns: {columns})"
        )


def _load_builtin(name: str, task: str) -> RawDataset:
    data = cached(name, lambda: _generate_builtin(name))
    default_task = "regression" if name in BUILTIN_REGRESSION else "classification"
    return _finish(
        name, data.x, data.names, _no_categories(data.x), [], data.y, DEFAULT_TARGET, task,
        default_task,
    )  # fmt: skip


def _generate_builtin(name: str) -> Generated:
    from sklearn import datasets as skd

    loader = {
        "digits": skd.load_digits,
        "breast_cancer": skd.load_breast_cancer,
        "wine": skd.load_wine,
        "diabetes": skd.load_diabetes,
    }[name]
    bunch = loader()
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    return Generated(np.asarray(bunch.data, dtype=np.float64), names, np.asarray(bunch.target))


def _load_synthetic(name: str, task: str) -> RawDataset:
    parts = name.split(":")[1:]
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise DataError(
            f"`dataset` 'synthetic:N[:F[:C]]' needs integer N (samples), F (features) and C "
            f"(classes), but got dataset={name!r}"
        )
    n, f, c = (int(p) for p in [*parts, "20", "2"][:3])
    if n < 10 or f < 2 or c < 2 or c > n // 5:
        raise DataError(
            f"`dataset` synthetic:N:F:C needs N >= 10, F >= 2 and 2 <= C <= N/5, "
            f"but got dataset={name!r} (N={n}, F={f}, C={c})"
        )
    check_synthetic_memory(name, n, f)
    data = cached(f"synthetic:{n}:{f}:{c}", lambda: _generate_synthetic(n, f, c))
    return _finish(
        name, data.x, data.names, _no_categories(data.x), [], data.y, DEFAULT_TARGET, task,
        "classification",
    )  # fmt: skip


def _generate_synthetic(n: int, f: int, c: int) -> Generated:
    from sklearn.datasets import make_classification

    # Enough informative features for C classes (make_classification needs C <= 2**informative).
    informative = min(f, max(2, f // 2, int(np.ceil(np.log2(c))) + 1))
    x, y = make_classification(
        n_samples=n, n_features=f, n_informative=informative, n_redundant=0,
        n_classes=c, n_clusters_per_class=1, random_state=0,
    )  # fmt: skip
    return Generated(x.astype(np.float64), [f"x{i}" for i in range(f)], y)


def _load_csv(
    path: Path, target: str, task: str, drop: tuple[str, ...] = (), missing_target: str = "refuse"
) -> RawDataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset file '{path}' is empty: a CSV needs a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"dataset file '{path}' is not a readable CSV: {exc}") from None
    if len(frame) == 0:
        raise DataError(f"dataset file '{path}' has a header but no data rows")
    frame.columns = [str(c) for c in frame.columns]
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} is not in '{path}' (set `target` (--target) to one of "
            f"its columns: {list(frame.columns)})"
        )
    _check_drop(drop, list(frame.columns), str(path), target)
    frame = frame.drop(columns=list(drop))
    missing = frame[target].isna()
    dropped = int(missing.sum())
    if dropped and missing_target != "drop":
        raise DataError(
            f"target column {target!r} of '{path}' has {dropped} missing value(s); a target "
            'cannot be imputed: drop those rows with `missing_target = "drop"` '
            "(--missing-target drop), or fill them in the file"
        )
    if dropped:
        frame = frame[~missing].reset_index(drop=True)
        if len(frame) == 0:
            raise DataError(f"every row of '{path}' has a missing target {target!r}")
    y_series = frame[target]
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError(f"dataset file '{path}' has no feature columns besides {target!r}")
    numeric_cols = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical_cols = [c for c in features.columns if c not in numeric_cols]
    too_many = {
        str(c): int(features[c].nunique())
        for c in categorical_cols
        if features[c].nunique() > MAX_CATEGORY_LEVELS
    }
    if too_many:
        raise DataError(
            f"categorical column(s) {sorted(too_many)} of '{path}' have more than "
            f"{MAX_CATEGORY_LEVELS} distinct values ({too_many}); one-hot encoding them would "
            f"make a column per value: leave them out with `drop` (--drop "
            f"{','.join(sorted(too_many))}), or encode them as numbers"
        )
    numeric = features[numeric_cols].to_numpy(dtype=np.float64, na_value=np.nan)
    categorical = np.empty((len(frame), len(categorical_cols)), dtype=object)
    for j, col in enumerate(categorical_cols):
        values = features[col]
        categorical[:, j] = [None if pd.isna(v) else str(v) for v in values]
    if pd.api.types.is_numeric_dtype(y_series) and not pd.api.types.is_bool_dtype(y_series):
        y = y_series.to_numpy(dtype=np.float64)
    else:
        y = y_series.astype(str).to_numpy(dtype=object)
    raw = _finish(
        str(path), numeric, [str(c) for c in numeric_cols], categorical,
        [str(c) for c in categorical_cols], y, target, task, None,
    )  # fmt: skip
    return dataclasses.replace(raw, dropped_rows=dropped)


def _load_npz(path: Path, target: str, task: str, missing_target: str = "refuse") -> RawDataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"dataset file '{path}' is not a readable .npz archive: {exc}") from None
    if not arrays:
        raise DataError(f"dataset file '{path}' is empty: it holds no arrays")
    if target not in arrays:
        raise DataError(
            f"target array {target!r} is not in '{path}' (set `target` to one of its arrays: "
            f"{sorted(arrays)})"
        )
    y = np.asarray(arrays.pop(target)).reshape(-1)
    if y.shape[0] == 0:
        raise DataError(f"dataset file '{path}' has an empty target array {target!r}")
    key = next((k for k in ("X", "data") if k in arrays), None)
    if key is not None:
        x = np.asarray(arrays[key])
        x = x.reshape(x.shape[0], -1) if x.ndim != 2 else x
        names = [f"{key}{i}" for i in range(x.shape[1])]
    else:
        columns = {k: v.reshape(len(v), -1) for k, v in arrays.items() if len(v) == len(y)}
        if not columns:
            raise DataError(f"dataset file '{path}' has no feature arrays besides {target!r}")
        x = np.concatenate(list(columns.values()), axis=1)
        names = [
            f"{k}{i}" if v.shape[1] > 1 else k
            for k, v in columns.items()
            for i in range(v.shape[1])
        ]
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"feature array and target {target!r} of '{path}' must have the same number of "
            f"rows, but got {x.shape[0]} and {y.shape[0]}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"feature array of '{path}' must be numeric, but got dtype {x.dtype}")
    if not np.issubdtype(y.dtype, np.number):
        y = y.astype(str).astype(object)
    dropped = 0
    if y.dtype != object and np.isnan(y.astype(np.float64)).any():
        missing = np.isnan(y.astype(np.float64))
        dropped = int(missing.sum())
        if missing_target != "drop":
            raise DataError(
                f"target {target!r} of '{path}' has {dropped} missing (NaN) value(s); drop "
                'those rows with `missing_target = "drop"` (--missing-target drop)'
            )
        x, y = x[~missing], y[~missing]
    raw = _finish(
        str(path), x.astype(np.float64), names, _no_categories(x), [], y, target, task, None
    )
    return dataclasses.replace(raw, dropped_rows=dropped)


def _no_categories(x: np.ndarray) -> np.ndarray:
    return np.empty((x.shape[0], 0), dtype=object)


def _finish(
    source: str,
    numeric: np.ndarray,
    numeric_names: list[str],
    categorical: np.ndarray,
    categorical_names: list[str],
    y: np.ndarray,
    target: str,
    task: str,
    default_task: str | None,
) -> RawDataset:
    """Decide the task, check the target against it, and encode class labels as 0..C-1."""
    is_text = y.dtype == object
    if task == "auto":
        task = default_task or _infer_task(y)
    if task == "regression":
        if is_text:
            example = next(iter(y), "")
            raise DataError(
                f"`task='regression'` needs a numeric target, but target {target!r} of "
                f"{source!r} holds text such as {example!r}"
            )
        if not np.isfinite(y).all():
            raise DataError(f"target {target!r} of {source!r} has non-finite values (nan/inf)")
        return RawDataset(
            source, task, numeric, numeric_names, categorical, categorical_names,
            y.astype(np.float64),
        )  # fmt: skip
    labels, y_index = np.unique(y if is_text else y.astype(np.float64), return_inverse=True)
    if len(labels) < 2:
        raise DataError(
            f"classification needs at least 2 classes, but target {target!r} of {source!r} "
            f"has the single value {labels[0]!r}"
        )
    names = [str(v) if is_text else _number_name(v) for v in labels]
    return RawDataset(
        source, task, numeric, numeric_names, categorical, categorical_names,
        y_index.astype(np.int64).reshape(-1), names,
    )  # fmt: skip


def _infer_task(y: np.ndarray) -> str:
    if y.dtype == object:
        return "classification"
    finite = y[np.isfinite(y)]
    integral = bool(np.all(finite == np.round(finite)))
    if integral and len(np.unique(finite)) <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


def _number_name(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
