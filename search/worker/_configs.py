"""From a trial number or a trial's stored parameters to the `TrainConfig` it trains.

Keyed samplers make trial n's configuration a pure function of (seed, n): `KeyedDraw` runs the
space's `suggest` against the sampler directly, before the trial's row exists, so a claim
writes a fresh trial with all its parameters in one transaction. `configuration` rebuilds the
config from stored parameters (a FrozenTrial replays them through the same `suggest`), the one
way every path (fresh, retried, adaptive) goes from parameters to a config.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from search.samplers import KeyedRandomSampler
from search.study import StudySpec
from search.trial_queue import Draw
from spaces import Space


def is_keyed(sampler: BaseSampler) -> bool:
    """Whether trial n's parameters can be drawn before the trial exists."""
    return isinstance(sampler, KeyedRandomSampler)


class KeyedDraw:
    """A stand-in for `optuna.Trial` that draws from a keyed sampler by trial number alone.

    Values are converted as `optuna.Trial.suggest_*` converts them, so a drawn configuration is
    the one an `ask`ed trial of that number would get.
    """

    def __init__(self, sampler: KeyedRandomSampler, number: int) -> None:
        self._sampler = sampler
        self._key = _numbered(number)
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._draw(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return int(self._draw(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        value: CategoricalChoiceType = self._draw(name, CategoricalDistribution(choices))
        return value

    def _draw(self, name: str, dist: BaseDistribution) -> Any:
        if name in self.params:
            return self.params[name]
        if dist.single():
            value = dist.to_external_repr(dist.to_internal_repr(_single_value(dist)))
        else:
            # Keyed samplers read only the trial's number (no study, no history).
            study: Any = None
            value = self._sampler.sample_independent(study, self._key, name, dist)
        self.params[name], self.distributions[name] = value, dist
        return value


def draw_fresh(space: Space, tiers: int, sampler: KeyedRandomSampler, number: int) -> Draw:
    draw = KeyedDraw(sampler, number)
    space.suggest(draw, tiers)
    return Draw(draw.params, draw.distributions)


@dataclass(frozen=True)
class Configured:
    config: dict[str, Any]  # the full TrainConfig, as a flat dict
    derived: dict[str, Any]  # values computed from the drawn ones (beta = 1 - one_minus_beta)


def configuration(
    space: Space,
    spec: StudySpec,
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    suggest_from: Any = None,
) -> Configured:
    """The config of a trial's parameters: space defaults < the study's [train] values < the
    values this trial drew (a parameter the space did not search keeps the study's own value,
    its `epochs`, `optimizer`...; a searched one always wins).

    `suggest_from` (an `optuna.Trial`) samples parameters not drawn yet: the adaptive path.
    """
    from trainers import TrainConfig

    if suggest_from is not None:
        drawn = space.suggest(suggest_from, spec.tiers)
        params = suggest_from.params
    else:
        drawn = space.suggest(_replay(params, distributions), spec.tiers)
    searched = {p.name for p in space.params if p.drawn_name in params}
    merged = {**drawn, **spec.base, **{k: v for k, v in drawn.items() if k in searched}}
    config = TrainConfig.from_dict(merged).to_dict()
    derived = {k: v for k, v in drawn.items() if k not in params}
    return Configured(config, derived)


def _replay(params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> Any:
    """A FrozenTrial's `suggest_*` returns its stored values: a stored trial's config replayed."""
    trial = _numbered(0)
    trial.params = dict(params)
    trial.distributions = dict(distributions)
    return trial


def _numbered(number: int) -> FrozenTrial:
    return FrozenTrial(
        number=number,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.datetime.now(),
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )


def _single_value(dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    assert isinstance(dist, FloatDistribution | IntDistribution)
    return dist.low
