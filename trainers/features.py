"""The torch-free half of data preparation: the split, imputation and encoding, and the
normalization statistics, all fitted on the training split; and `check_data`, which runs every
check `prepare_data` makes without building tensors.

Why apart from `trainers.data`: validating a study (`hpsearch create`/`run`) must load the
dataset and prove it trainable, but the command itself never trains; importing torch for it
cost the command about a second before any worker could start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainers.config import TrainConfig
from trainers.datasets import RawDataset, load_raw
from trainers.errors import DataError


@dataclass(frozen=True)
class DataSummary:
    """What a check of a dataset learned: enough to validate a study against it."""

    source: str
    task: str  # "classification" | "regression"
    n_rows: int
    n_features: int  # after one-hot encoding
    class_names: list[str]
    dropped_rows: int


def check_data(config: TrainConfig) -> DataSummary:
    """Load `config.dataset` and make every check `prepare_data` makes (target, task, split
    sizes, imputable columns), without torch. Raises `DataError` naming the problem."""
    raw = load_raw(config)
    train, _, _ = split_indices(
        raw.n_rows, config.val_fraction, config.test_fraction, config.split_seed
    )
    encoder = FeatureEncoder.fit(raw, train)
    return DataSummary(
        raw.source, raw.task, raw.n_rows, len(encoder.names), list(raw.class_names),
        raw.dropped_rows,
    )  # fmt: skip


def split_indices(
    n_rows: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row numbers; the same arguments always give the same split."""
    n_test = max(1, round(n_rows * test_fraction))
    n_val = max(1, round(n_rows * val_fraction))
    if n_rows - n_test - n_val < 2:
        raise DataError(
            f"the dataset has {n_rows} rows: too few to keep >= 2 training rows after holding "
            f"out {n_val} for validation and {n_test} for test"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def normalization_stats(x_train: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) fitted on training rows; a constant column keeps scale 1 (no 0/0)."""
    width = x_train.shape[1]
    if normalization == "standardize":
        shift, scale = x_train.mean(axis=0), x_train.std(axis=0)
    elif normalization == "minmax":
        shift = x_train.min(axis=0)
        scale = x_train.max(axis=0) - shift
    else:
        return np.zeros(width), np.ones(width)
    return shift, np.where(scale > 0, scale, 1.0)


@dataclass(frozen=True)
class FeatureEncoder:
    """Median imputation of numbers, mode imputation and one-hot encoding of categories."""

    medians: np.ndarray
    levels: list[list[str]]
    modes: list[str]
    names: list[str]

    @classmethod
    def fit(cls, raw: RawDataset, train: np.ndarray) -> FeatureEncoder:
        numeric_train = raw.numeric[train]
        all_missing = [
            name
            for name, col in zip(raw.numeric_names, numeric_train.T, strict=True)
            if np.isnan(col).all()
        ]
        levels: list[list[str]] = []
        modes: list[str] = []
        for j, name in enumerate(raw.categorical_names):
            present = [v for v in raw.categorical[train, j] if v is not None]
            if not present:
                all_missing.append(name)
                continue
            values, counts = np.unique(np.asarray(present, dtype=str), return_counts=True)
            levels.append([str(v) for v in values])
            modes.append(str(values[int(np.argmax(counts))]))
        if all_missing:
            raise DataError(
                f"column(s) {all_missing} of {raw.source!r} have no values in the training "
                f"split, so they cannot be imputed: drop them or fill them in"
            )
        medians = np.nanmedian(numeric_train, axis=0) if numeric_train.shape[1] else np.zeros(0)
        names = list(raw.numeric_names) + [
            f"{name}={level}"
            for name, col_levels in zip(raw.categorical_names, levels, strict=True)
            for level in col_levels
        ]
        return cls(medians, levels, modes, names)

    def transform(self, raw: RawDataset) -> np.ndarray:
        numeric = np.where(np.isnan(raw.numeric), self.medians, raw.numeric)
        blocks = [numeric]
        for j, (col_levels, mode) in enumerate(zip(self.levels, self.modes, strict=True)):
            column = [mode if v is None else v for v in raw.categorical[:, j]]
            position = {level: i for i, level in enumerate(col_levels)}
            onehot = np.zeros((raw.n_rows, len(col_levels)))
            for row, value in enumerate(column):
                if value in position:  # a level unseen in training stays all-zero
                    onehot[row, position[value]] = 1.0
            blocks.append(onehot)
        return np.concatenate(blocks, axis=1)
