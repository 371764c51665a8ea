"""The end of a study in MLflow: its summary stored on the parent run, which then ends FINISHED.

Done once, by whoever sees the budget met first: a standalone worker (docker-compose has no
`hpsearch run` process) writes all of it; `hpsearch run` writes the part a person looks for
first (the best trial and its config, milliseconds) before it returns, and hands the rest (the
trials table and the pictures: pandas, matplotlib and the importances' random forest, seconds
of CPU) to a detached process, `python -m search.summary STUDY`, so that the command returns
when the trials are done.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence

import optuna
from optuna.trial import TrialState

from search.optuna_internals import study_storage
from search.storage import STORAGE_ENV, absolute_storage_url, redact_url, resolve_storage_url
from search.study import SUMMARIZED_ATTR, StudySpec, load_spec, worker_tracking_uri

_logger = logging.getLogger("search.summary")

ALL_PARTS = ("best", "table", "pictures")
LATER_PARTS = ("table", "pictures")
# Set for the workers `hpsearch run` starts: it summarizes the study itself.
SUMMARY_ENV = "HPSEARCH_SUMMARY"


def summarize(
    spec: StudySpec,
    storage: str | None = None,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    parts: tuple[str, ...] = ALL_PARTS,
) -> list[str]:
    """Store the study's summary on its MLflow parent run and end that run FINISHED, once the
    budget is met; returns the artifact paths stored.

    Once per study unless `force` (a study attribute records it). `parts` without "best"
    adds the later parts to a summary already done (the parent run is not ended again).
    """
    if spec.tracking_uri is None or spec.parent_run_id is None:
        return []
    from search.tracking import StudyRunRef, summarize_study
    from search.tracking._env import make_client

    url = absolute_storage_url(resolve_storage_url(storage))
    study = optuna.load_study(study_name=spec.name, storage=url)
    counts = Counter(t.state for t in study.get_trials(deepcopy=False))
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if finished < spec.n_trials and not force:
        return []  # not over yet: a resumed run summarizes at its end
    first = "best" in parts
    if first:
        rdb, study_id = study_storage(study)
        if rdb.get_study_system_attrs(study_id).get(SUMMARIZED_ATTR) and not force:
            return []
        rdb.set_study_system_attr(study_id, SUMMARIZED_ATTR, True)
    uri = worker_tracking_uri(
        spec.tracking_uri, tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), spec.parent_run_id
    )
    ref = StudyRunRef(str(spec.experiment_id), spec.parent_run_id, uri, study_name=spec.name)
    try:
        stored_config = study.best_trial.user_attrs.get("config")
    except ValueError:  # no complete trial
        stored_config = None
    config = dict(stored_config) if isinstance(stored_config, Mapping) else {}
    stored = summarize_study(ref, study, spec.metric, spec.direction, config, parts)
    if first:
        from search.mlflow_ui import record_study_summary

        try:
            # The best value, counts by outcome and best parameters, on the study's run.
            record_study_summary(make_client(uri), spec.parent_run_id, study, spec.metric)
        except Exception as exc:
            _logger.warning("could not record the study's summary: %s", redact_url(str(exc)))
        try:
            make_client(uri).set_terminated(spec.parent_run_id, "FINISHED")
        except Exception as exc:  # the summary is a convenience: never fail the study over it
            _logger.warning("could not end the study's MLflow run: %s", redact_url(str(exc)))
    return stored


def summarize_later(spec: StudySpec, storage: str, tracking_uri: str | None = None) -> None:
    """The later parts of the summary from a detached process (it outlives this one)."""
    if spec.tracking_uri is None or spec.parent_run_id is None:
        return
    env = {**os.environ, STORAGE_ENV: storage}  # by environment: no password in `ps`
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    subprocess.Popen(
        [sys.executable, "-m", "search.summary", spec.name],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C of the terminal does not reach it
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m search.summary STUDY`: the later parts of a finished study's summary."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m search.summary STUDY", file=sys.stderr)
        return 2
    url = absolute_storage_url(resolve_storage_url(None))
    summarize(load_spec(url, args[0]), url, force=True, parts=LATER_PARTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
