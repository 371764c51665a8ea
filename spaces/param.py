"""`Param`: one searchable hyperparameter, and how it is drawn, derived and put back on its scale.

A parameter is *drawn* by Optuna under its drawn name and *derived* into the TrainConfig value:

| scale / transform        | drawn name         | drawn distribution            | value         |
| ------------------------ | ------------------ | ----------------------------- | ------------- |
| linear / log             | `name`             | uniform / log-uniform         | the draw      |
| pow2 (int)               | `log2_<name>`      | uniform integer exponent k    | 2 ** k        |
| log + transform=one_minus| `one_minus_<name>` | log-uniform on 1 - value      | 1 - the draw  |
| categorical              | `name`             | uniform over choices          | the draw      |

`one_minus` exists for averaging coefficients: beta in 0.9 .. 0.999 means an averaging window
1 / (1 - beta) of 10 .. 1000 steps, so 1 - beta is what should be spread evenly on a log scale.
A study's trial therefore shows both the drawn value (`one_minus_beta` in `trial.params`) and
the derived one (`beta` in the config the worker records).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

Kind = Literal["float", "int", "categorical"]
Scale = Literal["linear", "log", "pow2"]

KINDS: tuple[str, ...] = ("float", "int", "categorical")
SCALES: tuple[str, ...] = ("linear", "log", "pow2")
TRANSFORMS: tuple[str, ...] = ("one_minus",)

# A condition: (name of an earlier parameter, the values for which this one applies).
Condition = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a space. Build through `Space.from_toml` (which validates)."""

    name: str  # a TrainConfig field
    kind: Kind
    tier: int  # 1 = most important (the lesson's alpha); searched when tier <= the study's tiers
    default: Any  # the value when its tier is not searched or its condition does not hold
    low: float | int | None = None  # bounds on the value itself (beta: 0.9 .. 0.999)
    high: float | int | None = None
    choices: tuple[Any, ...] | None = None  # categorical only
    scale: Scale = "linear"
    transform: str | None = None  # "one_minus": draw 1 - value (float only)
    when: tuple[Condition, ...] = ()  # applies only when every condition holds
    help: str = ""

    @property
    def drawn_name(self) -> str:
        """The name under which Optuna draws this parameter (what `trial.params` shows)."""
        if self.transform == "one_minus":
            return f"one_minus_{self.name}"
        if self.scale == "pow2":
            return f"log2_{self.name}"
        return self.name

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of the drawn value."""
        if self.kind == "categorical":
            assert self.choices is not None
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            if self.scale == "pow2":
                return IntDistribution(_log2(self.low), _log2(self.high))
            return IntDistribution(int(self.low), int(self.high), log=self.scale == "log")
        low, high = float(self.low), float(self.high)
        if self.transform == "one_minus":
            low, high = 1.0 - high, 1.0 - low
        return FloatDistribution(low, high, log=self.scale == "log")

    def derive(self, drawn: Any) -> Any:
        """The TrainConfig value of a drawn value (beta = 1 - one_minus_beta; 2 ** exponent)."""
        if self.scale == "pow2":
            return 2 ** int(drawn)
        if self.transform == "one_minus":
            # Clamp: 1 - (1 - 0.999) may land a rounding error outside the declared bounds.
            assert self.low is not None and self.high is not None
            return min(max(1.0 - float(drawn), float(self.low)), float(self.high))
        return drawn

    def to_drawn(self, value: Any) -> Any:
        """The inverse of `derive`: the drawn value that gives `value`."""
        if self.scale == "pow2":
            return _log2(int(value))
        if self.transform == "one_minus":
            return 1.0 - float(value)
        return value

    def on_scale(self, drawn: float) -> float:
        """A drawn value on the scale it is drawn uniformly on (log for log, exponent for pow2)."""
        return math.log(drawn) if self.scale == "log" else float(drawn)

    def from_scale(self, x: float) -> float:
        return math.exp(x) if self.scale == "log" else x

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether every condition holds, given the values decided so far."""
        return all(values.get(ref) in allowed for ref, allowed in self.when)

    def suggest(self, trial: Any) -> Any:
        """Draw through the trial's public `suggest_*` API; return the derived value."""
        dist = self.distribution()
        if isinstance(dist, CategoricalDistribution):
            return trial.suggest_categorical(self.drawn_name, list(dist.choices))
        if isinstance(dist, IntDistribution):
            drawn = trial.suggest_int(self.drawn_name, dist.low, dist.high, log=dist.log)
        else:
            assert isinstance(dist, FloatDistribution)
            drawn = trial.suggest_float(self.drawn_name, dist.low, dist.high, log=dist.log)
        return self.derive(drawn)

    def describe_range(self) -> str:
        if self.kind == "categorical":
            assert self.choices is not None
            return " | ".join(_fmt(c) for c in self.choices)
        return f"{_fmt(self.low)} .. {_fmt(self.high)}"

    def describe_scale(self) -> str:
        if self.kind == "categorical":
            return "uniform choice"
        if self.transform == "one_minus":
            return f"{self.scale} of 1 - {self.name}"
        return self.scale

    def describe_condition(self) -> str:
        return " and ".join(
            f"{ref} in {{{', '.join(_fmt(v) for v in allowed)}}}" for ref, allowed in self.when
        )


def is_power_of_two(value: Any) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= 1
        and value & (value - 1) == 0
    )


def _log2(value: int | float) -> int:
    return int(value).bit_length() - 1


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
