"""An arm that is a search: one study per seed, run by real workers through `search.api`, read
back from the Optuna storage (values, outcomes, drawn parameters) and from MLflow (each
trial's per-epoch learning curve, which the workers logged there).

Study names are `lesson-NAME-ARM-sSEED-DIGEST`, where DIGEST hashes everything that defines
the study (its train settings, space, tiers and budget). Running the same lesson again with
the same settings therefore resumes the same studies, which are already done: it re-reads
them and draws the same figure. Other settings make other studies; nothing is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.lesson.context import LessonContext
from search.lesson.verdict import NEVER, epochs_to_reach


@dataclass(frozen=True)
class TrialPoint:
    number: int
    outcome: str  # complete | diverged | pruned
    value: float  # the study's metric; NaN unless complete
    params: dict[str, Any]  # the trial's TrainConfig fields that matter here (alpha...)
    curve: tuple[float, ...]  # the study's metric per epoch, from MLflow


@dataclass(frozen=True)
class ArmSeed:
    """One arm's study for one seed."""

    arm: str
    seed: int
    study: str
    metric: str
    direction: str
    trials: tuple[TrialPoint, ...]
    wall_time_s: float

    @property
    def complete(self) -> list[TrialPoint]:
        return [t for t in self.trials if t.outcome == "complete" and math.isfinite(t.value)]

    @property
    def best(self) -> TrialPoint | None:
        done = self.complete
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t.value)

    @property
    def best_value(self) -> float:
        best = self.best
        return best.value if best is not None else math.nan

    @property
    def diverged_share(self) -> float:
        return sum(t.outcome == "diverged" for t in self.trials) / max(len(self.trials), 1)

    def epochs_to(self, target: float) -> float:
        """The fewest epochs any trial of the arm took to reach `target` (NEVER if none did)."""
        return min(
            (epochs_to_reach(t.curve, target, self.direction) for t in self.trials),
            default=NEVER,
        )


@dataclass(frozen=True)
class ArmJob:
    """One study to run: an arm's train settings (over the experiment's) for one seed."""

    arm: str
    seed: int
    train: Mapping[str, Any]
    space: str = "lesson"
    space_toml: str | None = None
    tiers: int = 1
    keep: Sequence[str] = ("alpha",)


def run_arms(ctx: LessonContext, jobs: Sequence[ArmJob]) -> dict[str, list[ArmSeed]]:
    """Run every job, `ctx.options.parallel` studies at a time; results by arm, in seed order.

    Studies at once, each with its own worker process(es): most of a small study's time is its
    workers starting up (imports) and its summary, which overlap well on a few cores.
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max(1, ctx.options.parallel))
    try:
        futures = [pool.submit(run_arm_seed, ctx, job) for job in jobs]
        results = [future.result() for future in futures]
    except KeyboardInterrupt:
        # The running studies' workers are in their own sessions (see `search.runner`) and
        # finish their small budgets; no new study starts. The same command resumes.
        ctx.say("interrupted: starting no more studies; waiting for the running ones")
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
    out: dict[str, list[ArmSeed]] = {}
    for result in sorted(results, key=lambda r: r.seed):
        out.setdefault(result.arm, []).append(result)
    return {arm: out[arm] for arm in dict.fromkeys(job.arm for job in jobs)}


def study_name(lesson: str, arm: str, seed: int, identity: Mapping[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    label = re.sub(r"[^A-Za-z0-9_.+-]+", "-", arm).strip("-")  # a study name's characters
    return f"lesson-{lesson}-{label}-s{seed}-{digest[:8]}"


def run_arm_seed(ctx: LessonContext, job: ArmJob) -> ArmSeed:
    """Create (or resume) and run the study of `job.arm` for `job.seed`; read it back.

    The seed is the study's sampler seed and the trials' `split_seed` and `seed`, so every arm
    of one seed sees the same data split and draws from the same keyed random sequence.
    """
    from search import api

    assert ctx.sizes.trials is not None
    arm, seed, space, space_toml, tiers = job.arm, job.seed, job.space, job.space_toml, job.tiers
    base = {
        "dataset": ctx.sizes.dataset,
        "epochs": ctx.sizes.epochs,
        **job.train,
        "split_seed": seed,
        "seed": seed,
    }
    identity = {"train": base, "space": space_toml or space, "tiers": tiers, "n": ctx.sizes.trials}
    name = study_name(ctx.name, arm, seed, identity)
    request = api.StudyRequest(
        name=name,
        space=space,
        space_toml=space_toml,
        tiers=tiers,
        train=base,
        seed=seed,
        n_trials=ctx.sizes.trials,
        tracking_uri=ctx.tracking_uri,
    )
    run = api.run_study(
        request,
        ctx.storage_url,
        workers=ctx.options.workers,
        tracking_uri=ctx.tracking_uri,
        progress=False,
        out=io.StringIO(),  # the lesson prints one line per study instead
    )
    ctx.link_study(run.spec.parent_run_id)
    trials = read_trials(ctx, name, run.spec.metric, job.keep)
    # No outcome: the study was finished already (a second run with the same settings).
    wall_s = run.outcome.wall_time_s if run.outcome is not None else 0.0
    arm_seed = ArmSeed(arm, seed, name, run.spec.metric, run.spec.direction, trials, wall_s)
    ctx.say(
        f"{arm} seed {seed}: study {name}, {len(trials)} trials in "
        f"{wall_s:.1f} s, best {run.spec.metric} {arm_seed.best_value:.4g}, "
        f"{sum(t.outcome == 'diverged' for t in trials)} diverged"
    )
    return arm_seed


def read_trials(
    ctx: LessonContext, study: str, metric: str, keep: Sequence[str]
) -> tuple[TrialPoint, ...]:
    from search import api

    client = ctx.client()
    points = []
    for row in api.trials_table(study, ctx.storage_url):
        if row["state"] not in ("COMPLETE", "PRUNED"):
            continue  # an infrastructure failure, re-queued: its retry is in the table too
        config = {k.removeprefix("config."): v for k, v in row.items() if k.startswith("config.")}
        params = {k.removeprefix("params."): v for k, v in row.items() if k.startswith("params.")}
        curve: tuple[float, ...] = ()
        if row.get("mlflow_run_id"):
            history = client.get_metric_history(row["mlflow_run_id"], metric)
            curve = tuple(m.value for m in sorted(history, key=lambda m: m.step))
        values = {**params, **config}
        points.append(
            TrialPoint(
                number=int(row["number"]),
                outcome=str(row["outcome"]),
                value=float(row["value"]) if row["value"] is not None else math.nan,
                params={k: values[k] for k in keep if k in values},
                curve=curve,
            )
        )
    return tuple(points)


def best_of_seeds(arms: Mapping[str, Sequence[ArmSeed]]) -> list[float]:
    """Per seed, the best value over every arm (the common yardstick for "epochs to target")."""
    seeds = len(next(iter(arms.values())))
    out = []
    for i in range(seeds):
        values = [a[i].best_value for a in arms.values() if math.isfinite(a[i].best_value)]
        direction = next(iter(arms.values()))[i].direction
        pick = max if direction == "maximize" else min
        out.append(pick(values) if values else math.nan)
    return out
