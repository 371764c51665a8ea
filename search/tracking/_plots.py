"""PNG pictures for MLflow, drawn with matplotlib's object API on an Agg canvas.

No pyplot: pyplot keeps global figures and picks a GUI backend when a display exists, which
breaks in a worker's background thread. A `Figure` on `FigureCanvasAgg` is headless, holds no
global state and is freed with the object.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

LOSS_KEYS = ("train_loss", "val_loss")


def _figure(
    width: float = 7.0,
    height: float = 4.5,
    dpi: int = 100,
    layout: Literal["constrained", "compressed", "tight"] | None = "constrained",
) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _finite(values: Sequence[float]) -> list[float]:
    return [v if isinstance(v, int | float) and math.isfinite(v) else math.nan for v in values]


def learning_curves_png(history: Sequence[dict[str, float]]) -> bytes:
    """Train/validation loss (left) and the validation metric(s) (right) per epoch."""
    if not history:
        raise ValueError("`history` must hold at least one epoch, but got an empty list")
    epochs = [int(entry.get("epoch", i)) for i, entry in enumerate(history, start=1)]
    keys = sorted({k for entry in history for k in entry})
    val_metrics = [k for k in keys if k.startswith("val_") and k not in LOSS_KEYS]
    # Drawn once per trial, in the worker's background thread but on the same cores as the
    # training: a fixed layout and a modest resolution cost ~4x less CPU than "constrained".
    fig = _figure(8, 3.2, dpi=80, layout=None)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    loss_ax, metric_ax = fig.subplots(1, 2)
    for key in LOSS_KEYS:
        if key in keys:
            values = _finite([entry.get(key, math.nan) for entry in history])
            loss_ax.plot(epochs, values, label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    for key in val_metrics:
        values = _finite([entry.get(key, math.nan) for entry in history])
        metric_ax.plot(epochs, values, label=key)
    metric_ax.set(xlabel="epoch", title="validation metric")
    for ax in (loss_ax, metric_ax):
        if ax.has_data():
            ax.legend()
        ax.grid(alpha=0.3)
    return _png(fig)


def _complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    import optuna

    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]


def optimization_history_png(study: optuna.Study, metric: str, direction: str) -> bytes:
    trials = _complete_trials(study)
    if not trials:
        raise ValueError("no complete trial to draw")
    numbers = [t.number for t in trials]
    values = [_value(t) for t in trials]
    pick = max if direction == "maximize" else min
    best: list[float] = []
    for v in values:
        best.append(v if not best else pick(best[-1], v))
    fig = _figure()
    ax = fig.subplots()
    ax.scatter(numbers, values, s=14, label=metric)
    ax.step(numbers, best, where="post", color="tab:red", label=f"best ({direction})")
    ax.set(xlabel="trial", ylabel=metric, title="optimization history")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def param_importances_png(study: optuna.Study) -> bytes:
    """Optuna's default importances; needs >= 2 complete trials and a param that varies."""
    import optuna

    complete = len(_complete_trials(study))
    if complete < 2:
        # Optuna would return equal (meaningless) importances instead of failing.
        raise ValueError(f"importances need >= 2 complete trials, but got {complete}")
    importances = optuna.importance.get_param_importances(study)
    if not importances:
        raise ValueError("no parameter importance to draw")
    names = list(importances)[::-1]
    fig = _figure(7, 1.5 + 0.4 * len(names))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="importance", title="parameter importances")
    return _png(fig)


def _value(trial: optuna.trial.FrozenTrial) -> float:
    """A complete trial's value (`_complete_trials` keeps only those that have one)."""
    assert trial.value is not None, trial.number
    return float(trial.value)


def _axis_position(trial: optuna.trial.FrozenTrial, name: str) -> float:
    """A param's value mapped to [0, 1] along its distribution (log scale where sampled so)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dist = trial.distributions[name]
    value: Any = trial.params[name]
    if isinstance(dist, CategoricalDistribution):
        n = len(dist.choices)
        return dist.choices.index(value) / (n - 1) if n > 1 else 0.5
    assert isinstance(dist, FloatDistribution | IntDistribution), type(dist).__name__
    low, high, log = float(dist.low), float(dist.high), bool(dist.log)
    if high == low:
        return 0.5
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(value) - low) / (high - low)


def parallel_coordinates_png(study: optuna.Study, metric: str) -> bytes:
    trials = _complete_trials(study)
    names = sorted({n for t in trials for n in t.params})
    if not trials or not names:
        raise ValueError("no complete trial with parameters to draw")
    values = [_value(t) for t in trials]
    low, high = min(values), max(values)
    fig = _figure(max(7.0, 1.2 * (len(names) + 1)), 4.5)
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    xs = list(range(len(names) + 1))
    for trial, value in zip(trials, values, strict=True):
        scaled = (value - low) / (high - low) if high > low else 0.5
        ys = [
            _axis_position(t, n) if n in t.params else math.nan
            for t, n in ((trial, n) for n in names)
        ]
        ax.plot(xs, [*ys, scaled], color=cmap(scaled), alpha=0.7, linewidth=1)
    ax.set_xticks(xs, [*names, metric], rotation=30, ha="right")
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_title(f"parallel coordinates (color: {metric}, {low:.4g} to {high:.4g})")
    ax.grid(axis="x", alpha=0.5)
    return _png(fig)


def param_vs_metric_png(study: optuna.Study, param: str, metric: str, log_x: bool = True) -> bytes:
    trials = [t for t in _complete_trials(study) if param in t.params]
    if not trials:
        raise ValueError(f"no complete trial has the parameter {param!r}")
    fig = _figure()
    ax = fig.subplots()
    ax.scatter(
        [t.params[param] for t in trials],
        [math.nan if t.value is None else t.value for t in trials],
        s=16,
    )
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=param, ylabel=metric, title=f"{param} against {metric}")
    ax.grid(alpha=0.3, which="both")
    return _png(fig)
