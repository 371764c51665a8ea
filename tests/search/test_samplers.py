"""Samplers: keyed random draws (trial n is trial n whatever the workers do), sobol, no grid."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from scipy import stats

from search.samplers import KeyedRandomSampler, check_sampler, make_sampler
from spaces import Space, SpaceError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sequential(sampler: optuna.samplers.BaseSampler, space: Space, n: int) -> dict[int, Any]:
    study = optuna.create_study(sampler=sampler)
    out = {}
    for _ in range(n):
        trial = study.ask()
        out[trial.number] = space.suggest(trial, tiers=4)
        study.tell(trial, 0.0)
    return out


def _two_workers_interleaved(make: Any, space: Space, n: int, storage_url: str) -> dict[int, Any]:
    """Two workers (each its own study handle and sampler) share one storage, in an uneven order:
    worker A asks a trial and suggests only later, worker B grabs numbers in between."""
    study_a = optuna.create_study(storage=storage_url, study_name="s", sampler=make())
    study_b = optuna.load_study(storage=storage_url, study_name="s", sampler=make())
    out: dict[int, Any] = {}
    pending: list[optuna.Trial] = []
    rng = np.random.default_rng(123)
    while len(out) + len(pending) < n:
        study = study_a if rng.random() < 0.3 else study_b
        pending.append(study.ask())
        if len(pending) >= 3 or rng.random() < 0.4:
            trial = pending.pop(int(rng.integers(len(pending))))  # finish in a shuffled order
            out[trial.number] = space.suggest(trial, tiers=4)
    for trial in reversed(pending):
        out[trial.number] = space.suggest(trial, tiers=4)
    return out


def test_keyed_random_gives_trial_n_the_same_config_whatever_the_interleaving(
    lesson: Space, tmp_path: Path
) -> None:
    one_worker = _sequential(KeyedRandomSampler(5), lesson, 40)
    url = f"sqlite:///{tmp_path / 'keyed.db'}"
    two_workers = _two_workers_interleaved(lambda: KeyedRandomSampler(5), lesson, 40, url)
    assert two_workers == one_worker


def test_optunas_random_sampler_fails_the_same_check(lesson: Space, tmp_path: Path) -> None:
    # Negative control: the check above can fail. One shared stream depends on who asks when.
    one_worker = _sequential(optuna.samplers.RandomSampler(5), lesson, 40)
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    two_workers = _two_workers_interleaved(
        lambda: optuna.samplers.RandomSampler(5), lesson, 40, url
    )
    assert two_workers != one_worker


def test_sample_independent_out_of_order_and_per_parameter() -> None:
    sampler = KeyedRandomSampler(0)
    dist = FloatDistribution(1e-4, 1.0, log=True)
    study = optuna.create_study(sampler=sampler)  # in memory; the sampler never reads it

    def at(number: int, name: str = "alpha") -> float:
        trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
        trial.number = number
        return float(sampler.sample_independent(study, trial, name, dist))

    forward = [at(n) for n in range(50)]
    backward = [at(n) for n in reversed(range(50))][::-1]
    assert forward == backward
    assert len(set(forward)) == 50  # two trials never share a stream
    assert at(3, "alpha") != at(3, "epsilon")  # nor two parameters of one trial


@pytest.mark.parametrize(
    "dist",
    [
        FloatDistribution(1e-4, 1.0, log=True),
        FloatDistribution(-2.0, 3.0),
        FloatDistribution(0.0, 1.0, step=0.25),
        IntDistribution(1, 10, step=3),
        IntDistribution(1, 1024, log=True),
        CategoricalDistribution(["a", "b", "c"]),
    ],
    ids=["float-log", "float", "float-step", "int-step", "int-log", "categorical"],
)
def test_keyed_random_matches_optunas_random_sampler_in_distribution(dist: Any) -> None:
    def sample(sampler: optuna.samplers.BaseSampler) -> list[Any]:
        study = optuna.create_study(sampler=sampler)
        values = []
        for _ in range(1500):
            trial = study.ask()
            values.append(trial._suggest("x", dist))
            study.tell(trial, 0.0)
        return values

    keyed, plain = sample(KeyedRandomSampler(1)), sample(optuna.samplers.RandomSampler(1))
    assert all(dist._contains(dist.to_internal_repr(v)) for v in keyed)
    if isinstance(dist, CategoricalDistribution):
        counts = [keyed.count(c) for c in dist.choices]
        assert stats.chisquare(counts).pvalue > 0.01
    elif not dist.log and dist.step is not None:
        lattice = sorted(set(plain))
        assert sorted(set(keyed)) == lattice  # the same steps, ends included
        assert stats.chisquare([keyed.count(v) for v in lattice]).pvalue > 0.01
    else:
        assert stats.ks_2samp(keyed, plain).pvalue > 0.01


def test_sobol_point_n_is_row_n_of_the_scrambled_sequence(lesson: Space) -> None:
    from scipy.stats import qmc

    sampler = make_sampler("sobol", 3, lesson)
    reference = qmc.Sobol(d=len(lesson.params), scramble=True, seed=3).random(16)
    for n in (5, 0, 15, 9):  # out of order, as workers would
        np.testing.assert_allclose(sampler.point(n), reference[n])


def test_sobol_needs_the_space() -> None:
    with pytest.raises(SpaceError, match=r"sobol.* needs the space"):
        make_sampler("sobol", 0)


def test_tpe_is_opt_in() -> None:
    assert isinstance(make_sampler("tpe", 0), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", 0), KeyedRandomSampler)
    assert isinstance(make_sampler(" Random ", 0), KeyedRandomSampler)


@pytest.mark.parametrize("name", ["grid", "GridSampler", "grid_search", "GRID", "Grid-Search"])
def test_a_grid_is_refused_by_name_with_the_reason(name: str) -> None:
    with pytest.raises(SpaceError) as info:
        make_sampler(name, 0)
    message = str(info.value)
    assert "hard to say in advance which hyperparameters matter" in message
    assert "Bergstra & Bengio (2012" in message


def test_a_grid_sampler_object_is_refused_through_the_python_api() -> None:
    grid = optuna.samplers.GridSampler({"alpha": [1e-3, 1e-2]})
    with pytest.raises(SpaceError, match=r"GridSampler: a grid search is refused.*Bergstra"):
        check_sampler(grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        brute_force = optuna.samplers.BruteForceSampler()
    with pytest.raises(SpaceError, match="BruteForceSampler: a grid search is refused"):
        check_sampler(brute_force)
    keyed = KeyedRandomSampler(0)
    assert check_sampler(keyed) is keyed


def test_unknown_sampler_names_the_choices() -> None:
    with pytest.raises(SpaceError, match=r"must be one of \['random', 'sobol', 'tpe'\].*'cmaes'"):
        make_sampler("cmaes", 0)


def test_seed_must_be_a_non_negative_integer() -> None:
    with pytest.raises(SpaceError, match="`seed` must be an integer >= 0"):
        KeyedRandomSampler(-1)
