"""The lesson space samples on the right scales (the acceptance statistics), by tier, repeatably."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from scipy import stats

from search.samplers import draw
from spaces import Space


def test_log10_alpha_is_uniform_over_its_decades(
    lesson_tier2_samples: list[dict[str, Any]],
) -> None:
    alpha = lesson_tier2_samples
    log_alpha = np.log10([c["alpha"] for c in alpha])
    assert stats.kstest(log_alpha, "uniform", args=(-3.0, 3.0)).pvalue > 0.01
    # The top decade 0.1 .. 1 holds ~1/3 of the trials (3 decades), not ~90% as a linear draw would.
    top = np.mean(log_alpha >= -1.0)
    assert abs(top - 1 / 3) < 0.053  # 5 standard deviations of a binomial(2000, 1/3) share


def test_the_same_checks_catch_a_linear_draw_of_alpha() -> None:
    # Negative control: the statistics above would fail for alpha ~ U(1e-3, 1).
    rng = np.random.default_rng(0)
    log_alpha = np.log10(rng.uniform(1e-3, 1.0, size=2000))
    assert stats.kstest(log_alpha, "uniform", args=(-3.0, 3.0)).pvalue < 1e-6
    assert np.mean(log_alpha >= -1.0) > 0.85


def test_one_minus_beta_is_log_uniform(lesson_tier2_samples: list[dict[str, Any]]) -> None:
    beta = np.array([c["beta"] for c in lesson_tier2_samples])
    assert np.all((beta >= 0.5) & (beta <= 0.98))
    low, high = math.log10(0.02), math.log10(0.5)
    assert stats.kstest(np.log10(1 - beta), "uniform", args=(low, high - low)).pvalue > 0.01
    # Centred on the lesson's 0.9 on that scale: sqrt(0.02 * 0.5) = 0.1 = 1 - 0.9.
    low_half = np.mean(beta < 0.9)
    assert abs(low_half - 0.5) < 0.056  # 5 standard deviations of a binomial(2000, 1/2) share
    # A linear draw of beta in 0.5 .. 0.98 would put ~83% below 0.9.
    assert abs(np.mean(np.random.default_rng(0).uniform(0.5, 0.98, 2000) < 0.9) - 0.5) > 0.3


@pytest.mark.parametrize(
    ("field", "low", "high"), [("hidden_units", 16, 512), ("batch_size", 16, 128)]
)
def test_units_and_batch_are_powers_of_two_spread_evenly(
    lesson_tier2_samples: list[dict[str, Any]], field: str, low: int, high: int
) -> None:
    values = [c[field] for c in lesson_tier2_samples]
    allowed = [2**k for k in range(int(math.log2(low)), int(math.log2(high)) + 1)]
    assert set(values) == set(allowed)  # every power of two in bounds, and nothing else
    counts = Counter(values)
    assert stats.chisquare([counts[v] for v in allowed]).pvalue > 0.01


def test_beta_is_drawn_as_one_minus_beta_and_both_are_visible(lesson: Space) -> None:
    trial = draw(lesson, n=1, seed=3, tiers=2, sampler="random")[0]
    assert "one_minus_beta" in trial["params"] and "beta" not in trial["params"]
    assert trial["config"]["beta"] == pytest.approx(1 - trial["params"]["one_minus_beta"])
    assert trial["config"]["batch_size"] == 2 ** trial["params"]["log2_batch_size"]


def test_tier_1_varies_only_alpha(lesson: Space) -> None:
    configs = [t["config"] for t in draw(lesson, n=200, seed=0, tiers=1, sampler="random")]
    defaults = lesson.defaults()
    assert set(configs[0]) == set(defaults)  # every parameter of the space, always
    for name in defaults:
        values = {c[name] for c in configs}
        if name == "alpha":
            assert len(values) == 200
        else:
            assert values == {defaults[name]}, name


def test_tier_2_keeps_layers_and_decay_at_defaults(lesson: Space) -> None:
    configs = [t["config"] for t in draw(lesson, n=200, seed=0, tiers=2, sampler="random")]
    defaults = lesson.defaults()
    for name in ("hidden_layers", "decay", "decay_rate", "decay_base", "optimizer", "beta1"):
        assert {c[name] for c in configs} == {defaults[name]}, name
    for name in ("alpha", "beta", "hidden_units", "batch_size"):
        assert len({c[name] for c in configs}) >= 4, name  # batch: 16, 32, 64, 128


def test_conditions_switch_parameters_on_and_off(lesson: Space) -> None:
    configs = [t["config"] for t in draw(lesson, n=400, seed=1, tiers=4, sampler="random")]
    defaults = lesson.defaults()
    for c in configs:
        if c["decay"] != "inverse_time":
            assert c["decay_rate"] == defaults["decay_rate"]
        if c["optimizer"] not in ("momentum", "rmsprop"):
            assert c["beta"] == defaults["beta"]
        if c["optimizer"] != "adam":
            assert (c["beta1"], c["beta2"]) == (defaults["beta1"], defaults["beta2"])
    adam = [c for c in configs if c["optimizer"] == "adam"]
    assert len({c["beta2"] for c in adam}) == len(adam) > 50  # searched when Adam is drawn
    inverse_time = [c for c in configs if c["decay"] == "inverse_time"]
    assert len({c["decay_rate"] for c in inverse_time}) == len(inverse_time) > 50


def test_same_seed_same_configurations_other_seed_other_ones(lesson: Space) -> None:
    for sampler in ("random", "sobol"):
        first = draw(lesson, n=30, seed=7, tiers=3, sampler=sampler)
        again = draw(lesson, n=30, seed=7, tiers=3, sampler=sampler)
        other = draw(lesson, n=30, seed=8, tiers=3, sampler=sampler)
        assert first == again
        assert [t["config"] for t in first] != [t["config"] for t in other]


def test_sobol_is_as_uniform_and_not_a_grid(lesson: Space) -> None:
    configs = [t["config"] for t in draw(lesson, n=512, seed=0, tiers=2, sampler="sobol")]
    log_alpha = np.log10([c["alpha"] for c in configs])
    assert stats.kstest(log_alpha, "uniform", args=(-3.0, 3.0)).pvalue > 0.01
    assert len(set(log_alpha)) == 512  # every trial a new alpha: no repeated grid values
    # Scrambled: a different seed moves every point.
    other = [t["config"]["alpha"] for t in draw(lesson, n=16, seed=1, tiers=1, sampler="sobol")]
    assert not set(other) & {c["alpha"] for c in configs[:16]}


def test_a_frozen_trial_replays_its_configuration(lesson: Space) -> None:
    import optuna

    from search.samplers import make_sampler

    study = optuna.create_study(sampler=make_sampler("random", 0))
    trial = study.ask()
    config = lesson.suggest(trial, tiers=3)
    study.tell(trial, 1.0)
    assert lesson.suggest(study.trials[0], tiers=3) == config


def test_tiers_must_be_at_least_one(lesson: Space) -> None:
    from spaces import SpaceError

    with pytest.raises(SpaceError, match="`tiers` must be an integer >= 1"):
        lesson.searched(0)
    assert lesson.searched(99) == list(lesson.params)  # beyond the last tier: everything


def test_the_lesson_spaces_defaults_are_trainconfigs(lesson: Space) -> None:
    """An untuned `hpsearch train` runs the space's default point (issue 13: they disagreed,
    Adam at 1e-3 against momentum at 1e-2)."""
    from trainers import TrainConfig

    untuned = TrainConfig().to_dict()
    assert {name: untuned[name] for name in lesson.defaults()} == lesson.defaults()
