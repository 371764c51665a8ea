"""`gradients`: the lesson's deep linear network, `w = 1.3 I` against `w = 0.7 I` (and `1.0 I`,
the boundary), L layers of 2 units, linear activations, zero biases.

The lesson: y_hat = w^[L] ... w^[1] x, so with w = 1.3 I the activations grow like 1.3^l and
"explode when there are many layers"; slightly below 1 they vanish. Each configuration is
trained for one full-batch epoch by `trainers` (the gradient it reports is the gradient at the
initial weights: one batch, measured before the step), and its activations are measured at
the initial weights. Per layer: the mean activation norm and the gradient norm (weight and
bias together, as the trainer reports it; in the vanishing case the bias part, which backward
shrinks only on its way down, dominates); per depth: the first layer's gradient norm. Not a
search: the configurations are fixed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.lesson.context import LessonContext, Sizes, one_torch_thread
from search.lesson.report import COLORS, Outcome, Table, new_figure, title_with_verdict
from search.lesson.verdict import Spread, Verdict, number_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainers import DataCache

SUMMARY = "deep linear network, w = 1.3 I vs 0.7 I: activation and gradient norms by layer"
CLAIM = (
    "In a deep network with w = 1.3 I the activations and gradients explode with depth; "
    "with w = 0.7 I they vanish."
)
DEFAULT = Sizes(dataset="wine", trials=None, seeds=3, epochs=1)
QUICK = Sizes(dataset="wine", trials=None, seeds=2, epochs=1)
SCALES = (1.3, 1.0, 0.7)
DEPTHS = (2, 5, 10, 20, 30, 40, 50)  # L: the number of weight matrices
QUICK_DEPTHS = (2, 5, 10, 20)
# Growth over the network's depth beyond these factors is named exploding / vanishing.
EXPLODE, VANISH = 1e2, 1e-2


@dataclass(frozen=True)
class ScaleNumbers:
    """For one scale: per seed, the growth of the activations over the deepest network's layers
    (last / first) and of the first layer's gradient norm from the shallowest to the deepest."""

    activation_growth: Sequence[float]
    gradient_growth: Sequence[float]


def name_outcome(numbers: ScaleNumbers) -> str:
    act = Spread.of(numbers.activation_growth).median
    grad = Spread.of(numbers.gradient_growth).median
    if act > EXPLODE and grad > EXPLODE:
        return "exploding"
    if act < VANISH and grad < VANISH:
        return "vanishing"
    return "neither"


def judge(numbers: Mapping[float, ScaleNumbers], depths: Sequence[int]) -> Verdict:
    named = {scale: name_outcome(n) for scale, n in numbers.items()}
    supported = named.get(1.3) == "exploding" and named.get(0.7) == "vanishing"
    evidence = [
        f"w = {scale} I: {named[scale]}; activations grow {Spread.of(n.activation_growth).text()}x"
        f" over {max(depths)} layers, the first layer's gradient norm "
        f"{Spread.of(n.gradient_growth).text()}x from depth {min(depths)} to {max(depths)}"
        for scale, n in numbers.items()
    ]
    rule = (
        f"w = 1.3 I must be named exploding and w = 0.7 I vanishing; a scale is exploding when "
        f"both growth factors exceed {EXPLODE:g} (median over seeds), vanishing when both are "
        f"below {VANISH:g}"
    )
    return Verdict(CLAIM, supported, rule, tuple(evidence))


@dataclass(frozen=True)
class Probe:
    activations: list[float]  # mean L2 norm of each layer's output, at the initial weights
    gradients: list[float]  # each layer's weight-gradient norm at the initial weights
    outcome: str  # what the trainer made of that one step
    reason: str | None
    flags: list[str]  # its health flags, e.g. vanishing_gradients


def probe(dataset: str, scale: float, depth: int, seed: int, cache: DataCache) -> Probe:
    from trainers import TrainConfig, prepare_data, train
    from trainers.model import build_mlp

    config = TrainConfig(
        dataset=dataset,
        activation="linear",
        init="scaled_identity",
        init_scale=scale,
        hidden_units=2,
        hidden_layers=depth - 1,
        optimizer="gd",
        alpha=1e-9,
        batch_size=1_000_000,
        epochs=1,
        split_seed=seed,
        seed=seed,
    )
    data = prepare_data(config, cache=cache)
    model = build_mlp(config, data.n_features, data.n_outputs, data.device)
    activations = model.activation_norms(data.x_train)
    result = train(config, data)
    first = result.history[0]
    gradients = [float(first[f"grad_norm/{i}"]) for i in range(depth)]
    return Probe(activations, gradients, result.outcome, result.reason, list(result.flags))


