"""The grid: the control arm of `hpsearch lesson random-vs-grid` and of `bench.grid_bench`.

This is the one place in hpsearch where a grid is built, as the thing random search is
compared against (Bergstra & Bengio 2012; the lesson's "don't use a grid"). It is never offered
as a sampler: `search.samplers` refuses one.

The space: one hyperparameter that matters a lot (alpha over five decades) and three that
matter little (hidden units, layers, Adam's beta1). Grid shapes follow the lesson's priority
order (alpha first); an axis with one point sits at the centre of its range. Two placements:
cell centres (the grid's best case: k points at the middles of k equal cells on each
parameter's scale) and endpoints (`np.linspace` from low to high, as grids are usually written).

The data: `make_classification` with 40 features of which 5 are informative, 4 classes, 2
clusters per class and 5% flipped labels, so the task is hard enough for the configuration to
matter.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.lesson.verdict import quartiles


@dataclass(frozen=True)
class Axis:
    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def to_unit_scale(self) -> tuple[float, float]:
        """The bounds on the scale a uniform draw happens on (log10 for log axes).

        An integer axis is widened by half a step on each side, so that each integer owns an
        equal share of the range (as a uniform integer draw gives it).
        """
        low, high = self.low, self.high
        if self.integer and not self.log:
            low, high = low - 0.5, high + 0.5
        return (math.log10(low), math.log10(high)) if self.log else (low, high)

    def from_unit_scale(self, value: float) -> float | int:
        raw = 10**value if self.log else value
        if self.integer:
            return int(min(max(math.floor(raw + 0.5), self.low), self.high))
        return float(raw)


# The searched space, in the lesson's priority order: alpha matters most, the rest little.
AXES = (
    Axis("alpha", 1e-5, 1.0, log=True),
    Axis("hidden_units", 16, 256, log=True, integer=True),
    Axis("hidden_layers", 1, 3, integer=True),
    Axis("beta1", 0.5, 0.99),
)
GRID_SHAPES = {9: [(3, 3, 1, 1)], 16: [(4, 4, 1, 1), (2, 2, 2, 2)]}
PLACEMENTS = ("centres", "endpoints")
FIXED = {"optimizer": "adam", "batch_size": 64, "device": "cpu"}
N_SAMPLES, N_FEATURES, N_INFORMATIVE, N_CLASSES = 2000, 40, 5, 4


def axis_points(axis: Axis, k: int, placement: str) -> list[float | int]:
    low, high = axis.to_unit_scale()
    if k == 1 or placement == "centres":
        # Centres of k equal cells; k = 1 is the middle of the range for either placement.
        points = [low + (i + 0.5) * (high - low) / k for i in range(k)]
    elif placement == "endpoints":
        if axis.integer and not axis.log:
            low, high = axis.low, axis.high  # the end integers themselves, not the widened range
        points = [float(p) for p in np.linspace(low, high, k)]
    else:
        raise ValueError(f"`placement` must be one of {list(PLACEMENTS)}, but got {placement=}")
    return [axis.from_unit_scale(p) for p in points]


def grid(shape: Sequence[int], placement: str) -> list[dict[str, Any]]:
    """The full factorial grid of `shape` points per axis (np.meshgrid over AXES)."""
    if len(shape) != len(AXES):
        raise ValueError(f"`shape` must have {len(AXES)} entries (one per axis), but got {shape}")
    per_axis = [axis_points(a, k, placement) for a, k in zip(AXES, shape, strict=True)]
    mesh = np.meshgrid(*[np.arange(len(p)) for p in per_axis], indexing="ij")
    configs = []
    for index in zip(*(m.ravel() for m in mesh), strict=True):
        configs.append(
            {a.name: per_axis[j][i] for j, (a, i) in enumerate(zip(AXES, index, strict=True))}
        )
    return configs


def suggest(trial: Any) -> dict[str, Any]:
    """The same space, sampled by Optuna (uniform on each axis's scale)."""
    out: dict[str, Any] = {}
    for axis in AXES:
        if axis.integer:
            out[axis.name] = trial.suggest_int(
                axis.name, int(axis.low), int(axis.high), log=axis.log
            )
        else:
            out[axis.name] = trial.suggest_float(axis.name, axis.low, axis.high, log=axis.log)
    return out


def write_dataset(directory: Path, name: str = "grid_data.npz") -> Path:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=N_SAMPLES,
        n_features=N_FEATURES,
        n_informative=N_INFORMATIVE,
        n_redundant=0,
        n_classes=N_CLASSES,
        n_clusters_per_class=2,
        flip_y=0.05,
        class_sep=1.0,
        random_state=0,
    )
    path = directory / name
    np.savez(path, X=x.astype(np.float64), target=y.astype(np.int64))
    return path


def paired_summary(random_best: Sequence[float], grid_best: Sequence[float]) -> dict[str, Any]:
    """Medians, IQRs, wins/ties/losses of random over grid, and a Wilcoxon signed-rank test."""
    from scipy.stats import wilcoxon

    diffs = [r - g for r, g in zip(random_best, grid_best, strict=True)]
    wins = sum(d > 1e-12 for d in diffs)
    losses = sum(d < -1e-12 for d in diffs)
    ties = len(diffs) - wins - losses
    nonzero = [d for d in diffs if abs(d) > 1e-12]
    p_value = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 1 else 1.0
    return {
        "random": quartiles(list(random_best)),
        "grid": quartiles(list(grid_best)),
        "median_diff": statistics.median(diffs),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "p_value": p_value,
    }


def space_toml(name: str = "random-vs-grid") -> str:
    """The same space as a `spaces` TOML document (every axis in tier 1), for the random arm's
    study: trials are drawn by hpsearch's own random sampler, never from the grid."""
    lines = [f'name = "{name}"', 'description = "alpha matters a lot; the others barely"']
    for axis in AXES:
        lines += [
            "",
            "[[param]]",
            f'name = "{axis.name}"',
            f'kind = "{"int" if axis.integer else "float"}"',
            "tier = 1",
            f"low = {int(axis.low) if axis.integer else axis.low!r}",
            f"high = {int(axis.high) if axis.integer else axis.high!r}",
            f'scale = "{"log" if axis.log else "linear"}"',
            f"default = {axis.from_unit_scale(sum(axis.to_unit_scale()) / 2)!r}",
        ]
    return "\n".join(lines) + "\n"
