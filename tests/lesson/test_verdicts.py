"""Each experiment's verdict on constructed cases whose answer is known in advance.

The verdict functions take the per-seed numbers an experiment measured; here the numbers are
built by hand (or, for `gradients`, measured on a network too shallow to explode), so a rule
that says "supported" on the wrong case, or cannot say "not supported", fails.
"""

from __future__ import annotations

import math

import pytest

from search.lesson import decay, gradients, initialization, normalization, optimizers, priorities
from search.lesson import random_vs_grid as rvg
from search.lesson.verdict import NEVER, Spread, epochs_to_reach, paired, paired_fewer, target_of


def test_spread_and_paired_helpers() -> None:
    assert Spread.of([0.9, 0.8, 1.0]).text() == "0.900 (0.800..1)"
    assert Spread.of([3, NEVER, NEVER]).text(inf="never") == "never (3..never)"
    assert epochs_to_reach([0.1, 0.5, 0.95, 0.99], 0.9, "maximize") == 3
    assert epochs_to_reach([0.1, 0.5], 0.9, "maximize") == NEVER
    assert epochs_to_reach([9.0, 4.0, 1.0], 4.0, "minimize") == 2
    assert target_of(1.0, "maximize") == pytest.approx(0.95)
    record = paired([0.9, 0.8, 0.7], [0.8, 0.8, 0.9], "maximize")
    assert (record.wins, record.ties, record.losses) == (1, 1, 1) and not record.majority
    fewer = paired_fewer([2, 3, NEVER], [5, NEVER, NEVER], ratio=0.8)
    assert (fewer.wins, fewer.ties, fewer.losses) == (2, 1, 0) and fewer.majority


# --- normalization ------------------------------------------------------------------------


def _norm(best: list[float], epochs: list[float], diverged: list[float]):
    return normalization.ArmNumbers(best, epochs, diverged)


def test_normalization_supported_when_raw_inputs_fail() -> None:
    numbers = {
        "none": _norm([0.40, 0.35, 0.45], [NEVER] * 3, [0.5, 0.6, 0.5]),
        "standardize": _norm([0.97, 0.98, 0.96], [3, 2, 4], [0.1, 0.1, 0.0]),
        "minmax": _norm([0.95, 0.96, 0.94], [5, 4, 6], [0.0, 0.0, 0.0]),
    }
    assert normalization.judge(numbers, "maximize", "val_accuracy").supported


def test_normalization_not_supported_when_features_already_share_one_scale() -> None:
    same = _norm([0.95, 0.96, 0.94], [4, 4, 5], [0.2, 0.2, 0.2])
    numbers = {"none": same, "standardize": same, "minmax": same}
    verdict = normalization.judge(numbers, "maximize", "val_accuracy")
    assert not verdict.supported and "beats none in 0 of 3 seeds" in verdict.evidence[0]


def test_normalization_counts_speed_only_beyond_noise() -> None:
    raw = _norm([0.95, 0.95, 0.95], [3, 3, 3], [0.0] * 3)
    one_epoch_faster = _norm([0.95, 0.95, 0.95], [2, 2, 2], [0.0] * 3)  # 2 vs 3: noise
    clearly_faster = _norm([0.95, 0.95, 0.95], [4, 4, 4], [0.0] * 3)
    slow_raw = _norm([0.95, 0.95, 0.95], [8, 8, 8], [0.0] * 3)
    judge = normalization.judge
    assert not judge({"none": raw, "standardize": one_epoch_faster, "minmax": one_epoch_faster},
                     "maximize", "m").supported  # fmt: skip
    assert judge({"none": slow_raw, "standardize": clearly_faster, "minmax": clearly_faster},
                 "maximize", "m").supported  # fmt: skip


# --- gradients ----------------------------------------------------------------------------


def test_gradients_names_exploding_and_vanishing() -> None:
    numbers = {
        1.3: gradients.ScaleNumbers([3.8e5, 3.8e5], [3.3e5, 3.2e5]),
        1.0: gradients.ScaleNumbers([1.0, 1.0], [1.0, 1.0]),
        0.7: gradients.ScaleNumbers([2.6e-8, 2.6e-8], [4e-8, 4e-8]),
    }
    verdict = gradients.judge(numbers, (2, 50))
    assert verdict.supported
    assert [gradients.name_outcome(n) for n in numbers.values()] == [
        "exploding",
        "neither",
        "vanishing",
    ]


def test_gradients_not_supported_on_a_shallow_network_measured_for_real() -> None:
    """Two and three layers: 1.3^2 is no explosion; the trainer's real numbers must say so."""
    from trainers import DataCache

    cache = DataCache()
    depths = (2, 3)
    numbers = {}
    for scale in gradients.SCALES:
        shallow = gradients.probe("wine", scale, 2, 0, cache)
        deep = gradients.probe("wine", scale, 3, 0, cache)
        numbers[scale] = gradients.ScaleNumbers(
            [deep.activations[-1] / deep.activations[0]],
            [deep.gradients[0] / shallow.gradients[0]],
        )
    assert numbers[1.3].activation_growth[0] == pytest.approx(1.3**2, rel=1e-4)
    verdict = gradients.judge(numbers, depths)
    assert not verdict.supported
    assert all(gradients.name_outcome(n) == "neither" for n in numbers.values())


# --- initialization -----------------------------------------------------------------------


def _init(smallest: float, largest: float, final: float) -> initialization.ArmNumbers:
    return initialization.ArmNumbers([smallest] * 2, [largest] * 2, [final] * 2)


