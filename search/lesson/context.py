"""What every lesson experiment shares: its options, where it stores and tracks, and the one
MLflow parent run that groups its arms.

MLflow layout. Experiment `hpsearch-lesson` holds one parent run per `hpsearch lesson NAME`
invocation (tag `hpsearch.lesson = NAME`), which gets the figure, the table and the verdict.
Each arm is a nested child run of it (tag `hpsearch.role = lesson-arm`) with the arm's
settings and its per-seed numbers (metric step = seed). An arm that is a search runs one study
per seed through the normal machinery (`search.api`), whose trials live in the study's own
MLflow experiment as always; the arm's child run names those studies, and each study's parent
run is tagged `hpsearch.lesson_run` with the lesson's run id, so either side finds the other.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from search.errors import StudyError

LESSON_EXPERIMENT = "hpsearch-lesson"
LESSON_TAG = "hpsearch.lesson"
ROLE_TAG = "hpsearch.role"


@dataclass(frozen=True)
class Sizes:
    """An experiment's size: what `--dataset/--trials/--seeds/--epochs` default to."""

    dataset: str
    trials: int | None  # trials per arm and seed; None: the experiment is not a search
    seeds: int
    epochs: int


@dataclass(frozen=True)
class LessonOptions:
    """What the user asked for; None fields take the experiment's (default or quick) sizes."""

    dataset: str | None = None
    trials: int | None = None
    seeds: int | None = None
    epochs: int | None = None
    quick: bool = False
    workers: int | str = 1  # worker processes per study
    parallel: int = 3  # studies run at once
    storage: str | None = None
    tracking_uri: str | None = None
    out_dir: Path = Path("hpsearch-lesson")

    def sizes(self, name: str, default: Sizes, quick: Sizes) -> Sizes:
        base = quick if self.quick else default
        for field_name, low in (("trials", 1), ("seeds", 1), ("epochs", 1)):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or value < low):
                raise StudyError(f"`--{field_name}` must be an integer >= {low}, but got {value}")
        if self.trials is not None and base.trials is None:
            raise StudyError(
                f"`--trials` applies to the experiments that are searches; {name!r} trains "
                f"fixed configurations (it got --trials {self.trials})"
            )
        dataset = self.dataset or base.dataset
        path = Path(dataset).expanduser()
        if path.suffix.lower() in (".csv", ".npz"):
            dataset = str(path.resolve())  # workers may start elsewhere
        return Sizes(
            dataset=dataset,
            trials=self.trials if self.trials is not None else base.trials,
            seeds=self.seeds if self.seeds is not None else base.seeds,
            epochs=self.epochs if self.epochs is not None else base.epochs,
        )


@dataclass
class LessonContext:
    """One running experiment: storage, tracking, its MLflow parent run, and its output."""

    name: str
    sizes: Sizes
    options: LessonOptions
    storage_url: str
    tracking_uri: str  # with the user's credentials, if any: never printed unredacted
    artifact_location: str | None
    out: TextIO = field(default_factory=lambda: sys.stderr)
    experiment_id: str = ""
    parent_run_id: str = ""
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def open(cls, name: str, sizes: Sizes, options: LessonOptions, out: TextIO) -> LessonContext:
        from search.storage import absolute_storage_url, resolve_storage_url
        from search.study import local_artifact_location, storable_tracking_uri
        from search.tracking import default_tracking_uri

        storage_url = absolute_storage_url(resolve_storage_url(options.storage))
        own = options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if own:
            uri, location = own, local_artifact_location(storable_tracking_uri(own))
        else:
            uri, location = default_tracking_uri(storage_url)
        ctx = cls(name, sizes, options, storage_url, uri, location, out)
        ctx._start_parent_run()
        return ctx

    # --- MLflow -----------------------------------------------------------------------------

    def client(self) -> Any:
        from search.tracking import configure_client_env

        configure_client_env()
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def _start_parent_run(self) -> None:
        client = self.client()
        experiment = client.get_experiment_by_name(LESSON_EXPERIMENT)
        if experiment is None:
            from mlflow.exceptions import MlflowException

            try:
                self.experiment_id = client.create_experiment(
                    LESSON_EXPERIMENT, artifact_location=self.artifact_location
                )
            except MlflowException:  # created meanwhile by another lesson run
                self.experiment_id = client.get_experiment_by_name(LESSON_EXPERIMENT).experiment_id
        else:
            self.experiment_id = experiment.experiment_id
        run_name = f"{self.name} on {Path(self.sizes.dataset).name}"
        run = client.create_run(
            self.experiment_id,
            tags={LESSON_TAG: self.name, ROLE_TAG: "lesson", "mlflow.runName": run_name},
            run_name=run_name,
        )
        self.parent_run_id = run.info.run_id
        self.log_params(self.parent_run_id, self.settings())

    def settings(self) -> dict[str, Any]:
        s = self.sizes
        return {
            "lesson": self.name,
            "dataset": s.dataset,
            "trials": s.trials,
            "seeds": s.seeds,
            "epochs": s.epochs,
            "quick": self.options.quick,
            "workers": self.options.workers,
            "parallel": self.options.parallel,
        }

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if v is not None]
        for start in range(0, len(items), 100):  # MLflow's log_batch limit for params
            self.client().log_batch(run_id, params=items[start : start + 100])

    def log_arm(
        self,
        arm: str,
        params: Mapping[str, Any],
        per_seed: Mapping[str, list[float]],
        tags: Mapping[str, str] | None = None,
        series: Mapping[str, list[float]] | None = None,
    ) -> str:
        """One child run of the lesson run: the arm's settings and its numbers.

        `per_seed` metrics are logged with step = seed; `series` (e.g. a norm per layer) with
        step = index. Non-finite values are left out (MLflow stores them badly).
        """
        from mlflow.entities import Metric, RunTag

        client = self.client()
        run = client.create_run(
            self.experiment_id,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "mlflow.runName": arm,
                LESSON_TAG: self.name,
                ROLE_TAG: "lesson-arm",
                **(tags or {}),
            },
            run_name=arm,
        )
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(v), now, step)
            for mapping in (per_seed, series or {})
            for key, values in mapping.items()
            for step, v in enumerate(values)
            if math.isfinite(v)
        ]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
        self.log_params(run.info.run_id, params)
        client.log_batch(run.info.run_id, tags=[RunTag("arm", arm)])
        client.set_terminated(run.info.run_id, "FINISHED")
        return str(run.info.run_id)

    def link_study(self, study_parent_run_id: str | None) -> None:
        """Tag a study's own parent run with this lesson run (the way back from the study)."""
        if study_parent_run_id:
            self.client().set_tag(study_parent_run_id, "hpsearch.lesson_run", self.parent_run_id)

    def finish(self, files: list[Path], verdict: Any) -> None:
        client = self.client()
        for path in files:
            client.log_artifact(self.parent_run_id, str(path))
        client.set_tag(self.parent_run_id, "verdict", verdict.word)
        client.log_dict(self.parent_run_id, verdict.to_dict(), "verdict.json")
        client.set_terminated(self.parent_run_id, "FINISHED")

    def fail(self) -> None:
        # Ending the record is a courtesy; the real error is being raised.
        with contextlib.suppress(Exception):
            self.client().set_terminated(self.parent_run_id, "FAILED")

    # --- output -----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {text}", file=self.out, flush=True)


class one_torch_thread:
    """Train in this process with one torch thread, as the workers do (an MLP's small matmuls
    lose to a thread pool's synchronization; see `search.worker.configure_threads`), and give
    the caller's setting back afterwards."""

    def __enter__(self) -> None:
        import torch

        self._previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self._previous)
