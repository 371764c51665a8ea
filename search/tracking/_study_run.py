"""The study's side of MLflow: one experiment and one parent run per study, found by name."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.redact import redact
from search.tracking._env import describe, is_permanent, make_client
from search.tracking._ops import (
    RunTarget,
    batch_ops,
    check_status,
    clean_key,
    clean_param,
    clean_tag,
    execute,
    now_ms,
    terminate_op,
)
from search.tracking._spool import spool_header, write_spool_file

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_logger = logging.getLogger("search.tracking")

STUDY_TAG = "hpsearch.study"
ROLE_TAG = "hpsearch.role"
REASON_TAG = "hpsearch.reason"
BEST_TRIAL_TAG = "best_trial"
BEST_VALUE_METRIC = "best_value"


@dataclass(frozen=True)
class StudyRunRef:
    """Where a study's runs go. Plain strings: it is stored with the study for every worker.

    `study_name` names child runs' `hpsearch.study` tag; when empty, the Tracker reads it
    from the experiment once.
    """

    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    study_name: str = ""

    def __repr__(self) -> str:  # a tracking URI can hold a password
        return (
            f"StudyRunRef(experiment_id={self.experiment_id!r}, "
            f"parent_run_id={self.parent_run_id!r}, tracking_uri={redact(self.tracking_uri)!r}, "
            f"study_name={self.study_name!r})"
        )


def ensure_study_run(
    tracking_uri: str,
    study_name: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    artifact_location: str | None = None,
) -> StudyRunRef:
    """Get or create the study's experiment and parent run; safe to call again and at once.

    Two processes creating the experiment at once: the loser gets RESOURCE_ALREADY_EXISTS
    and reads the winner's. Two processes creating the parent run at once: each looks again
    after creating; the oldest run (then the smallest id) wins and a loser deletes its own.
    """
    if not study_name:
        raise ValueError(f"`study_name` must be a non-empty string, but got {study_name=}")
    client = make_client(tracking_uri)
    experiment_id = _ensure_experiment(client, study_name, artifact_location)
    existing = _find_parent_runs(client, experiment_id, study_name)
    if existing:
        return StudyRunRef(experiment_id, existing[0], tracking_uri, study_name)

    run_tags = {clean_key(k): clean_tag(v) for k, v in (tags or {}).items()}
    run_tags.update({STUDY_TAG: study_name, ROLE_TAG: "study", "mlflow.runName": study_name})
    run = client.create_run(experiment_id, tags=run_tags, run_name=study_name)
    mine = run.info.run_id
    target = RunTarget(experiment_id, mine, run.info.artifact_uri)
    for op in batch_ops({clean_key(k): clean_param(v) for k, v in params.items()}, [], {}):
        execute(client, target, op)
    winners = _find_parent_runs(client, experiment_id, study_name)
    winner = winners[0] if winners else mine
    if winner != mine:
        client.delete_run(mine)
    return StudyRunRef(experiment_id, winner, tracking_uri, study_name)


def _ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        # A study name is reused after its experiment was deleted in the UI: bring it back
        # rather than fail, since MLflow keeps deleted names reserved.
        _logger.warning("restoring deleted MLflow experiment %r for the study", name)
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def _quoted(value: str) -> str:
    """A string literal's inside for an MLflow search filter."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _find_parent_runs(client: MlflowClient, experiment_id: str, study_name: str) -> list[str]:
    quoted = _quoted(study_name)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{quoted}' and tags.`{ROLE_TAG}` = 'study'",
        max_results=50,
    )
    ordered = sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
    return [r.info.run_id for r in ordered]


def find_trial_run(ref: StudyRunRef, trial_number: int, attempt: int) -> str | None:
    """The run of one trial attempt, found by its tags; None when there is none (or the
    server cannot say). For an attempt whose worker died before recording the run's id."""
    quoted = _quoted(ref.study_name)
    try:
        runs = make_client(ref.tracking_uri).search_runs(
            [ref.experiment_id],
            filter_string=(
                f"tags.`{STUDY_TAG}` = '{quoted}' and tags.`{ROLE_TAG}` = 'trial' and "
                f"tags.`hpsearch.trial_number` = '{int(trial_number)}' and "
                f"tags.`hpsearch.attempt` = '{int(attempt)}'"
            ),
            max_results=5,
        )
    except Exception as exc:
        _logger.warning("could not look up the run of trial %d: %s", trial_number, describe(exc))
        return None
    return str(runs[0].info.run_id) if runs else None


def mark_run_ended(
    tracking_uri: str,
    run_id: str,
    status: str,
    reason: str,
    spool_dir: Path | str | None = None,
    outcome: str = "infra",
) -> None:
    """End a dead attempt's run (e.g. KILLED after its worker vanished) with reason and
    outcome tags. This end wins over the dead attempt's own, should that be replayed later.

    Never raises for tracking trouble: a transient failure is spooled when `spool_dir` is
    given (replayed with the next `replay_spool`), else logged.
    """
    check_status(status)
    client = make_client(tracking_uri)
    target = RunTarget(experiment_id="", run_id=run_id)
    ops = [
        *batch_ops({}, [], {REASON_TAG: clean_tag(reason), "outcome": outcome}),
        terminate_op(status, now_ms()),
    ]
    while ops:
        try:
            execute(client, target, ops[0])
        except Exception as exc:
            if is_permanent(exc):
                _logger.warning("could not end run %s: %s", run_id, describe(exc))
                return
            if spool_dir is not None:
                experiment_id = _experiment_of(client, run_id)
                target.experiment_id = experiment_id
                write_spool_file(
                    Path(spool_dir), spool_header(tracking_uri, target, supersedes=True), ops
                )
            _logger.warning(
                "tracking server unreachable, run %s end %s: %s",
                run_id,
                "spooled" if spool_dir is not None else "lost",
                describe(exc),
            )
            return
        ops.pop(0)


def _experiment_of(client: MlflowClient, run_id: str) -> str:
    try:
        return str(client.get_run(run_id).info.experiment_id)
    except Exception:
        return ""  # the header's experiment is only needed to create a run; this one exists


def update_study_best(ref: StudyRunRef, value: float, trial_number: int, step: int) -> None:
    """One log_batch on the parent run: metric `best_value` at `step`, tag `best_trial`."""
    if not math.isfinite(value):
        return
    client = make_client(ref.tracking_uri)
    target = RunTarget(ref.experiment_id, ref.parent_run_id)
    op = batch_ops(
        {},
        [(BEST_VALUE_METRIC, float(value), now_ms(), int(step))],
        {BEST_TRIAL_TAG: str(trial_number)},
    )[0]
    try:
        execute(client, target, op)
    except Exception as exc:
        _logger.warning("could not update the study's best value in MLflow: %s", describe(exc))


# The tag MLflow's UI reads to open an experiment on its runs table ("Machine learning"), not
# on GenAI traces: the value its JS labels so (`ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML_KIND = "custom_model_development"


def mark_classic_ml(client: Any, experiment_id: str) -> None:
    """Tag the experiment so the UI opens it on its runs, not on GenAI traces."""
    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_ML_KIND)
    except Exception as exc:  # the UI's first page is a convenience; never fail a study on it
        _logger.warning("could not tag the MLflow experiment as machine learning: %s", exc)
