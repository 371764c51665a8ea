"""Coarse to fine: `narrow` hugs the best trials on each parameter's own scale, keeping tiers."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from search.samplers import make_sampler
from spaces import Space, SpaceError, narrow

optuna.logging.set_verbosity(optuna.logging.WARNING)

BEST_ALPHA, BEST_ONE_MINUS_BETA = 1.7e-3, 2e-2


def _objective(config: dict[str, Any]) -> float:
    """A loss with its minimum at alpha = 1.7e-3, beta = 0.98, 64 hidden units, on log scales;
    alpha matters most (the lesson's tier 1), the others a little."""
    return (
        (math.log10(config["alpha"]) - math.log10(BEST_ALPHA)) ** 2
        + 0.02 * (math.log10(1 - config["beta"]) - math.log10(BEST_ONE_MINUS_BETA)) ** 2
        + 0.002 * (math.log2(config["hidden_units"]) - 6) ** 2
    )


@pytest.fixture(scope="module")
def finished_study(request: pytest.FixtureRequest) -> optuna.Study:
    lesson: Space = request.getfixturevalue("lesson")
    study = optuna.create_study(sampler=make_sampler("random", 0))
    for _ in range(300):
        trial = study.ask()
        study.tell(trial, _objective(lesson.suggest(trial, tiers=3)))
    trial = study.ask()  # a failed trial has no value and must be ignored
    lesson.suggest(trial, tiers=3)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study


def _log_width(low: float, high: float) -> float:
    return math.log10(high) - math.log10(low)


def test_alpha_narrows_around_the_best_trials(lesson: Space, finished_study: optuna.Study) -> None:
    k = 5
    best = sorted((t for t in finished_study.trials if t.value is not None), key=lambda t: t.value)[
        :k
    ]
    best_alphas = [t.params["alpha"] for t in best]
    assert all(1e-3 <= a <= 3e-3 for a in best_alphas)  # the premise of the acceptance test

    narrowed = narrow(lesson, finished_study.trials, k=k, direction="minimize")
    alpha, original = narrowed.param("alpha"), lesson.param("alpha")
    assert all(alpha.low <= a <= alpha.high for a in best_alphas)
    assert _log_width(alpha.low, alpha.high) <= _log_width(original.low, original.high) / 10
    assert alpha.scale == "log" and alpha.tier == 1
    assert alpha.default == best_alphas[0]


def test_beta_narrows_on_the_one_minus_beta_scale(
    lesson: Space, finished_study: optuna.Study
) -> None:
    narrowed = narrow(lesson, finished_study.trials, k=10, direction="minimize")
    beta, original = narrowed.param("beta"), lesson.param("beta")
    best_betas = [
        1 - t.params["one_minus_beta"]
        for t in sorted(
            (t for t in finished_study.trials if t.value is not None), key=lambda t: t.value
        )[:10]
    ]
    assert all(beta.low <= b <= beta.high for b in best_betas)
    assert beta.low > original.low or beta.high < original.high
    # Narrower in the averaging window 1 / (1 - beta), which is the scale beta is drawn on.
    assert _log_width(1 - beta.high, 1 - beta.low) < _log_width(1 - original.high, 1 - original.low)
    assert beta.transform == "one_minus" and beta.when == original.when


def test_tiers_scales_and_unseen_parameters_are_kept(
    lesson: Space, finished_study: optuna.Study
) -> None:
    narrowed = narrow(lesson, finished_study.trials, k=10, direction="minimize")
    assert [(p.name, p.tier, p.scale) for p in narrowed.params] == [
        (p.name, p.tier, p.scale) for p in lesson.params
    ]
    units = narrowed.param("hidden_units")
    assert units.low & (units.low - 1) == 0 and units.high & (units.high - 1) == 0
    assert narrowed.param("epsilon") == lesson.param("epsilon")  # tier 4: never drawn
    assert Space.from_toml(narrowed.to_toml()) == narrowed  # a study can store it


def test_categorical_keeps_the_choices_seen_in_the_best_trials(lesson: Space) -> None:
    trials = [
        {
            "params": {"alpha": 1e-2, "decay": "exponential", "one_minus_decay_base": 0.05},
            "value": 0.1,
        },
        {"params": {"alpha": 2e-2, "decay": "none"}, "value": 0.2},
        {"params": {"alpha": 1e-3, "decay": "inverse_sqrt"}, "value": 0.9},
    ]
    narrowed = narrow(lesson, trials, k=2, direction="minimize")
    decay = narrowed.param("decay")
    assert decay.choices == ("none", "exponential")  # original order, inverse_sqrt dropped
    assert decay.default == "exponential"  # the best trial's
    # k = 1 parameter values (decay_base) still get a range, not a point.
    base = narrowed.param("decay_base")
    assert base.low < 0.95 < base.high


def test_maximize_takes_the_largest_values_and_derived_names_are_accepted(lesson: Space) -> None:
    trials = [
        {"params": {"alpha": a, "beta": 0.95}, "value": v}
        for a, v in [(1e-4, 0.1), (1e-1, 0.97), (2e-1, 0.96), (1e-3, None)]
    ]
    narrowed = narrow(lesson, trials, k=2, direction="maximize")
    alpha = narrowed.param("alpha")
    assert alpha.low <= 1e-1 and 2e-1 <= alpha.high < 1.0
    assert narrowed.param("beta").default == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "down"}, "`direction` must be one of"),
        ({"k": 0}, "`k` must be an integer >= 1"),
        ({"trials": [{"params": {"alpha": 1e-3}, "value": None}]}, "at least one trial"),
        ({"trials": [object()]}, "must have `params`"),
    ],
)
def test_bad_arguments_are_refused(lesson: Space, kwargs: dict[str, Any], message: str) -> None:
    arguments = {
        "trials": [{"params": {"alpha": 1e-3}, "value": 1.0}],
        "k": 1,
        "direction": "minimize",
        **kwargs,
    }
    with pytest.raises(SpaceError, match=message):
        narrow(lesson, **arguments)
