"""Datasets, splits, imputation, encoding and normalization (fitted on the training split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers import DataCache, DataError, TrainConfig, prepare_data
from trainers.config import Task


def write_csv(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture
def numeric_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(60, 3))
    y = x @ [1.0, -2.0, 0.5] + rng.normal(0, 0.1, 60)
    path = tmp_path / "numeric.csv"
    rows = ["a,b,c,y"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, y, strict=True)]
    write_csv(path, rows)
    return path


def test_split_is_deterministic_disjoint_and_complete() -> None:
    config = TrainConfig(dataset="wine", split_seed=3, device="cpu")
    a, b = prepare_data(config), prepare_data(config)
    c = prepare_data(config.replace(split_seed=4))
    assert np.array_equal(a.train_indices, b.train_indices)
    assert not np.array_equal(a.train_indices, c.train_indices)
    rows = np.concatenate([a.train_indices, a.val_indices, a.test_indices])
    assert sorted(rows.tolist()) == list(range(178))
    assert (len(a.val_indices), len(a.test_indices)) == (36, 36)


@pytest.mark.parametrize("normalization", ["standardize", "minmax"])
def test_normalization_statistics_come_from_the_training_split_only(
    numeric_csv: Path, tmp_path: Path, normalization: str
) -> None:
    config = TrainConfig(dataset=str(numeric_csv), target="y", normalization=normalization)
    data = prepare_data(config)
    raw = np.loadtxt(numeric_csv, delimiter=",", skiprows=1)[:, :3]
    train = raw[data.train_indices]
    if normalization == "standardize":
        np.testing.assert_allclose(data.feature_shift, train.mean(0))
        np.testing.assert_allclose(data.feature_scale, train.std(0))
        np.testing.assert_allclose(data.x_train.mean(0).numpy(), 0, atol=1e-5)
        np.testing.assert_allclose(data.x_train.std(0, unbiased=False).numpy(), 1, atol=1e-5)
    else:
        np.testing.assert_allclose(data.feature_shift, train.min(0))
        np.testing.assert_allclose(data.feature_scale, train.max(0) - train.min(0))
        assert data.x_train.min().item() == pytest.approx(0, abs=1e-6)
        assert data.x_train.max().item() == pytest.approx(1, abs=1e-6)

    # The proof by intervention: blow up every validation and test row. The training tensors
    # and the statistics do not move; only the held-out tensors do.
    held_out = np.concatenate([data.val_indices, data.test_indices])
    changed = raw.copy()
    changed[held_out] *= 1000.0
    y = np.loadtxt(numeric_csv, delimiter=",", skiprows=1)[:, 3]
    rows = ["a,b,c,y"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(changed, y, strict=True)]
    other = prepare_data(config.replace(dataset=write_csv(tmp_path / "changed.csv", rows)))
    assert torch.equal(other.x_train, data.x_train)
    np.testing.assert_array_equal(other.feature_shift, data.feature_shift)
    assert not torch.allclose(other.x_val, data.x_val)


def test_regression_target_is_standardized_on_the_training_split(numeric_csv: Path) -> None:
    data = prepare_data(TrainConfig(dataset=str(numeric_csv), target="y"))
    assert data.task == "regression"
    y = np.loadtxt(numeric_csv, delimiter=",", skiprows=1)[:, 3]
    assert data.target_mean == pytest.approx(y[data.train_indices].mean())
    assert data.target_scale == pytest.approx(y[data.train_indices].std())
    restored = data.y_val.numpy()[:, 0] * data.target_scale + data.target_mean
    np.testing.assert_allclose(restored, y[data.val_indices], rtol=1e-5)
    plain = prepare_data(
        TrainConfig(dataset=str(numeric_csv), target="y", standardize_target=False)
    )
    np.testing.assert_allclose(plain.y_val.numpy()[:, 0], y[plain.val_indices], rtol=1e-6)


def test_categoricals_are_one_hot_and_missing_values_imputed_from_training_rows(
    tmp_path: Path,
) -> None:
    rows = ["size,color,label"]
    colors = ["red", "green", "blue"]
    for i in range(40):
        size = "" if i % 7 == 0 else str(float(i))
        color = "" if i % 11 == 0 else colors[i % 3]
        rows.append(f"{size},{color},{i % 2}")
    path = write_csv(tmp_path / "mixed.csv", rows)
    data = prepare_data(TrainConfig(dataset=path, target="label", normalization="none"))
    assert data.task == "classification"
    assert data.feature_names == ["size", "color=blue", "color=green", "color=red"]
    sizes = np.array([np.nan if i % 7 == 0 else float(i) for i in range(40)])
    median = np.nanmedian(sizes[data.train_indices])
    for split, rows_idx in ((data.x_train, data.train_indices), (data.x_val, data.val_indices)):
        expected = np.where(np.isnan(sizes[rows_idx]), median, sizes[rows_idx])
        np.testing.assert_allclose(split[:, 0].numpy(), expected)
        assert torch.all(split[:, 1:].sum(1) == 1)  # every row gets exactly one color


def test_npz_and_synthetic_datasets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"
    np.savez(path, X=rng.normal(size=(50, 4)), label=rng.integers(0, 3, 50))
    data = prepare_data(TrainConfig(dataset=str(path), target="label"))
    assert (data.task, data.n_features, data.n_outputs) == ("classification", 4, 3)
    synthetic = prepare_data(TrainConfig(dataset="synthetic:500:12:4"))
    assert (synthetic.n_features, synthetic.n_outputs) == (12, 4)
    assert synthetic.n_train + len(synthetic.val_indices) + len(synthetic.test_indices) == 500
    assert prepare_data(TrainConfig(dataset="synthetic:100")).n_features == 20


def test_builtins_have_their_tasks() -> None:
    tasks = {name: prepare_data(TrainConfig(dataset=name)).task for name in
             ("digits", "breast_cancer", "wine", "diabetes")}  # fmt: skip
    assert tasks == {
        "digits": "classification", "breast_cancer": "classification",
        "wine": "classification", "diabetes": "regression",
    }  # fmt: skip


def test_cache_shares_tensors_across_network_fields_but_not_data_fields() -> None:
    cache = DataCache()
    base = TrainConfig(dataset="wine")
    first = prepare_data(base, cache)
    assert prepare_data(base.replace(alpha=0.1, hidden_units=8), cache) is first
    assert prepare_data(base.replace(normalization="minmax"), cache) is not first
    assert prepare_data(base.replace(split_seed=1), cache) is not first
    assert len(cache) == 3


def test_merged_train_val_trains_on_both_and_validates_on_test() -> None:
    data = prepare_data(TrainConfig(dataset="wine"))
    merged = data.merged_train_val()
    assert merged.n_train == data.n_train + len(data.val_indices)
    assert torch.equal(merged.y_val, data.y_test)
    assert np.array_equal(merged.val_indices, data.test_indices)
    assert not np.allclose(merged.feature_shift, data.feature_shift)  # re-fitted
    assert data.merged_train_val() is merged


def _bad_files(tmp_path: Path) -> dict[str, tuple[str, str | None, Task, str]]:
    ok = ["a,b,y", "1,2,0", "3,4,1", "5,6,0", "7,8,1", "9,1,0", "2,2,1"]
    return {
        "missing target column": (write_csv(tmp_path / "t.csv", ok), "price", "auto",
                                  r"target column 'price' is not in .*t\.csv.*\['a', 'b', 'y'\]"),
        "empty file": (write_csv(tmp_path / "e.csv", []), "y", "auto", r"e\.csv' is empty"),
        "header only": (write_csv(tmp_path / "h.csv", ["a,y"]), "y", "auto", "no data rows"),
        "text regression target": (
            write_csv(tmp_path / "r.csv", ["a,y", "1,x", "2,y", "3,z", "4,w", "5,v", "6,u"]),
            "y", "regression", r"task='regression'.* needs a numeric target.*'y'.*r\.csv"),
        "single class": (
            write_csv(tmp_path / "s.csv", ["a,y", "1,1", "2,1", "3,1", "4,1", "5,1", "6,1"]),
            "y", "auto", r"at least 2 classes.*'y'.*s\.csv.*single value"),
        "missing file": (str(tmp_path / "nope.csv"), "y", "auto", "does not exist"),
        "unknown dataset": ("mnist", None, "auto", r"`dataset` must be one of .*'mnist'"),
        "bad synthetic": ("synthetic:ten", None, "auto", "synthetic:N"),
        "missing target values": (
            write_csv(tmp_path / "m.csv", ["a,y", "1,1", "2,", "3,0", "4,1", "5,0", "6,1"]),
            "y", "auto", r"target column 'y' of .*m\.csv' has 1 missing"),
        "identifier column": (
            write_csv(tmp_path / "i.csv", ["id,y"] + [f"u{i},{i % 2}" for i in range(120)]),
            "y", "auto", r"categorical column\(s\) \['id'\].* more than 100 distinct"),
    }  # fmt: skip


CASES = [
    "missing target column", "empty file", "header only", "text regression target",
    "single class", "missing file", "unknown dataset", "bad synthetic",
    "missing target values", "identifier column",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_datasets_get_a_data_error_naming_file_column_and_rule(
    case: str, tmp_path: Path
) -> None:
    dataset, target, task, message = _bad_files(tmp_path)[case]
    with pytest.raises(DataError, match=message):
        prepare_data(TrainConfig(dataset=dataset, target=target, task=task))
