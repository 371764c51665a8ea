"""MLflow tracking for studies: one experiment and parent run per study, one child run per
trial attempt, metrics batched off the training thread and spooled while the server is down.

MLflow is imported only inside this package (never by `trainers` or `spaces`), and lazily,
inside functions: `import search.tracking` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from search.redact import redact
from search.tracking._backlog import Backlog, count_backlog, replay_backlog, spool_dir
from search.tracking._env import (
    configure_client_env,
    default_tracking_uri,
    holds_run,
    make_client,
)
from search.tracking._ops import clean_tag
from search.tracking._plots import learning_curves_png
from search.tracking._spool import OnRunCreated, ReplayedRun, replay_files
from search.tracking._study_report import summarize_study
from search.tracking._study_run import (
    REASON_TAG,
    StudyRunRef,
    ensure_study_run,
    find_trial_run,
    mark_run_ended,
    update_study_best,
)
from search.tracking._tracker import DEFAULT_SPOOL_DIR, MAX_RUNS_BEHIND, Tracker, TrialRun

__all__ = [
    "DEFAULT_SPOOL_DIR",
    "MAX_RUNS_BEHIND",
    "REASON_TAG",
    "Backlog",
    "OnRunCreated",
    "ReplayedRun",
    "StudyRunRef",
    "Tracker",
    "TrialRun",
    "clean_tag",
    "configure_client_env",
    "count_backlog",
    "default_tracking_uri",
    "ensure_study_run",
    "find_trial_run",
    "holds_run",
    "learning_curves_png",
    "mark_run_ended",
    "redact",
    "replay_backlog",
    "replay_spool",
    "spool_dir",
    "summarize_study",
    "update_study_best",
]


def replay_spool(
    tracking_uri: str,
    spool_dir: Path | str = DEFAULT_SPOOL_DIR,
    on_run_created: OnRunCreated | None = None,
) -> list[ReplayedRun]:
    """Send the runs spooled for `tracking_uri` while it was down; stops if it still is.

    Returns one `ReplayedRun` per spool file touched; `created` ones have a run id the
    Optuna trial does not know yet (also passed to `on_run_created`).
    """
    return replay_files(make_client(tracking_uri), tracking_uri, Path(spool_dir), on_run_created)
