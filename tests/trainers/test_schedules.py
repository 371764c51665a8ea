"""Each decay schedule gives the lesson's formula values at epochs 0..5."""

from __future__ import annotations

import math

import pytest

from trainers import DataCache, TrainConfig, learning_rate, prepare_data, train

EPOCHS = range(6)
CASES = [
    (TrainConfig(alpha=0.2, decay="none"), [0.2] * 6),
    # alpha0 / (1 + decay_rate * epoch_nb)
    (
        TrainConfig(alpha=0.2, decay="inverse_time", decay_rate=0.5),
        [0.2, 0.2 / 1.5, 0.2 / 2.0, 0.2 / 2.5, 0.2 / 3.0, 0.2 / 3.5],
    ),
    # 0.97 ** epoch_nb * alpha0
    (
        TrainConfig(alpha=0.2, decay="exponential"),
        [0.2, 0.194, 0.18818, 0.1825346, 0.177058562, 0.17174680514],
    ),
    # k / sqrt(epoch_nb) * alpha0, with epoch 0 (a division by zero) using alpha0
    (
        TrainConfig(alpha=0.2, decay="inverse_sqrt", decay_k=0.5),
        [0.2, 0.1, 0.1 / math.sqrt(2), 0.1 / math.sqrt(3), 0.05, 0.1 / math.sqrt(5)],
    ),
    # manual steps: x gamma at each milestone
    (
        TrainConfig(alpha=0.2, decay="step", decay_milestones=(2, 4), decay_gamma=0.5),
        [0.2, 0.2, 0.1, 0.1, 0.05, 0.05],
    ),
]


@pytest.mark.parametrize(("config", "expected"), CASES, ids=lambda c: getattr(c, "decay", ""))
def test_schedule_values_at_epochs_zero_to_five(config: TrainConfig, expected: list[float]) -> None:
    got = [learning_rate(config, epoch) for epoch in EPOCHS]
    assert got == pytest.approx(expected, rel=1e-12)


def test_learning_rate_refuses_a_negative_epoch() -> None:
    with pytest.raises(ValueError, match="epoch >= 0"):
        learning_rate(TrainConfig(), -1)


def test_the_loop_writes_the_schedule_into_each_epochs_lr() -> None:
    config = TrainConfig(
        dataset="wine", decay="inverse_time", decay_rate=1.0, alpha=0.01, epochs=4, device="cpu"
    )
    result = train(config, prepare_data(config, DataCache()))
    assert [h["lr"] for h in result.history] == pytest.approx([0.01, 0.005, 0.01 / 3, 0.0025])
