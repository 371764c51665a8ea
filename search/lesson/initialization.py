"""`initialization`: He vs Xavier vs N(0, 1) vs a too-small scale on a deep ReLU MLP.

The lesson: "the more input features feeding into layer l, the smaller you want each w_i to be
... Var(w_i) = 1/n or 2/n"; for ReLU, randn * sqrt(2 / n_(l-1)). Every arm trains the same
deep ReLU network (the project's defaults otherwise: momentum, alpha 1e-2, standardized
inputs) with only the initialization changed: He (Var = 2/n), Xavier (Var = 1/n), N(0, 1)
(Var = 1 whatever n) and N(0, 0.01^2). Measured: each layer's gradient norm in the first
epoch and the final validation metric. Not a search: one fixed configuration per arm, trained
by `trainers` directly; the arms and their numbers are logged under the lesson's MLflow run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.lesson.context import LessonContext, Sizes, one_torch_thread
from search.lesson.report import COLORS, Outcome, Table, new_figure, title_with_verdict
from search.lesson.verdict import Spread, Verdict, is_better

SUMMARY = "He vs Xavier vs N(0, 1) vs too small on a deep ReLU MLP: gradient norm per layer"
CLAIM = (
    "Initializing with Var(w) = 2/n (He) or 1/n (Xavier) keeps a deep ReLU network's gradients "
    "from exploding or vanishing, and it trains; N(0, 1) explodes and a too-small scale vanishes."
)
DEFAULT = Sizes(dataset="digits", trials=None, seeds=3, epochs=15)
QUICK = Sizes(dataset="digits", trials=None, seeds=2, epochs=3)
HIDDEN_LAYERS, HIDDEN_UNITS = 6, 64
# arm -> TrainConfig fields; the lesson's two rules first, then the two that break them.
ARMS: dict[str, dict[str, Any]] = {
    "he (2/n)": {"init": "he"},
    "xavier (1/n)": {"init": "xavier"},
    "N(0, 1)": {"init": "fixed_normal", "init_scale": 1.0},
    "N(0, 0.01^2)": {"init": "fixed_normal", "init_scale": 0.01},
}
GOOD = ("he (2/n)", "xavier (1/n)")
# A layer's gradient norm over the largest layer's below this share is vanishing (the trainer's
# own `vanish_ratio`); above `explode_threshold` (1e4), or non-finite, is exploding.
VANISH_RATIO, EXPLODE = 1e-3, 1e4
MARGIN = 0.05  # relative: the lesson's initializations must train better by this much


@dataclass(frozen=True)
class ArmNumbers:
    """Per seed: the first epoch's smallest and largest layer gradient norms, the final metric
    (NaN when the run diverged: it gave no model)."""

    smallest: Sequence[float]
    largest: Sequence[float]
    final: Sequence[float]


def health(n: ArmNumbers, seed: int) -> str:
    low, high = n.smallest[seed], n.largest[seed]
    if not math.isfinite(high) or high > EXPLODE:
        return "exploding"
    if high <= 0 or low / high < VANISH_RATIO:
        return "vanishing"
    return "healthy"


def _score(value: float, direction: str) -> float:
    """A diverged run gave no model: the worst score (0 accuracy, an infinite error)."""
    if math.isfinite(value):
        return value
    return 0.0 if direction == "maximize" else math.inf


def judge(numbers: Mapping[str, ArmNumbers], metric: str, direction: str = "maximize") -> Verdict:
    seeds = len(next(iter(numbers.values())).final)
    evidence, supported = [], True
    good_finals = [Spread.of([_score(v, direction) for v in numbers[a].final]).median for a in GOOD]
    worst_good = min(good_finals) if direction == "maximize" else max(good_finals)
    for arm, n in numbers.items():
        states = [health(n, s) for s in range(seeds)]
        good = arm in GOOD
        healthy = sum(state == "healthy" for state in states)
        ok = healthy * 2 > seeds if good else healthy * 2 < seeds
        final = Spread.of([_score(v, direction) for v in n.final])
        if not good:
            margin = MARGIN * abs(worst_good) if math.isfinite(worst_good) else 0.0
            ok = ok and is_better(worst_good, final.median, direction, margin)
        supported &= ok
        evidence.append(
            f"{arm}: {', '.join(sorted(set(states)))} in the first epoch ({healthy}/{seeds} "
            f"healthy; smallest/largest layer gradient {Spread.of(n.smallest).text()} / "
            f"{Spread.of(n.largest).text()}), final {metric} {final.text()}"
        )
    rule = (
        f"He and Xavier must be healthy in a majority of seeds (every layer's first-epoch "
        f"gradient norm within {VANISH_RATIO:g}x of the largest, which stays <= {EXPLODE:g}); "
        f"N(0, 1) and the too-small scale must not be, and must end worse than the worse of "
        f"He and Xavier by more than {MARGIN:.0%} of it (a diverged run scores worst)"
    )
    return Verdict(CLAIM, supported, rule, tuple(evidence))


def _config(ctx: LessonContext, seed: int, fields: Mapping[str, Any]) -> Any:
    from trainers import TrainConfig

    return TrainConfig(
        dataset=ctx.sizes.dataset,
        epochs=ctx.sizes.epochs,
        hidden_layers=HIDDEN_LAYERS,
        hidden_units=HIDDEN_UNITS,
        optimizer="momentum",
        alpha=1e-2,
        split_seed=seed,
        seed=seed,
        **fields,
    )


def _train_arms(ctx: LessonContext, cache: Any) -> dict[str, list[Any]]:
    from trainers import prepare_data, train

    results: dict[str, list[Any]] = {arm: [] for arm in ARMS}
    for seed in range(ctx.sizes.seeds):
        for arm, fields in ARMS.items():
            config = _config(ctx, seed, fields)
            result = train(config, prepare_data(config, cache=cache))
            results[arm].append(result)
            ctx.say(f"{arm} seed {seed}: {result.outcome}, {result.epochs_run} epochs")
    return results


def run(ctx: LessonContext) -> Outcome:
    from trainers import DataCache, default_metric, prepare_data

    cache = DataCache()
    with one_torch_thread():
        results = _train_arms(ctx, cache)
    metric, direction = default_metric(prepare_data(_config(ctx, 0, {}), cache=cache).task)
    layers = HIDDEN_LAYERS + 1
    norms = {
        arm: [[float(r.history[0][f"grad_norm/{i}"]) for i in range(layers)] for r in rs]
        for arm, rs in results.items()
    }
    numbers = {
        arm: ArmNumbers(
            smallest=[min(n) for n in norms[arm]],
            largest=[max(n) for n in norms[arm]],
            final=[
                float(r.metrics.get(metric, math.nan)) if r.outcome == "complete" else math.nan
                for r in rs
            ],
        )
        for arm, rs in results.items()
    }
    verdict = judge(numbers, metric, direction)
    rows = []
    for arm, n in numbers.items():
        ctx.log_arm(
            arm,
            {
                **ARMS[arm],
                "hidden_layers": HIDDEN_LAYERS,
                "hidden_units": HIDDEN_UNITS,
                "optimizer": "momentum",
                "alpha": 1e-2,
            },
            {
                "final_metric": list(n.final),
                "first_epoch_grad_min": list(n.smallest),
                "first_epoch_grad_max": list(n.largest),
            },
            series={"first_epoch_grad_norm_by_layer": norms[arm][0]},
        )
        outcomes = sorted({r.outcome for r in results[arm]})
        rows.append(
            (
                arm,
                Spread.of(n.smallest).text(),
                Spread.of(n.largest).text(),
                ", ".join(sorted({health(n, s) for s in range(ctx.sizes.seeds)})),
                Spread.of([_score(v, direction) for v in n.final]).text(),
                ", ".join(outcomes),
            )
        )
    table = Table(
        (
            "init",
            "smallest layer grad (epoch 1)",
            "largest layer grad (epoch 1)",
            "health",
            f"final {metric}",
            "outcome",
        ),
        tuple(rows),
    )
    notes = [
        f"{HIDDEN_LAYERS} hidden ReLU layers of {HIDDEN_UNITS} units, momentum, alpha 0.01, "
        f"{ctx.sizes.epochs} epochs; cells: median over seeds (range); a diverged run scores 0",
    ]
    data_out = {arm: vars(n) for arm, n in numbers.items()}
    return Outcome(table, _figure(norms, results, metric, verdict), verdict, notes, data_out)


def _figure(
    norms: Mapping[str, list[list[float]]],
    results: Mapping[str, list[Any]],
    metric: str,
    verdict: Verdict,
) -> Any:
    fig, (grads, curves) = new_figure(2, width=6.0)
    ceiling = 10 * max(v for n in norms.values() for ns in n for v in ns if math.isfinite(v))
    for colour, arm in zip(COLORS, norms, strict=False):
        for layer_norms in norms[arm]:  # an overflowed norm is drawn at the top, as a triangle
            overflowed = [i for i, v in enumerate(layer_norms) if not math.isfinite(v)]
            grads.scatter(overflowed, [ceiling] * len(overflowed), color=colour, marker="^", s=50)
        for i, layer_norms in enumerate(norms[arm]):
            grads.plot(
                range(len(layer_norms)),
                layer_norms,
                color=colour,
                marker="o",
                alpha=0.8,
                label=arm if i == 0 else None,
            )
        for i, r in enumerate(results[arm]):
            values = [h.get(metric, math.nan) for h in r.history]
            curves.plot(
                range(1, len(values) + 1),
                values,
                color=colour,
                alpha=0.8,
                marker="x" if r.outcome == "diverged" else None,
                label=arm if i == 0 else None,
            )
    grads.axhline(EXPLODE, color="grey", linestyle="--", label="explode threshold")
    grads.set(
        yscale="log",
        xlabel="layer (0 = first)",
        ylabel="gradient norm",
        title="first-epoch gradient norm per layer (triangles: inf/nan)",
    )
    curves.set(xlabel="epoch", ylabel=metric, title="validation (x: diverged)")
    grads.legend(fontsize=8)
    curves.legend(fontsize=8)
    title_with_verdict(fig, "Weight initialization, deep ReLU MLP", verdict)
    return fig
