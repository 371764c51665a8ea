"""The training loop: accuracy, reproducibility, reports, pruning, early stopping, divergence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.support.house_prices import write_house_prices
from trainers import DataCache, TrainConfig, TrainResult, default_metric, prepare_data, train

CACHE = DataCache()
# Adam at 1e-3 (TrainConfig's defaults until issue 13): the thresholds below were set with it.
DIGITS = TrainConfig(
    dataset="digits", normalization="standardize", epochs=20, device="cpu", optimizer="adam",
    alpha=1e-3,
)  # fmt: skip


@pytest.fixture(scope="module")
def digits_result() -> TrainResult:
    return train(DIGITS, prepare_data(DIGITS, CACHE))


def test_default_mlp_on_standardized_digits_reaches_95_percent_in_20_epochs(
    digits_result: TrainResult,
) -> None:
    assert digits_result.outcome == "complete"
    assert digits_result.epochs_run == 20
    assert digits_result.metrics["val_accuracy"] >= 0.95
    assert digits_result.device == "cpu"
    assert digits_result.flags == []


def test_two_cpu_runs_with_the_same_seed_are_identical_bit_for_bit(
    digits_result: TrainResult,
) -> None:
    again = train(DIGITS, prepare_data(DIGITS, DataCache()))
    assert again.history == digits_result.history  # exact float equality, every epoch
    other_seed = train(DIGITS.replace(seed=1, epochs=2), prepare_data(DIGITS, CACHE))
    assert other_seed.history[1] != digits_result.history[1]


def test_report_gets_every_epoch_with_the_contract_keys() -> None:
    config = DIGITS.replace(epochs=3)
    seen: list[tuple[int, dict[str, float]]] = []
    result = train(config, prepare_data(config, CACHE), lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [1, 2, 3]
    assert set(seen[0][1]) == {
        "train_loss", "val_loss", "val_accuracy", "lr", "grad_norm/0", "grad_norm/1",
        "grad_norm/2",
    }  # fmt: skip
    assert result.metrics == seen[-1][1]
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.to_dict()["outcome"] == "complete"


def test_a_truthy_report_prunes_the_run() -> None:
    config = DIGITS.replace(epochs=10)
    result = train(config, prepare_data(config, CACHE), lambda epoch, _: epoch == 2)
    assert (result.outcome, result.epochs_run) == ("pruned", 2)
    assert result.reason == "pruned by the report callback at epoch 2"


def test_early_stopping_stops_and_keeps_the_best_epochs_metrics() -> None:
    # A huge learning rate with momentum stalls, so validation accuracy stops improving.
    config = TrainConfig(
        dataset="wine", epochs=60, early_stopping_patience=3, optimizer="gd", alpha=0.5,
        device="cpu",
    )  # fmt: skip
    result = train(config, prepare_data(config, CACHE))
    assert result.outcome == "complete"
    assert "early_stopped" in result.flags
    assert result.epochs_run < 60
    best = max(h["val_accuracy"] for h in result.history)
    assert result.metrics["val_accuracy"] == best
    assert result.reason is not None and "did not improve" in result.reason


def test_regression_metrics_are_in_the_targets_original_units(tmp_path: Path) -> None:
    path = write_house_prices(tmp_path / "houses.csv")
    config = TrainConfig(dataset=str(path), target="price", epochs=30, alpha=3e-3)
    data = prepare_data(config)
    result = train(config, data)
    assert result.outcome == "complete"
    prices = np.loadtxt(path, delimiter=",", skiprows=1)[:, 3]
    # Trained on a standardized target (loss ~0.01), reported in dollars: between the noise
    # (10_000) and the spread of prices (the error of always predicting the mean).
    assert result.metrics["val_loss"] < 0.1
    assert 5_000 < result.metrics["val_rmse"] < 0.5 * prices.std()
    assert result.metrics["val_mae"] < result.metrics["val_rmse"]
    assert default_metric(data.task) == ("val_rmse", "minimize")


def test_unnormalized_large_scale_regression_with_large_alpha_diverges_with_a_reason(
    tmp_path: Path,
) -> None:
    path = write_house_prices(tmp_path / "houses.csv")
    config = DIGITS.replace(
        dataset=str(path), target="price", normalization="none", standardize_target=False,
        alpha=1.0,
    )  # fmt: skip
    result = train(config, prepare_data(config))
    assert result.outcome == "diverged"
    assert result.reason is not None
    assert result.reason.startswith("gradient norm of layer ")
    assert "> explode_threshold=10000) at epoch 1" in result.reason
    assert "exploding_gradients" in result.flags


def test_a_loss_that_overflows_is_reported_as_such() -> None:
    # No gradient threshold to catch it first: plain gradient descent with alpha=1e6 overflows.
    config = TrainConfig(
        dataset="diabetes", optimizer="gd", alpha=1e6, explode_threshold=1e300, device="cpu",
        standardize_target=False, normalization="none", epochs=5,
    )  # fmt: skip
    result = train(config, prepare_data(config, CACHE))
    assert result.outcome == "diverged"
    assert result.reason is not None
    assert (" became nan at epoch " in result.reason) or (" became inf at epoch " in result.reason)
    assert math.isnan(result.metrics["train_loss"]) or math.isinf(result.metrics["train_loss"])


def test_default_metric() -> None:
    assert default_metric("classification") == ("val_accuracy", "maximize")
    assert default_metric("regression") == ("val_rmse", "minimize")
    with pytest.raises(ValueError, match="task"):
        default_metric("ranking")
