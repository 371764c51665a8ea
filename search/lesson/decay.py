"""`decay`: no decay vs the lesson's schedules, each arm with its own alpha search.

The lesson's schedules: alpha0 / (1 + decay_rate * epoch), 0.97^epoch * alpha0,
k / sqrt(epoch) * alpha0, and manual (step) decay. The rates are fixed per arm (inverse time
at 0.2, the lesson's 0.97, k = 1, and a step down by 10x at half and at three quarters of the
epochs) and alpha0 is searched for each (log-uniform 1e-4..1, the `lesson` space's tier 1;
momentum), so each schedule is compared at its own best starting rate. Measured per arm and
seed: the best trial's final validation metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.lesson.arms import ArmJob, ArmSeed, run_arms
from search.lesson.context import LessonContext, Sizes
from search.lesson.report import COLORS, Outcome, Table, new_figure, title_with_verdict
from search.lesson.verdict import Spread, Verdict, paired

SUMMARY = "none vs 1/(1 + d*epoch) vs 0.97^epoch vs k/sqrt(epoch) vs step, alpha0 searched for each"
CLAIM = "Learning-rate decay helps: a decayed schedule ends better than a constant learning rate."
DEFAULT = Sizes(dataset="digits", trials=8, seeds=3, epochs=15)
QUICK = Sizes(dataset="digits", trials=2, seeds=1, epochs=3)
BASELINE = "none"


def schedules(epochs: int) -> dict[str, dict[str, Any]]:
    """arm -> the TrainConfig fields of its schedule (the step arm's milestones need `epochs`)."""
    steps = sorted({max(1, epochs // 2), max(2, (3 * epochs) // 4)})
    return {
        "none": {"decay": "none"},
        "inverse_time": {"decay": "inverse_time", "decay_rate": 0.2},
        "exponential": {"decay": "exponential", "decay_base": 0.97},
        "inverse_sqrt": {"decay": "inverse_sqrt", "decay_k": 1.0},
        "step": {"decay": "step", "decay_milestones": steps, "decay_gamma": 0.1},
    }


def judge(best: Mapping[str, Sequence[float]], direction: str, metric: str) -> Verdict:
    """Supported when at least half of the schedules beat no decay in a majority of seeds."""
    evidence, helped = [], 0
    names = [arm for arm in best if arm != BASELINE]
    for arm in names:
        record = paired(best[arm], best[BASELINE], direction)
        helped += record.majority
        evidence.append(
            f"{arm}: best {metric} {Spread.of(best[arm]).text()} vs none "
            f"{Spread.of(best[BASELINE]).text()}; better than none {record.text()}"
        )
    supported = helped * 2 >= len(names)
    evidence.append(f"{helped} of {len(names)} schedules beat no decay in most seeds")
    rule = (
        f"at least half of the {len(names)} schedules must end with a better best {metric} "
        "than no decay (strictly, seed by seed) in a majority of seeds"
    )
    return Verdict(CLAIM, supported, rule, tuple(evidence))


def run(ctx: LessonContext) -> Outcome:
    arms_config = schedules(ctx.sizes.epochs)
    jobs = [
        ArmJob(arm, seed, {"optimizer": "momentum", **fields})
        for seed in range(ctx.sizes.seeds)
        for arm, fields in arms_config.items()
    ]
    arms = run_arms(ctx, jobs)
    direction, metric = arms[BASELINE][0].direction, arms[BASELINE][0].metric
    best = {arm: [s.best_value for s in seeds] for arm, seeds in arms.items()}
    verdict = judge(best, direction, metric)
    rows = []
    for arm, seeds in arms.items():
        alphas = [s.best.params["alpha"] if s.best else float("nan") for s in seeds]
        ctx.log_arm(
            arm,
            {"optimizer": "momentum", **arms_config[arm], "searched": "alpha"},
            {"best_value": best[arm], "best_alpha": alphas},
            tags={"studies": ",".join(s.study for s in seeds)},
        )
        diffs = [b - n for b, n in zip(best[arm], best[BASELINE], strict=True)]
        rows.append(
            (
                arm,
                _describe(arms_config[arm]),
                Spread.of(best[arm]).text(),
                Spread.of(diffs).text() if arm != BASELINE else "-",
                Spread.of(alphas).text(),
            )
        )
    table = Table(
        ("schedule", "settings", f"best {metric}", "minus none (paired)", "best alpha0"),
        tuple(rows),
    )
    notes = ["cells: median over seeds (range); momentum beta 0.9, alpha0 searched per arm"]
    figure = _figure(arms, arms_config, ctx.sizes.epochs, metric, verdict)
    return Outcome(table, figure, verdict, notes, {"best": best})


def _describe(fields: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in fields.items() if k != "decay") or "-"


def _figure(
    arms: Mapping[str, list[ArmSeed]],
    config: Mapping[str, Mapping[str, Any]],
    epochs: int,
    metric: str,
    verdict: Verdict,
) -> Any:
    from trainers import TrainConfig, learning_rate

    fig, (lrs, curves, dots) = new_figure(3)
    for i, (colour, (arm, seeds)) in enumerate(zip(COLORS, arms.items(), strict=False)):
        cfg = TrainConfig(alpha=1.0, epochs=epochs, **config[arm])
        lrs.plot(
            range(1, epochs + 1),
            [learning_rate(cfg, e) for e in range(epochs)],
            color=colour,
            label=arm,
        )
        for j, s in enumerate(seeds):
            if s.best is not None and s.best.curve:
                curves.plot(
                    range(1, len(s.best.curve) + 1),
                    s.best.curve,
                    color=colour,
                    alpha=0.8,
                    label=arm if j == 0 else None,
                )
        values = [s.best_value for s in seeds]
        dots.scatter([i] * len(values), values, color=colour, s=40, zorder=3)
        dots.bar(i, Spread.of(values).median, color=colour, alpha=0.4)
    lrs.set(xlabel="epoch", ylabel="alpha / alpha0", title="the schedules")
    curves.set(xlabel="epoch", ylabel=metric, title="best trial of each arm, per seed")
    dots.set_xticks(range(len(arms)), list(arms), rotation=20)
    finite = [s.best_value for seeds in arms.values() for s in seeds if s.best is not None]
    if finite:
        spread = max(finite) - min(finite)
        dots.set_ylim(min(finite) - spread - 0.01, max(finite) + spread * 0.5 + 0.01)
    dots.set(ylabel=f"best {metric}", title="best per arm (dots: seeds, bar: median)")
    lrs.legend(fontsize=8)
    curves.legend(fontsize=8)
    title_with_verdict(fig, "Learning-rate decay", verdict)
    return fig
