"""`priorities`: the same budget spent on tier 1 only, tiers 1-2, tiers 1-3, and all tiers.

The lesson's order: alpha most important; then beta, hidden units and mini-batch size; then
layers and decay; Adam's betas almost never. Each arm is a random search over the `lesson`
space with `--tiers N` (the unsearched tiers stay at the space's defaults), with the same
budget and seeds. Measured: each arm's best validation metric, and, in the all-tiers arm
(where everything varies), each parameter's importance (Optuna's fANOVA, seeded; parameters
drawn in every trial, so conditional ones such as beta are left out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from search.lesson.arms import ArmJob, ArmSeed, run_arms
from search.lesson.context import LessonContext, Sizes
from search.lesson.report import COLORS, Outcome, Table, new_figure, title_with_verdict
from search.lesson.verdict import Spread, Verdict, is_better

SUMMARY = "equal budgets on tier 1 only, tiers 1-2, tiers 1-3 and all tiers of the lesson space"
CLAIM = (
    "Alpha matters most: it carries the largest share of the variance, and searching it alone "
    "does about as well as spreading the same budget over every tier."
)
DEFAULT = Sizes(dataset="digits", trials=10, seeds=3, epochs=6)
QUICK = Sizes(dataset="digits", trials=3, seeds=1, epochs=2)
ARMS = {"tier 1": 1, "tiers 1-2": 2, "tiers 1-3": 3, "all tiers": 4}
ALL = "all tiers"
MARGIN = 0.02  # relative: "about as well"


def judge(
    best: Mapping[str, Sequence[float]],
    importances: Sequence[Mapping[str, float]],
    direction: str,
    metric: str,
) -> Verdict:
    """Supported when alpha has the largest median importance in the all-tiers arm, and tier 1
    alone is within MARGIN of all tiers in a majority of seeds."""
    names = sorted({name for imp in importances for name in imp})
    median = {n: Spread.of([imp.get(n, 0.0) for imp in importances]).median for n in names}
    ranked = sorted(names, key=lambda n: -median[n])
    top = ranked[0] if ranked else None
    seeds = len(best[ALL])
    close = 0
    for a, b in zip(best["tier 1"], best[ALL], strict=True):
        margin = MARGIN * max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else 0.0
        close += math.isfinite(a) and not is_better(b, a, direction, margin)
    supported = top == "alpha" and close * 2 > seeds
    order = ", ".join(f"{n} {median[n]:.2f}" for n in ranked) or "none (too few complete trials)"
    evidence = [
        f"importance in the all-tiers arm (median over seeds): {order}",
        f"tier 1 alone within {MARGIN:.0%} of all tiers in {close} of {seeds} seeds: best "
        f"{metric} {Spread.of(best['tier 1']).text()} vs {Spread.of(best[ALL]).text()}",
        *(f"{arm}: best {metric} {Spread.of(v).text()}" for arm, v in best.items()),
    ]
    rule = (
        "alpha must have the largest median fANOVA importance among the all-tiers arm's "
        f"parameters, and searching tier 1 alone must reach within {MARGIN:.0%} of the "
        "all-tiers arm's best in a majority of seeds"
    )
    return Verdict(CLAIM, supported, rule, tuple(evidence))


def importances(ctx: LessonContext, arm: ArmSeed) -> dict[str, float]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if len(arm.complete) < 3:
        return {}  # fANOVA on fewer trials returns equal, meaningless shares
    study = optuna.load_study(study_name=arm.study, storage=ctx.storage_url)
    evaluator = FanovaImportanceEvaluator(seed=arm.seed)
    values = get_param_importances(study, evaluator=evaluator)
    return {_field(name): float(v) for name, v in values.items()}


def _field(drawn: str) -> str:
    """The TrainConfig field a drawn parameter sets (`log2_hidden_units` -> `hidden_units`)."""
    return drawn.removeprefix("log2_").removeprefix("one_minus_")


def run(ctx: LessonContext) -> Outcome:
    jobs = [
        ArmJob(arm, seed, {}, tiers=tiers, keep=("alpha", "optimizer", "hidden_units"))
        for seed in range(ctx.sizes.seeds)
        for arm, tiers in ARMS.items()
    ]
    arms = run_arms(ctx, jobs)
    direction, metric = arms[ALL][0].direction, arms[ALL][0].metric
    best = {arm: [s.best_value for s in seeds] for arm, seeds in arms.items()}
    imps = [importances(ctx, s) for s in arms[ALL]]
    verdict = judge(best, imps, direction, metric)
    rows = []
    for arm, seeds in arms.items():
        ctx.log_arm(
            arm,
            {"space": "lesson", "tiers": ARMS[arm]},
            {"best_value": best[arm]},
            tags={"studies": ",".join(s.study for s in seeds)},
        )
        rows.append(
            (
                arm,
                str(ARMS[arm]),
                Spread.of(best[arm]).text(),
                f"{sum(s.diverged_share for s in seeds) / len(seeds):.0%}",
            )
        )
    table = Table(("arm", "tiers searched", f"best {metric}", "diverged"), tuple(rows))
    notes = [
        "cells: median over seeds (range); tiers: 1 alpha; 2 beta, hidden units, batch size; "
        "3 layers, decay; 4 optimizer, Adam's beta1/beta2, epsilon",
    ]
    data = {"best": best, "importances": imps}
    return Outcome(table, _figure(arms, best, imps, metric, verdict), verdict, notes, data)


def _figure(
    arms: Mapping[str, list[ArmSeed]],
    best: Mapping[str, Sequence[float]],
    imps: Sequence[Mapping[str, float]],
    metric: str,
    verdict: Verdict,
) -> Any:
    fig, (dots, bars) = new_figure(2, width=6.0)
    for i, arm in enumerate(arms):
        values = best[arm]
        dots.scatter([i] * len(values), values, color=COLORS[i], s=40, zorder=3)
        dots.bar(i, Spread.of(values).median, color=COLORS[i], alpha=0.4)
    dots.set_xticks(range(len(arms)), list(arms))
    finite = [v for values in best.values() for v in values if math.isfinite(v)]
    if finite:
        spread = max(finite) - min(finite)
        dots.set_ylim(min(finite) - spread - 0.01, max(finite) + spread * 0.5 + 0.01)
    dots.set(ylabel=f"best {metric}", title="equal budgets (dots: seeds, bar: median)")
    names = sorted({n for imp in imps for n in imp})
    medians = {n: Spread.of([imp.get(n, 0.0) for imp in imps]).median for n in names}
    names.sort(key=lambda n: medians[n])
    for imp in imps:
        bars.scatter([imp.get(n, 0.0) for n in names], names, color="black", s=12, zorder=3)
    bars.barh(names, [medians[n] for n in names], color="tab:blue", alpha=0.5)
    bars.set(xlabel="fANOVA importance", title="all-tiers arm: importance (dots: seeds)")
    title_with_verdict(fig, "What to tune first", verdict)
    return fig
