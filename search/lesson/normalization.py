"""`normalization`: none vs standardize vs min-max inputs, each arm a random search over alpha.

The lesson: "normalized inputs speed up training ... and ensure the process converges to a
stable solution". On data whose features have very different scales (`wine`: proline is in the
hundreds, hue around 1), each arm searches alpha log-uniformly over 1e-4..1 (the `lesson`
space's tier 1; momentum, the space's defaults otherwise) with the same budget and seeds.
Per arm and seed: the best validation metric, the epochs the fastest trial took to reach 95% of
the best value any arm reached on that seed (a common yardstick: an arm stuck at a poor value
must not look fast by reaching 95% of its own poor best), and the share of diverged trials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search.lesson.arms import ArmJob, ArmSeed, best_of_seeds, run_arms
from search.lesson.context import LessonContext, Sizes
from search.lesson.report import COLORS, Outcome, Table, arm_legend, new_figure, title_with_verdict
from search.lesson.verdict import NEVER, Spread, Verdict, epochs_text, is_better, target_of

SUMMARY = "none vs standardize vs min-max inputs, each arm a random search over alpha"
CLAIM = "Normalized inputs train faster and converge more stably than raw inputs."
DEFAULT = Sizes(dataset="wine", trials=12, seeds=3, epochs=20)
QUICK = Sizes(dataset="wine", trials=3, seeds=1, epochs=6)
ARMS = ("none", "standardize", "minmax")
BASELINE = "none"

# The rule, in numbers: a normalized arm wins a seed when its best value is better than the raw
# arm's by more than MARGIN (relative), or is no worse and it is clearly faster (FASTER times
# the epochs, and at least MIN_EPOCHS fewer) or clearly more stable (STABLER fewer diverged).
MARGIN = 0.02
FASTER = 0.75
MIN_EPOCHS = 2
STABLER = 0.15


@dataclass(frozen=True)
class ArmNumbers:
    """One number per seed for each measure."""

    best: Sequence[float]
    epochs: Sequence[float]  # epochs to the common target; NEVER when not reached
    diverged: Sequence[float]  # share of the arm's trials


def _margin(a: float, b: float) -> float:
    scale = max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else 0.0
    return MARGIN * scale


def wins_seed(arm: ArmNumbers, raw: ArmNumbers, i: int, direction: str) -> bool:
    a, b = arm.best[i], raw.best[i]
    if is_better(a, b, direction, _margin(a, b)):
        return True
    if is_better(b, a, direction, _margin(a, b)):
        return False
    ea, eb = arm.epochs[i], raw.epochs[i]
    faster = ea < NEVER and (eb == NEVER or (ea <= FASTER * eb and eb - ea >= MIN_EPOCHS))
    stabler = arm.diverged[i] <= raw.diverged[i] - STABLER
    return faster or stabler


def judge(numbers: Mapping[str, ArmNumbers], direction: str, metric: str) -> Verdict:
    """Supported when each normalized arm wins against raw inputs in a majority of seeds."""
    raw = numbers[BASELINE]
    seeds = len(raw.best)
    evidence = []
    supported = True
    for arm in ARMS:
        if arm == BASELINE:
            continue
        won = sum(wins_seed(numbers[arm], raw, i, direction) for i in range(seeds))
        supported &= won * 2 > seeds
        evidence.append(
            f"{arm} beats none in {won} of {seeds} seeds: best {metric} "
            f"{Spread.of(numbers[arm].best).text()} vs {Spread.of(raw.best).text()}, "
            f"epochs to target {epochs_text(numbers[arm].epochs)} vs "
            f"{epochs_text(raw.epochs)}, diverged {Spread.of(numbers[arm].diverged).text(2)}"
            f" vs {Spread.of(raw.diverged).text(2)}"
        )
    rule = (
        f"each normalized arm must beat `none` in a majority of seeds; it beats it on a seed "
        f"when its best {metric} is better by more than {MARGIN:.0%}, or no worse and it "
        f"reaches the target in <= {FASTER:.0%} of the epochs ({MIN_EPOCHS}+ fewer) or has "
        f"{STABLER:.0%} fewer diverged trials"
    )
    return Verdict(CLAIM, supported, rule, tuple(evidence))


def run(ctx: LessonContext) -> Outcome:
    jobs = [
        ArmJob(arm, seed, {"normalization": arm, "optimizer": "momentum"})
        for seed in range(ctx.sizes.seeds)
        for arm in ARMS
    ]
    arms = run_arms(ctx, jobs)
    direction, metric = arms[BASELINE][0].direction, arms[BASELINE][0].metric
    targets = [target_of(b, direction) for b in best_of_seeds(arms)]
    numbers = {
        arm: ArmNumbers(
            best=[s.best_value for s in seeds],
            epochs=[s.epochs_to(t) for s, t in zip(seeds, targets, strict=True)],
            diverged=[s.diverged_share for s in seeds],
        )
        for arm, seeds in arms.items()
    }
    verdict = judge(numbers, direction, metric)
    for arm, seeds in arms.items():
        ctx.log_arm(
            arm,
            {"normalization": arm, "optimizer": "momentum", "searched": "alpha"},
            {
                "best_value": list(numbers[arm].best),
                "epochs_to_target": list(numbers[arm].epochs),
                "diverged_share": list(numbers[arm].diverged),
            },
            tags={"studies": ",".join(s.study for s in seeds)},
        )
    table = Table(
        ("arm", f"best {metric}", "epochs to target", "diverged share", "complete trials"),
        tuple(
            (
                arm,
                Spread.of(numbers[arm].best).text(),
                epochs_text(numbers[arm].epochs),
                Spread.of(numbers[arm].diverged).text(2),
                str(sum(len(s.complete) for s in arms[arm])),
            )
            for arm in ARMS
        ),
    )
    notes = [
        "cells: median over seeds (range); target = 95% of the best value any arm reached on "
        f"that seed ({Spread.of(targets).text()})",
        "alpha log-uniform in 1e-4..1 (the lesson space's tier 1), momentum beta 0.9",
    ]
    return Outcome(table, _figure(arms, targets, metric, verdict), verdict, notes, _data(numbers))


def _data(numbers: Mapping[str, ArmNumbers]) -> dict[str, object]:
    return {
        arm: {"best": list(n.best), "epochs": list(n.epochs), "diverged": list(n.diverged)}
        for arm, n in numbers.items()
    }


def _figure(
    arms: Mapping[str, list[ArmSeed]], targets: Sequence[float], metric: str, verdict: Verdict
) -> Figure:
    fig, (scatter, curves, bars) = new_figure(3)
    finite = [t.value for seeds in arms.values() for s in seeds for t in s.complete]
    floor = min(finite, default=0.0)
    for colour, (arm, seeds) in zip(COLORS, arms.items(), strict=False):
        done = [t for s in seeds for t in s.complete]
        failed = [t for s in seeds for t in s.trials if t.outcome == "diverged"]
        scatter.scatter(
            [t.params["alpha"] for t in done],
            [t.value for t in done],
            color=colour,
            s=18,
            label=arm,
        )
        scatter.scatter(
            [t.params["alpha"] for t in failed],
            [floor] * len(failed),
            color=colour,
            marker="x",
            s=30,
        )
        for i, s in enumerate(seeds):
            best = s.best
            if best is not None and best.curve:
                curves.plot(
                    range(1, len(best.curve) + 1),
                    best.curve,
                    color=colour,
                    alpha=0.8,
                    label=arm if i == 0 else None,
                )
    scatter.set(
        xscale="log", xlabel="alpha", ylabel=f"final {metric}", title="every trial (x: diverged)"
    )
    curves.axhline(Spread.of(targets).median, color="grey", linestyle="--", label="target")
    curves.set(xlabel="epoch", ylabel=metric, title="best trial of each arm, per seed")
    names = list(arms)
    medians = [Spread.of([s.best_value for s in arms[a]]) for a in names]
    bars.bar(
        names,
        [m.median for m in medians],
        color=COLORS[: len(names)],
        yerr=[[m.median - m.low for m in medians], [m.high - m.median for m in medians]],
        capsize=4,
    )
    for i, arm in enumerate(names):
        share = Spread.of([s.diverged_share for s in arms[arm]]).median
        bars.annotate(
            f"{share:.0%} diverged",
            (i, medians[i].median),
            ha="center",
            xytext=(0, 6),
            textcoords="offset points",
            fontsize=8,
        )
    bars.set(ylabel=f"best {metric}", title="best per arm: median, range over seeds")
    for ax in (scatter, curves):
        arm_legend(ax)
    title_with_verdict(fig, "Input normalization", verdict)
    return fig