def test_initialization_supported_when_only_the_lessons_rules_train() -> None:
    numbers = {
        "he (2/n)": _init(2.0, 3.0, 0.9),
        "xavier (1/n)": _init(0.3, 0.4, 0.8),
        "N(0, 1)": _init(1e17, math.inf, math.nan),
        "N(0, 0.01^2)": _init(5e-8, 0.3, 0.1),
    }
    assert initialization.judge(numbers, "val_accuracy").supported


def test_initialization_not_supported_when_every_scale_is_healthy() -> None:
    """A shallow network: every initialization trains; nothing to prevent."""
    numbers = {arm: _init(0.5, 1.0, 0.9) for arm in initialization.ARMS}
    assert not initialization.judge(numbers, "val_accuracy").supported


def test_initialization_judges_an_error_metric_the_other_way_round() -> None:
    """Regression: lower RMSE is better, and a diverged run's missing value is the worst."""
    numbers = {
        "he (2/n)": _init(2.0, 3.0, 50.0),
        "xavier (1/n)": _init(0.3, 0.4, 55.0),
        "N(0, 1)": _init(1e17, math.inf, math.nan),
        "N(0, 0.01^2)": _init(5e-8, 0.3, 80.0),
    }
    assert initialization.judge(numbers, "val_rmse", "minimize").supported
    numbers["N(0, 0.01^2)"] = _init(5e-8, 0.3, 56.0)  # vanishing, yet within 5% of Xavier
    assert not initialization.judge(numbers, "val_rmse", "minimize").supported


# --- optimizers ---------------------------------------------------------------------------


def test_optimizers_supported_when_each_beats_gradient_descent() -> None:
    epochs = {"gd": [NEVER, 12, 10], "momentum": [6, 5, 7], "rmsprop": [3, 2, 4], "adam": [2, 2, 3]}
    assert optimizers.judge(epochs).supported


def test_optimizers_not_supported_when_one_is_no_faster() -> None:
    epochs = {"gd": [4, 4, 5], "momentum": [4, 4, 5], "rmsprop": [2, 2, 3], "adam": [2, 2, 2]}
    verdict = optimizers.judge(epochs)
    assert not verdict.supported and verdict.evidence[0].startswith("momentum")


# --- decay ----------------------------------------------------------------------------------


def test_decay_supported_when_most_schedules_end_better() -> None:
    best = {
        "none": [0.90, 0.91, 0.92],
        "inverse_time": [0.93, 0.94, 0.93],
        "exponential": [0.92, 0.92, 0.93],
        "inverse_sqrt": [0.89, 0.90, 0.91],
        "step": [0.95, 0.95, 0.94],
    }
    assert decay.judge(best, "maximize", "val_accuracy").supported


def test_decay_not_supported_when_no_schedule_beats_a_constant_rate() -> None:
    best = {arm: [0.9, 0.9, 0.9] for arm in ("none", "inverse_time", "exponential", "step")}
    verdict = decay.judge(best, "maximize", "val_accuracy")
    assert not verdict.supported and verdict.evidence[-1].startswith("0 of 3")


# --- priorities -----------------------------------------------------------------------------


def test_priorities_supported_when_alpha_dominates() -> None:
    best = {"tier 1": [0.95, 0.96], "tiers 1-2": [0.95, 0.95], "tiers 1-3": [0.94, 0.95],
            "all tiers": [0.955, 0.96]}  # fmt: skip
    imps = [{"alpha": 0.7, "hidden_units": 0.2, "batch_size": 0.1}] * 2
    assert priorities.judge(best, imps, "maximize", "val_accuracy").supported


def test_priorities_not_supported_when_another_parameter_dominates() -> None:
    best = {"tier 1": [0.95, 0.96], "tiers 1-2": [0.95, 0.95], "tiers 1-3": [0.94, 0.95],
            "all tiers": [0.955, 0.96]}  # fmt: skip
    imps = [{"alpha": 0.1, "optimizer": 0.8, "batch_size": 0.1}] * 2
    assert not priorities.judge(best, imps, "maximize", "val_accuracy").supported
    worse = {**best, "tier 1": [0.80, 0.81]}
    alpha_top = [{"alpha": 0.7, "optimizer": 0.3}] * 2
    assert not priorities.judge(worse, alpha_top, "maximize", "val_accuracy").supported


# --- random vs grid -------------------------------------------------------------------------


def test_random_vs_grid_supported_on_a_clear_paired_gain() -> None:
    grid_best = [0.45 + 0.01 * i for i in range(10)]
    random_best = [g + 0.03 + 0.002 * i for i, g in enumerate(grid_best)]
    verdict = rvg.judge(random_best, grid_best)
    assert verdict.supported and "10/0/0" in verdict.evidence[1]


def test_random_vs_grid_not_supported_when_the_arms_are_exchangeable() -> None:
    grid_best = [0.45 + 0.01 * i for i in range(10)]
    random_best = [g + (0.02 if i % 2 else -0.02) for i, g in enumerate(grid_best)]
    assert not rvg.judge(random_best, grid_best).supported


@pytest.mark.parametrize("n", [3, 5, 1, 10])
def test_random_vs_grid_refuses_a_budget_no_square_grid_has(n: int) -> None:
    from search.errors import StudyError

    with pytest.raises(StudyError, match=r"square k\*k >= 4.*got " + str(n)):
        rvg.shape_for(n)
