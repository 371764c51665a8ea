"""The study's summary on its parent run: the trials table, the best config, pictures.

A picture that cannot be drawn (too few trials, one-valued params for importances) is
skipped with a warning and named in the `hpsearch.summary_skipped` tag: the summary is a
report, and a report never fails the study.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search.tracking import _plots
from search.tracking._env import describe, make_client
from search.tracking._ops import (
    Op,
    RunTarget,
    artifact_op,
    batch_ops,
    clean_tag,
    execute,
)
from search.tracking._study_run import StudyRunRef
from spaces.toml_text import dump_toml

if TYPE_CHECKING:
    import optuna

_logger = logging.getLogger("search.tracking")

SKIPPED_TAG = "hpsearch.summary_skipped"
LOG_X_PARAM = "alpha"
# The summary's parts: "best" (best_config.toml and the best-trial tag: milliseconds, what a
# person looks for first), "table" (trials.csv: pandas) and "pictures" (matplotlib and the
# importances' random forest: seconds, drawn off the command's critical path).
ALL_PARTS = ("best", "table", "pictures")


def study_report_files(
    study: optuna.Study,
    metric: str,
    direction: str,
    best_config: dict[str, Any],
    parts: tuple[str, ...] = ALL_PARTS,
) -> tuple[dict[str, bytes | str], dict[str, str]]:
    """The summary's files by artifact path, and what was skipped (name -> reason)."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"`direction` must be 'minimize' or 'maximize', but got {direction=}")
    files: dict[str, bytes | str] = {}
    skipped: dict[str, str] = {}

    def attempt(name: str, make: Callable[[], bytes | str]) -> None:
        try:
            files[name] = make()
        except Exception as exc:
            skipped[name] = describe(exc)
            _logger.warning("study summary: %s skipped: %s", name, skipped[name])

    if "table" in parts:
        attempt("trials.csv", lambda: study.trials_dataframe().to_csv(index=False))
    if "best" in parts:
        attempt("best_config.toml", lambda: _best_config_toml(study, metric, best_config))
    if "pictures" not in parts:
        return files, skipped
    attempt(
        "plots/optimization_history.png",
        lambda: _plots.optimization_history_png(study, metric, direction),
    )
    attempt("plots/param_importances.png", lambda: _plots.param_importances_png(study))
    attempt(
        "plots/parallel_coordinates.png", lambda: _plots.parallel_coordinates_png(study, metric)
    )
    attempt(
        f"plots/{LOG_X_PARAM}_vs_{metric.replace('/', '_')}.png",
        lambda: _plots.param_vs_metric_png(study, LOG_X_PARAM, metric, log_x=True),
    )
    return files, skipped


def _best_config_toml(study: optuna.Study, metric: str, best_config: dict[str, Any]) -> str:
    try:
        best = study.best_trial
        line = f"best trial {best.number} of study {study.study_name!r}: {metric} = {best.value}"
    except ValueError:
        line = f"study {study.study_name!r} has no complete trial yet"
    header = f"{line}\nTrain it again with: hpsearch train --config best_config.toml"
    return dump_toml(best_config, header=header)


def summarize_study(
    ref: StudyRunRef,
    study: optuna.Study,
    metric: str,
    direction: str,
    best_config: dict[str, Any],
    parts: tuple[str, ...] = ALL_PARTS,
) -> list[str]:
    """Upload the summary to the parent run; returns the artifact paths that were stored.

    Tracking trouble is logged, not raised: the study's results live in Optuna either way.
    """
    files, skipped = study_report_files(study, metric, direction, best_config, parts)
    tags: dict[str, str] = {}
    if skipped:
        tags[SKIPPED_TAG] = clean_tag("; ".join(f"{k}: {v}" for k, v in skipped.items()))
    try:
        best_value = study.best_value
        best_number = study.best_trial.number
    except ValueError:
        best_value, best_number = math.nan, -1
    if best_number >= 0 and "best" in parts:
        tags["best_trial"] = str(best_number)
    ops: list[Op] = batch_ops({}, [], tags) if tags else []
    ops += [artifact_op(path, data) for path, data in files.items()]
    client = make_client(ref.tracking_uri)
    target = RunTarget(ref.experiment_id, ref.parent_run_id)
    stored: list[str] = []
    for op in ops:
        try:
            execute(client, target, op)
        except Exception as exc:
            _logger.warning("study summary not fully stored in MLflow: %s", describe(exc))
            break
        if op["op"] == "artifact" and not any(
            e.startswith(op["path"] + ":") for e in target.artifact_errors
        ):
            stored.append(op["path"])
    if math.isfinite(best_value):
        _logger.info(
            "study %s: best %s = %s (trial %s)", study.study_name, metric, best_value, best_number
        )
    return stored
