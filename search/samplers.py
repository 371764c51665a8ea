"""Samplers for a study: random (default), sobol, tpe. A grid is refused, with the lesson's reason.

`KeyedRandomSampler` draws each value from a generator keyed by (seed, trial number, parameter
name) instead of one shared stream. Optuna's `RandomSampler(seed)` hands out values in the order
workers happen to ask, so with several workers the same seed gives different studies; here trial
n of a study with seed s always gets the same configuration, whatever the number of workers,
their timing, or the order in which it suggests its parameters.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from typing import Any, TypedDict

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, BruteForceSampler, GridSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from search.optuna_internals import SearchSpaceTransform
from spaces import GRID_REFUSAL, Space, SpaceError, check_sampler_name

TPE_SEED_MODULUS = 2**32


def make_sampler(name: str, seed: int, space: Space | None = None) -> BaseSampler:
    """The sampler a study uses: "random" (default), "sobol" (needs `space`) or "tpe" (its
    seed taken modulo 2**32, NumPy's RandomState limit; the study keeps the seed as given).

    Any spelling of a grid ("grid", "GridSampler", "grid_search") raises `SpaceError` with the
    reason; so does an unknown name.
    """
    normalized = check_sampler_name(name)
    if normalized == "random":
        return KeyedRandomSampler(seed)
    if normalized == "sobol":
        if space is None:
            raise SpaceError(
                "sampler 'sobol' needs the space: each parameter owns one fixed Sobol dimension, "
                "in the space's order, so that every worker maps trial n to the same point"
            )
        return KeyedSobolSampler(seed, space)
    # TPE draws from NumPy's legacy RandomState, which takes seeds below 2**32 only: a larger
    # seed (random and sobol take any) is reduced modulo 2**32, so it is accepted and stable.
    return TPESampler(seed=seed % TPE_SEED_MODULUS)


def check_sampler(sampler: BaseSampler) -> BaseSampler:
    """Refuse a grid passed as an object through the Python API; return the sampler unchanged."""
    if isinstance(sampler, GridSampler | BruteForceSampler):
        raise SpaceError(f"sampler {type(sampler).__name__}: {GRID_REFUSAL}")
    if not isinstance(sampler, BaseSampler):
        raise SpaceError(
            f"`sampler` must be an optuna.samplers.BaseSampler, but got {type(sampler).__name__}"
        )
    return sampler


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's `hash` of a str is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class KeyedRandomSampler(BaseSampler):
    """Independent uniform sampling (like `RandomSampler`), keyed by (seed, trial number, name).

    Log scales and integer steps are handled by Optuna's own `_SearchSpaceTransform`
    (through `search.optuna_internals`), exactly as
    `RandomSampler` does: a uniform draw in the transformed bounds, then `untransform`.
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            entropy = np.random.SeedSequence().entropy  # an int when none is given
            assert isinstance(entropy, int)
            seed = entropy % 2**63
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpaceError(f"`seed` must be an integer >= 0, but got {seed=!r}")
        self.seed = seed

    def reseed_rng(self) -> None:
        # Optuna reseeds samplers for parallel `optimize(n_jobs>1)`; a keyed sampler has no
        # shared stream to reseed, and reseeding would break reproducibility.
        pass

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def rng_for(self, trial_number: int, param_name: str) -> np.random.Generator:
        """The generator of one (trial, parameter): no two trials or parameters share one."""
        return np.random.default_rng([self.seed, trial_number, stable_hash(param_name)])

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        trans = SearchSpaceTransform({param_name: param_distribution})
        rng = self.rng_for(trial.number, param_name)
        trans_params = rng.uniform(trans.bounds[:, 0], trans.bounds[:, 1])
        return trans.untransform(trans_params)[param_name]


class KeyedSobolSampler(KeyedRandomSampler):
    """Scrambled Sobol points: trial n takes point n; each parameter owns one dimension.

    Dimensions follow the space's parameter order (all tiers, so `--tiers` does not reshuffle
    them). Scrambling (seeded) keeps it random, not a lattice; points fill the cube more evenly
    than independent draws. A parameter outside the space falls back to keyed random draws.
    """

    _CACHE_SIZE = 256

    def __init__(self, seed: int, space: Space) -> None:
        super().__init__(seed)
        self.dimensions = {p.drawn_name: i for i, p in enumerate(space.params)}
        self._points: OrderedDict[int, np.ndarray] = OrderedDict()

    def point(self, trial_number: int) -> np.ndarray:
        """Point `trial_number` of the scrambled sequence, in [0, 1) ** dimensions."""
        if trial_number in self._points:
            self._points.move_to_end(trial_number)
            return self._points[trial_number]
        from scipy.stats import qmc  # 1+ s to import: only studies that use Sobol pay it

        engine = qmc.Sobol(d=len(self.dimensions), scramble=True, seed=self.seed)
        if trial_number:
            engine.fast_forward(trial_number)
        with warnings.catch_warnings():
            # Scipy warns that balance needs 2^m points; trials arrive one at a time by design.
            warnings.simplefilter("ignore", UserWarning)
            point: np.ndarray = engine.random(1)[0]
        self._points[trial_number] = point
        if len(self._points) > self._CACHE_SIZE:
            self._points.popitem(last=False)
        return point

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        dim = self.dimensions.get(param_name)
        if dim is None:
            return super().sample_independent(study, trial, param_name, param_distribution)
        u = float(self.point(trial.number)[dim])
        if isinstance(param_distribution, CategoricalDistribution):
            choices = param_distribution.choices
            return choices[min(int(u * len(choices)), len(choices) - 1)]
        trans = SearchSpaceTransform({param_name: param_distribution})
        low, high = trans.bounds[0]
        return trans.untransform(np.array([low + u * (high - low)]))[param_name]


class DrawnTrial(TypedDict):
    number: int
    params: dict[str, Any]  # what the sampler drew, by drawn name (e.g. one_minus_beta)
    config: dict[str, Any]  # the TrainConfig fields those values give (e.g. beta)


def draw(space: Space, n: int, seed: int, tiers: int, sampler: str) -> list[DrawnTrial]:
    """The first `n` trials a study with this sampler and seed would run, without training.

    Sampled like a study samples: an in-memory study, `ask`, `space.suggest`, `tell`.
    """
    study_sampler = make_sampler(sampler, seed, space)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(sampler=study_sampler)
        out: list[DrawnTrial] = []
        for _ in range(n):
            trial = study.ask()
            config = space.suggest(trial, tiers=tiers)
            # Told as pruned (no objective here): the trial is closed and numbers advance.
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            out.append({"number": trial.number, "params": dict(trial.params), "config": config})
        return out
    finally:
        optuna.logging.set_verbosity(verbosity)


__all__ = [
    "DrawnTrial",
    "KeyedRandomSampler",
    "KeyedSobolSampler",
    "check_sampler",
    "draw",
    "make_sampler",
    "stable_hash",
]
