"""`run_worker`: pull trials from a study until its budget of finished trials is met.

A worker needs only a storage URL and a study name: the rest (space, data, metric, sampler,
budget, MLflow ids) is the `StudySpec` stored with the study. A worker trains one trial at a
time, from batches it claims; start several (processes, hosts) to train in parallel.

The stages, one module each: the claim (`search.trial_queue`: trials as a job queue on Optuna's
own tables), the configuration (`_configs`), training and its outcome (`_outcome`), the MLflow
run (`_runs`), the heartbeat (`_heartbeat`), stopping (`_signals`), and the loop that strings
them together (`_loop`).
"""

from __future__ import annotations

import optuna

from search.errors import InfrastructureError
from search.start_up_gc import start_up_done
from search.storage import redact_url
from search.worker._loop import Worker
from search.worker._outcome import STALE_REASON
from search.worker._process import (
    GATE_OPEN,
    N_WORKERS_ENV,
    SPOOL_ENV,
    START_GATE_ENV,
    THREADS_ENV,
    configure_threads,
    pass_start_gate,
    worker_id,
)
from search.worker._report import TrialTiming, WorkerReport

__all__ = [
    "GATE_OPEN",
    "N_WORKERS_ENV",
    "SPOOL_ENV",
    "STALE_REASON",
    "START_GATE_ENV",
    "THREADS_ENV",
    "TrialTiming",
    "Worker",
    "WorkerReport",
    "configure_threads",
    "pass_start_gate",
    "run_worker",
    "worker_id",
]


def run_worker(
    storage_url: str,
    study_name: str,
    *,
    tracking_uri: str | None = None,
    max_trials: int | None = None,
    n_workers: int | None = None,
    poll_interval_s: float = 0.5,
) -> WorkerReport:
    """Pull and train trials of `study_name` until its budget is met; returns what it did.

    Raises `StudyError` when the study does not exist, `InfrastructureError` when the storage
    cannot be reached, and `WorkerStopped` after a SIGTERM (its trial re-queued).
    """
    configure_threads(n_workers)
    try:
        worker = Worker(
            storage_url,
            study_name,
            tracking_uri=tracking_uri,
            max_trials=max_trials,
            poll_interval_s=poll_interval_s,
        )
    except optuna.exceptions.StorageInternalError as exc:
        url = redact_url(storage_url)
        raise InfrastructureError(f"the storage {url!r} failed: {exc}") from None
    start_up_done()  # torch, Optuna and the trainer are in: collect from here on
    return worker.run()