def run(ctx: LessonContext) -> Outcome:
    from trainers import DataCache

    depths = QUICK_DEPTHS if ctx.options.quick else DEPTHS
    deepest = max(depths)
    cache = DataCache()
    with one_torch_thread():
        probes = {
            (scale, depth, seed): probe(ctx.sizes.dataset, scale, depth, seed, cache)
            for scale in SCALES
            for depth in depths
            for seed in range(ctx.sizes.seeds)
        }
    seeds = range(ctx.sizes.seeds)
    numbers = {
        scale: ScaleNumbers(
            activation_growth=[
                _ratio(
                    probes[scale, deepest, s].activations[-1],
                    probes[scale, deepest, s].activations[0],
                )
                for s in seeds
            ],
            gradient_growth=[
                _ratio(
                    probes[scale, deepest, s].gradients[0],
                    probes[scale, min(depths), s].gradients[0],
                )
                for s in seeds
            ],
        )
        for scale in SCALES
    }
    verdict = judge(numbers, depths)
    rows = []
    for scale in SCALES:
        deep = probes[scale, deepest, 0]
        ctx.log_arm(
            f"w = {scale} I",
            {
                "init": "scaled_identity",
                "init_scale": scale,
                "hidden_units": 2,
                "activation": "linear",
                "depths": list(depths),
            },
            {
                "activation_growth": list(numbers[scale].activation_growth),
                "gradient_growth": list(numbers[scale].gradient_growth),
            },
            tags={"named": name_outcome(numbers[scale])},
            series={
                "activation_norm_by_layer": deep.activations,
                "grad_norm_by_layer": deep.gradients,
            },
        )
        rows.append(
            (
                f"{scale} I",
                Spread.of(numbers[scale].activation_growth).text(),
                number_text(probes[scale, min(depths), 0].gradients[0]),
                number_text(deep.gradients[0]),
                deep.outcome
                + (f" ({deep.reason})" if deep.reason else "")
                + "".join(f", flag {flag}" for flag in deep.flags),
                name_outcome(numbers[scale]),
            )
        )
    table = Table(
        (
            "w",
            f"activation growth over {deepest} layers",
            f"grad norm, depth {min(depths)}",
            f"grad norm, depth {deepest}",
            "trainer's outcome (1 step)",
            "named",
        ),
        tuple(rows),
    )
    notes = [
        f"inputs: the first 2 features of {ctx.sizes.dataset!r} (standardized); "
        f"depths {list(depths)}",
        "cells: median over seeds (range); gradients at the initial weights (one full batch)",
    ]
    figure = _figure(probes, depths, verdict)
    return Outcome(table, figure, verdict, notes, {str(k): vars(v) for k, v in numbers.items()})


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


def _figure(
    probes: Mapping[tuple[float, int, int], Probe], depths: Sequence[int], verdict: Verdict
) -> Figure:
    fig, (acts, grads, by_depth) = new_figure(3)
    deepest = max(depths)
    for colour, scale in zip(COLORS, SCALES, strict=False):
        p = probes[scale, deepest, 0]
        layers = range(1, deepest + 1)
        acts.plot(layers, p.activations, color=colour, label=f"w = {scale} I")
        grads.plot(layers, p.gradients, color=colour, marker=".", label=f"w = {scale} I")
        by_depth.plot(
            depths,
            [probes[scale, d, 0].gradients[0] for d in depths],
            color=colour,
            marker="o",
            label=f"w = {scale} I",
        )
    acts.set(
        yscale="log",
        xlabel="layer l",
        ylabel="mean ||a[l]||",
        title=f"activations by layer (L = {deepest})",
    )
    grads.set(
        yscale="log",
        xlabel="layer l",
        ylabel="||(dW[l], db[l])||",
        title=f"gradients by layer, weights and bias (L = {deepest})",
    )
    by_depth.set(
        yscale="log",
        xlabel="depth L",
        ylabel="||(dW[1], db[1])||",
        title="first layer's gradient against depth",
    )
    for ax in (acts, grads, by_depth):
        ax.legend(fontsize=8)
    title_with_verdict(fig, "Exploding and vanishing signals (deep linear net)", verdict)
    return fig
