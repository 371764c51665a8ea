"""`optimizers`: gradient descent vs momentum vs RMSprop vs Adam, each with its own alpha search.

The lesson: "here are some optimization algorithms that work faster than gradient descent".
Each optimizer gets the same budget of trials over the same alpha range (1e-4..1,
log-uniform: the `lesson` space's tier 1), with the lesson's update rules and defaults (beta
0.9; beta1 0.9, beta2 0.999, epsilon 1e-8), so each is compared at its own best learning
rate. Per arm and seed: the best trial's learning curve, and the epochs the fastest trial took
to reach a common target (95% of the best value any optimizer reached on that seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.lesson.arms import ArmJob, ArmSeed, best_of_seeds, run_arms
from search.lesson.context import LessonContext, Sizes
from search.lesson.report import COLORS, Outcome, Table, new_figure, title_with_verdict
from search.lesson.verdict import Spread, Verdict, epochs_text, paired_fewer, target_of

SUMMARY = "GD vs momentum vs RMSprop vs Adam, each with its own alpha search at equal budget"
CLAIM = "Momentum, RMSprop and Adam reach a good model in fewer epochs than gradient descent."
DEFAULT = Sizes(dataset="digits", trials=10, seeds=3, epochs=15)
QUICK = Sizes(dataset="digits", trials=2, seeds=1, epochs=3)
ARMS = ("gd", "momentum", "rmsprop", "adam")
BASELINE = "gd"
FASTER = 0.8  # a win: the target in under 80% of gradient descent's epochs (or GD never)


def judge(epochs: Mapping[str, Sequence[float]]) -> Verdict:
    """Supported when each of momentum, RMSprop and Adam is faster than GD in most seeds."""
    evidence, supported = [], True
    for arm in ARMS:
        if arm == BASELINE:
            continue
        record = paired_fewer(epochs[arm], epochs[BASELINE], FASTER)
        supported &= record.majority
        evidence.append(
            f"{arm}: epochs to target {epochs_text(epochs[arm])} vs gd "
            f"{epochs_text(epochs[BASELINE])}; faster than gd {record.text()}"
        )
    rule = (
        f"each of momentum, RMSprop and Adam must reach the target in under {FASTER:.0%} of "
        "gradient descent's epochs (or gradient descent never reaches it) in a majority of seeds"
    )
    return Verdict(CLAIM, supported, rule, tuple(evidence))


def run(ctx: LessonContext) -> Outcome:
    jobs = [
        ArmJob(arm, seed, {"optimizer": arm}) for seed in range(ctx.sizes.seeds) for arm in ARMS
    ]
    arms = run_arms(ctx, jobs)
    direction, metric = arms[BASELINE][0].direction, arms[BASELINE][0].metric
    targets = [target_of(b, direction) for b in best_of_seeds(arms)]
    epochs = {
        arm: [s.epochs_to(t) for s, t in zip(seeds, targets, strict=True)]
        for arm, seeds in arms.items()
    }
    verdict = judge(epochs)
    rows = []
    for arm, seeds in arms.items():
        best = [s.best_value for s in seeds]
        alphas = [s.best.params["alpha"] if s.best else float("nan") for s in seeds]
        ctx.log_arm(
            arm,
            {"optimizer": arm, "searched": "alpha"},
            {"best_value": best, "epochs_to_target": epochs[arm], "best_alpha": alphas},
            tags={"studies": ",".join(s.study for s in seeds)},
        )
        rows.append(
            (
                arm,
                Spread.of(best).text(),
                epochs_text(epochs[arm]),
                Spread.of(alphas).text(),
                f"{sum(s.diverged_share for s in seeds) / len(seeds):.0%}",
            )
        )
    table = Table(
        ("optimizer", f"best {metric}", "epochs to target", "best alpha", "diverged"), tuple(rows)
    )
    notes = [
        "cells: median over seeds (range); target = 95% of the best value any optimizer "
        f"reached on that seed ({Spread.of(targets).text()})",
    ]
    data = {"epochs": epochs, "targets": targets}
    return Outcome(table, _figure(arms, targets, epochs, metric, verdict), verdict, notes, data)


def _figure(
    arms: Mapping[str, list[ArmSeed]],
    targets: Sequence[float],
    epochs: Mapping[str, Sequence[float]],
    metric: str,
    verdict: Verdict,
) -> Any:
    fig, (curves, bars) = new_figure(2, width=6.0)
    for colour, (arm, seeds) in zip(COLORS, arms.items(), strict=False):
        for i, s in enumerate(seeds):
            if s.best is not None and s.best.curve:
                curve = s.best.curve
                curves.plot(
                    range(1, len(curve) + 1),
                    curve,
                    color=colour,
                    alpha=0.8,
                    label=f"{arm} (alpha {s.best.params['alpha']:.2g})" if i == 0 else None,
                )
    curves.axhline(Spread.of(targets).median, color="grey", linestyle="--", label="target")
    curves.set(xlabel="epoch", ylabel=metric, title="best trial of each optimizer, per seed")
    curves.legend(fontsize=8)
    names = list(arms)
    horizon = max(len(s.best.curve) for seeds in arms.values() for s in seeds if s.best) + 1
    for i, arm in enumerate(names):
        shown = [e if e != float("inf") else horizon for e in epochs[arm]]
        bars.scatter([i] * len(shown), shown, color=COLORS[i], s=40, zorder=3)
        bars.bar(i, Spread.of(shown).median, color=COLORS[i], alpha=0.4)
    bars.axhline(horizon, color="grey", linestyle=":", label="never reached")
    bars.set_xticks(range(len(names)), names)
    bars.set(ylabel="epochs", title="epochs to target (dots: seeds, bar: median)")
    bars.legend(fontsize=8)
    title_with_verdict(fig, "Optimizers, each at its own best alpha", verdict)
    return fig
