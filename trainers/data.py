"""Split, impute, encode and normalize a dataset, and put it on the training device.

Every statistic (medians for imputation, categorical levels and modes, normalization shift and
scale, the regression target's mean and std) is fitted on the training split only and then
applied to all splits, so nothing about validation or test rows leaks into training.

The split is deterministic from `split_seed`: a NumPy permutation of the rows whose first
`round(n * test_fraction)` rows are the test split, the next `round(n * val_fraction)` the
validation split, and the rest the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from trainers.config import TrainConfig
from trainers.datasets import RawDataset, load_raw, raw_cache_key
from trainers.device import resolve_device
from trainers.features import FeatureEncoder, normalization_stats, split_indices

DATA_FIELDS = (
    "dataset", "target", "task", "drop", "missing_target", "normalization", "standardize_target",
    "val_fraction", "test_fraction", "split_seed",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class DeviceData:
    """A dataset ready to train on: three splits as tensors on `device`.

    Inputs are float32 `(n, n_features)`; targets are int64 class indices `(n,)` for
    classification or float32 `(n, 1)` for regression, standardized when `standardize_target`
    (then `target_mean`/`target_scale` map them back: `y = y_std * target_scale + target_mean`;
    the trainer reports RMSE and MAE in the original units). `feature_shift`/`feature_scale`
    are the normalization fitted on the training split (`x_norm = (x - shift) / scale`).
    """

    task: str
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    feature_names: list[str]
    class_names: list[str]
    feature_shift: np.ndarray
    feature_scale: np.ndarray
    target_mean: float
    target_scale: float
    source: str
    _raw: RawDataset = field(repr=False)
    _splits: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)
    _settings: tuple[str, bool] = field(repr=False)  # (normalization, standardize_target)
    _memo: dict[str, DeviceData] = field(default_factory=dict, repr=False)  # "merged"

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        return len(self.class_names) if self.task == "classification" else 1

    @property
    def dropped_rows(self) -> int:
        """Rows left out because their target was missing (`missing_target = "drop"`)."""
        return self._raw.dropped_rows

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def train_indices(self) -> np.ndarray:
        """Row numbers (in the raw dataset) of the training split."""
        return self._splits[0]

    @property
    def val_indices(self) -> np.ndarray:
        return self._splits[1]

    @property
    def test_indices(self) -> np.ndarray:
        return self._splits[2]

    def merged_train_val(self) -> DeviceData:
        """The data a `retrain` trains on: train + validation rows as the training split.

        Every statistic is re-fitted on the merged rows; the returned object's validation
        split *is the test split* (so `train()` reports test metrics as `val_*`), and its test
        split is the test split too. Memoized on this object.
        """
        if "merged" not in self._memo:
            train, val, test = self._splits
            merged = np.concatenate([train, val])
            self._memo["merged"] = _build(
                self._raw, (merged, test, test), *self._settings, self.device
            )
        return self._memo["merged"]


class DataCache:
    """Memoizes raw loads and prepared `DeviceData`; one per worker process.

    Raw loads are keyed by (dataset, target, task) plus a file's path, mtime and size; prepared
    data by every data-related `TrainConfig` field and the device. Trials that differ only in
    network or optimizer fields therefore share one copy of the tensors on the device.
    """

    def __init__(self) -> None:
        self._raw: dict[tuple[object, ...], RawDataset] = {}
        self._prepared: dict[tuple[object, ...], DeviceData] = {}

    def raw(self, config: TrainConfig) -> RawDataset:
        key = raw_cache_key(config)
        if key not in self._raw:
            self._raw[key] = load_raw(config)
        return self._raw[key]

    def prepared(self, config: TrainConfig, device: torch.device) -> DeviceData:
        key = (
            raw_cache_key(config),
            *(getattr(config, f) for f in DATA_FIELDS),
            str(device),
        )
        if key not in self._prepared:
            self._prepared[key] = _prepare(self.raw(config), config, device)
        return self._prepared[key]

    def clear(self) -> None:
        self._raw.clear()
        self._prepared.clear()

    def __len__(self) -> int:
        return len(self._prepared)


def prepare_data(config: TrainConfig, cache: DataCache | None = None) -> DeviceData:
    """Load, split, impute, encode and normalize `config.dataset` onto `config.device`."""
    device = resolve_device(config.device)
    if cache is not None:
        return cache.prepared(config, device)
    return _prepare(load_raw(config), config, device)


def _prepare(raw: RawDataset, config: TrainConfig, device: torch.device) -> DeviceData:
    splits = split_indices(raw.n_rows, config.val_fraction, config.test_fraction, config.split_seed)
    return _build(raw, splits, config.normalization, config.standardize_target, device)


def _build(
    raw: RawDataset,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    normalization: str,
    standardize_target: bool,
    device: torch.device,
) -> DeviceData:
    train = splits[0]
    encoder = FeatureEncoder.fit(raw, train)
    x = encoder.transform(raw)
    shift, scale = normalization_stats(x[train], normalization)
    x = (x - shift) / scale

    y: np.ndarray = raw.y
    target_mean, target_scale = 0.0, 1.0
    if raw.task == "regression" and standardize_target:
        target_mean = float(raw.y[train].mean())
        target_scale = float(raw.y[train].std()) or 1.0
        y = (raw.y - target_mean) / target_scale

    def x_of(rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x[rows], dtype=torch.float32).to(device)

    def y_of(rows: np.ndarray) -> torch.Tensor:
        if raw.task == "classification":
            return torch.as_tensor(y[rows], dtype=torch.int64).to(device)
        return torch.as_tensor(y[rows], dtype=torch.float32).reshape(-1, 1).to(device)

    train_rows, val_rows, test_rows = splits
    return DeviceData(
        task=raw.task, device=device,
        x_train=x_of(train_rows), y_train=y_of(train_rows),
        x_val=x_of(val_rows), y_val=y_of(val_rows),
        x_test=x_of(test_rows), y_test=y_of(test_rows),
        feature_names=encoder.names, class_names=list(raw.class_names),
        feature_shift=shift, feature_scale=scale,
        target_mean=target_mean, target_scale=target_scale, source=raw.source,
        _raw=raw, _splits=splits, _settings=(normalization, standardize_target),
    )  # fmt: skip
