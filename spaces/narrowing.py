"""Coarse to fine: narrow a space around the best trials of a finished study.

Accepted trials (a sequence of either shape, mixed freely):
- objects with `.params` (a mapping) and `.value` (a float or None), e.g. `optuna.trial.FrozenTrial`
  (then `.state` must be COMPLETE, when the object has a `.state`);
- mappings `{"params": {...}, "value": float | None}`.
`params` holds the *drawn* names Optuna stores (`one_minus_beta`, `log2_batch_size`, `alpha`);
a TrainConfig name (`beta`, `batch_size`) is accepted where the drawn name is absent.
Trials without a finite value (failed, pruned, diverged) are skipped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import FloatDistribution, IntDistribution

from spaces.errors import SpaceError
from spaces.param import Param
from spaces.space import Space

DIRECTIONS = ("minimize", "maximize")


def narrow(
    space: Space,
    trials: Sequence[Any],
    k: int,
    direction: str,
    margin: float = 0.25,
    min_fraction: float = 0.02,
) -> Space:
    """A space whose bounds hug the best `k` trials, on each parameter's own scale.

    For a numeric parameter, the new bounds are the smallest and largest values among the
    best k trials, on the scale it is drawn uniformly on (log for log, the exponent for pow2,
    log(1 - beta) for beta), widened on each side by `margin` times that span (at least
    `min_fraction` of the original span, so that k = 1 does not collapse to a point) and
    clipped to the original bounds. Integers round inwards (see `_int_bounds`). A categorical
    keeps the choices
    seen among the best k. Tiers, scales and conditions are kept; each default becomes the
    best trial's value. Parameters the best trials never drew keep their bounds.
    """
    if direction not in DIRECTIONS:
        raise SpaceError(f"`direction` must be one of {list(DIRECTIONS)}, but got {direction=!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpaceError(f"`k` must be an integer >= 1, but got {k=!r}")
    for label, number in (("margin", margin), ("min_fraction", min_fraction)):
        if not (math.isfinite(number) and number >= 0):
            raise SpaceError(f"`{label}` must be a finite number >= 0, but got {label}={number!r}")

    finished = [_read(trial) for trial in trials]
    usable = [(value, params) for value, params in finished if value is not None]
    if not usable:
        raise SpaceError(
            f"narrowing needs at least one trial with a finite value, but got {len(finished)} "
            "trial(s) and none finished with one"
        )
    usable.sort(key=lambda item: item[0], reverse=direction == "maximize")
    best = [params for _, params in usable[:k]]

    narrowed = tuple(_narrow_param(p, best, margin, min_fraction) for p in space.params)
    result = dataclasses.replace(
        space,
        name=f"{space.name}-narrowed",
        params=narrowed,
        description=f"{space.name} narrowed around the best {len(best)} of {len(usable)} trials",
    )
    # Re-validate through text: what `narrow` returns is always a space a study can store.
    return Space.from_toml(result.to_toml(), source=f"<narrowed {space.name}>")


def _read(trial: Any) -> tuple[float | None, Mapping[str, Any]]:
    if isinstance(trial, Mapping):
        params, value, state = trial.get("params", {}), trial.get("value"), None
    else:
        params, value = getattr(trial, "params", None), getattr(trial, "value", None)
        state = getattr(trial, "state", None)
    if not isinstance(params, Mapping):
        raise SpaceError(
            f"a trial must have `params` (a mapping of drawn names to values), but got {trial!r}"
        )
    if state is not None and getattr(state, "name", str(state)) != "COMPLETE":
        return None, params
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, params
    return float(value), params


def _drawn(p: Param, params: Mapping[str, Any]) -> Any | None:
    if p.drawn_name in params:
        return params[p.drawn_name]
    if p.name in params:
        return p.to_drawn(params[p.name])
    return None


def _narrow_param(
    p: Param, best: list[Mapping[str, Any]], margin: float, min_fraction: float
) -> Param:
    drawn = [d for d in (_drawn(p, params) for params in best) if d is not None]
    if not drawn:
        return p
    best_value = p.derive(drawn[0])  # `best` is sorted: the first one seen is the best
    if p.kind == "categorical":
        assert p.choices is not None
        kept = tuple(c for c in p.choices if c in drawn)
        if not kept:
            return p
        return dataclasses.replace(
            p, choices=kept, default=best_value if best_value in kept else kept[0]
        )

    dist = p.distribution()
    assert isinstance(dist, FloatDistribution | IntDistribution)  # not categorical (above)
    lo_s, hi_s = p.on_scale(dist.low), p.on_scale(dist.high)
    xs = [p.on_scale(float(d)) for d in drawn]
    spread = max(xs) - min(xs)
    pad = max(margin * spread, min_fraction * (hi_s - lo_s) / 2)
    new_lo = dist.low if min(xs) - pad <= lo_s else p.from_scale(min(xs) - pad)
    new_hi = dist.high if max(xs) + pad >= hi_s else p.from_scale(max(xs) + pad)
    if p.kind == "int":
        new_lo, new_hi = _int_bounds(xs, pad, int(dist.low), int(dist.high))
    # Back from drawn bounds to value bounds (1 - x swaps them; 2 ** k for pow2).
    low, high = sorted((p.derive(new_lo), p.derive(new_hi)))
    if new_lo == dist.low and new_hi == dist.high:
        low, high = p.low, p.high
    elif p.transform == "one_minus":
        low = p.low if new_hi == dist.high else low
        high = p.high if new_lo == dist.low else high
    else:
        low = p.low if new_lo == dist.low else low
        high = p.high if new_hi == dist.high else high
    default = min(max(best_value, low), high)
    return dataclasses.replace(p, low=low, high=high, default=default)


def _int_bounds(xs: list[float], pad: float, low: int, high: int) -> tuple[int, int]:
    """An integer's narrowed bounds (on its drawn scale: the value, or pow2's exponent).

    The padded range rounded *inwards*: the seen values are integers, so a pad under one step
    adds nothing, and trials that agree on 1..2 layers narrow 1..4 to 1..2 (rounding outwards
    made it 1..3, and most integer ranges never narrowed). Trials that all agree on one value
    keep one step on each side, so that the refined study still searches.
    """
    seen_lo, seen_hi = round(min(xs)), round(max(xs))
    lo, hi = math.ceil(min(xs) - pad - 1e-9), math.floor(max(xs) + pad + 1e-9)
    if seen_lo == seen_hi:
        lo, hi = min(lo, seen_lo - 1), max(hi, seen_hi + 1)
    return max(lo, low), min(hi, high)
