"""`random-vs-grid`: N random trials against an N-point grid over the same space, many seeds.

The lesson: "don't use a grid, because hard to say in advance which hyperparameters will be
important". The space (`grid_control`): alpha over five decades matters a lot; hidden units,
layers and Adam's beta1 barely. Per seed (its own data split, weights and sampler seed, shared
by both arms, so the comparison is paired):

- random: a study of N trials through the normal machinery (hpsearch's keyed random sampler,
  workers, MLflow), on the same space written as a `spaces` TOML document;
- grid, the control: a k x k x 1 x 1 grid at cell centres (N = k^2; alpha and hidden units
  get k values each, in the lesson's priority order; the grid's best case), built by
  `grid_control` and trained by `trainers` in this process, one child run per seed.

Best validation accuracy per arm and seed (a diverged trial scores 0), a two-sided Wilcoxon
signed-rank test on the paired differences (the same statistics as `bench.grid_bench`).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.errors import StudyError
from search.lesson.arms import ArmJob, ArmSeed, run_arms
from search.lesson.context import LessonContext, Sizes, one_torch_thread
from search.lesson.grid_control import (
    AXES,
    N_FEATURES,
    N_INFORMATIVE,
    N_SAMPLES,
    grid,
    paired_summary,
    space_toml,
    write_dataset,
)
from search.lesson.report import Outcome, Table, new_figure, title_with_verdict
from search.lesson.verdict import Spread, Verdict

SUMMARY = "N random trials vs an N-point grid (the control) where few parameters matter, paired"
CLAIM = "Random search finds better configurations than a grid of the same size."
TASK = "grid-task"  # the default dataset: grid_control's make_classification task
DEFAULT = Sizes(dataset=TASK, trials=9, seeds=12, epochs=8)
QUICK = Sizes(dataset=TASK, trials=4, seeds=2, epochs=2)
TRAIN = {"optimizer": "adam", "batch_size": 64}  # what both arms fix (as bench.grid_bench)
ALPHA = 0.05  # significance level of the paired test


def shape_for(n: int) -> tuple[int, int, int, int]:
    k = math.isqrt(n)
    if k < 2 or k * k != n:
        raise StudyError(
            "`--trials` of random-vs-grid must be a square k*k >= 4 (the grid is k alphas x k "
            f"hidden-unit counts), but got {n}"
        )
    return (k, k, 1, 1)


def check(sizes: Sizes) -> None:
    assert sizes.trials is not None
    shape_for(sizes.trials)
    if sizes.dataset != TASK:
        from trainers import TrainConfig, prepare_data

        task = prepare_data(TrainConfig(dataset=sizes.dataset, device="cpu")).task
        if task != "classification":
            raise StudyError(
                "random-vs-grid compares the best val_accuracy: `--dataset` must be a "
                f"classification dataset, but got {sizes.dataset!r} ({task})"
            )


def judge(random_best: Sequence[float], grid_best: Sequence[float]) -> Verdict:
    summary = paired_summary(list(random_best), list(grid_best))
    supported = summary["median_diff"] > 0 and summary["p_value"] < ALPHA
    r_q, g_q = summary["random"], summary["grid"]
    evidence = (
        f"best val accuracy: random median {r_q[1]:.3f} (IQR {r_q[0]:.3f}..{r_q[2]:.3f}), grid "
        f"median {g_q[1]:.3f} (IQR {g_q[0]:.3f}..{g_q[2]:.3f})",
        f"median paired difference {summary['median_diff']:+.3f}; random wins/ties/losses "
        f"{summary['wins']}/{summary['ties']}/{summary['losses']} over {len(random_best)} seeds",
        f"two-sided Wilcoxon signed-rank p = {summary['p_value']:.3g}",
    )
    rule = (
        "random's median paired difference over the grid must be > 0 and the two-sided "
        f"Wilcoxon signed-rank test significant at p < {ALPHA}"
    )
    return Verdict(CLAIM, supported, rule, evidence)


def _task_path() -> str:
    folder = Path(tempfile.gettempdir()) / "hpsearch-lesson"
    folder.mkdir(exist_ok=True)
    path = folder / "grid_task.npz"
    if not path.exists():  # the same bytes every time (random_state=0): write once, atomically
        tmp = write_dataset(folder, f"grid_task.{os.getpid()}.npz")
        os.replace(tmp, path)
    return str(path)


def _score(config: dict[str, Any], cache: Any) -> float:
    from trainers import TrainConfig, prepare_data, train

    result = train(TrainConfig(**config), prepare_data(TrainConfig(**config), cache=cache))
    value = result.metrics.get("val_accuracy", math.nan)
    return 0.0 if result.outcome == "diverged" or not math.isfinite(value) else float(value)


def run(ctx: LessonContext) -> Outcome:
    from trainers import DataCache

    assert ctx.sizes.trials is not None
    shape = shape_for(ctx.sizes.trials)
    dataset = _task_path() if ctx.sizes.dataset == TASK else ctx.sizes.dataset
    axes = tuple(a.name for a in AXES)
    jobs = [
        ArmJob("random", seed, {"dataset": dataset, **TRAIN}, space_toml=space_toml(), keep=axes)
        for seed in range(ctx.sizes.seeds)
    ]
    random_arm = run_arms(ctx, jobs)["random"]
    random_best = [s.best_value if math.isfinite(s.best_value) else 0.0 for s in random_arm]

    points = grid(shape, "centres")
    cache = DataCache()
    grid_scores = []
    with one_torch_thread():
        for seed in range(ctx.sizes.seeds):
            base = {
                "dataset": dataset,
                "epochs": ctx.sizes.epochs,
                "split_seed": seed,
                "seed": seed,
            }
            grid_scores.append([_score({**base, **TRAIN, **p}, cache) for p in points])
            ctx.say(f"grid (control) seed {seed}: best {max(grid_scores[-1]):.4g}")
    grid_best = [max(scores) for scores in grid_scores]
    verdict = judge(random_best, grid_best)

    ctx.log_arm(
        "random",
        {"sampler": "random", "space": "random-vs-grid", **TRAIN},
        {"best_value": random_best},
        tags={"studies": ",".join(s.study for s in random_arm)},
    )
    ctx.log_arm(
        "grid (control)",
        {"grid": "x".join(map(str, shape)), "placement": "centres", **TRAIN},
        {"best_value": grid_best},
        tags={"hpsearch.control": "grid"},
    )
    diffs = [r - g for r, g in zip(random_best, grid_best, strict=True)]
    distinct_alphas = len({round(p["alpha"], 12) for p in points})
    table = Table(
        ("arm", "best val_accuracy", "distinct alphas tried", "paired difference"),
        (
            (
                "random",
                Spread.of(random_best).text(),
                str(ctx.sizes.trials),
                Spread.of(diffs).text(),
            ),
            (
                f"grid {'x'.join(map(str, shape))} (control)",
                Spread.of(grid_best).text(),
                str(distinct_alphas),
                "-",
            ),
        ),
    )
    task = (
        f"make_classification, {N_SAMPLES} rows, {N_FEATURES} features ({N_INFORMATIVE} "
        "informative), 4 classes"
        if ctx.sizes.dataset == TASK
        else ctx.sizes.dataset
    )
    notes = [
        f"task: {task}; Adam, batch 64; cells: median over seeds (range)",
        "space: alpha log 1e-5..1, hidden_units log-int 16..256, hidden_layers 1..3, beta1 "
        "0.5..0.99; the grid holds the last two at their range's centre",
    ]
    data = {"random": random_best, "grid": grid_best, "grid_points": points}
    figure = _figure(random_arm[0], points, grid_scores[0], random_best, grid_best, verdict)
    return Outcome(table, figure, verdict, notes, data)


def _figure(
    random0: ArmSeed,
    points: Sequence[dict[str, Any]],
    grid0: Sequence[float],
    random_best: Sequence[float],
    grid_best: Sequence[float],
    verdict: Verdict,
) -> Any:
    fig, (paired_ax, plane) = new_figure(2, width=6.0)
    low = min(*random_best, *grid_best) - 0.01
    high = max(*random_best, *grid_best) + 0.01
    paired_ax.plot([low, high], [low, high], color="grey", linestyle="--", label="equal")
    paired_ax.scatter(grid_best, random_best, color="tab:blue", s=40, zorder=3, label="a seed")
    paired_ax.set(
        xlabel="grid (control): best val accuracy",
        ylabel="random: best val accuracy",
        title="paired by seed (above the line: random wins)",
    )
    paired_ax.legend(fontsize=8)
    trials = random0.trials
    values = [t.value if math.isfinite(t.value) else 0.0 for t in trials] + list(grid0)
    vmin, vmax = min(values), max(values)
    shown = plane.scatter(
        [t.params["alpha"] for t in trials],
        [t.params["hidden_units"] for t in trials],
        c=values[: len(trials)],
        vmin=vmin,
        vmax=vmax,
        cmap="viridis",
        s=60,
        marker="o",
        edgecolors="black",
        label="random trials",
    )
    plane.scatter(
        [p["alpha"] for p in points],
        [p["hidden_units"] for p in points],
        c=list(grid0),
        vmin=vmin,
        vmax=vmax,
        cmap="viridis",
        s=90,
        marker="s",
        edgecolors="red",
        label="grid points (control)",
    )
    fig.colorbar(shown, ax=plane, label="val accuracy")
    plane.set(
        xscale="log",
        yscale="log",
        xlabel="alpha",
        ylabel="hidden units",
        title="seed 0: where each arm looked",
    )
    plane.legend(fontsize=8)
    title_with_verdict(fig, "Random search against a grid", verdict)
    return fig
