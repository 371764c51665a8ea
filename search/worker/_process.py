"""What a worker process sets up once: its id, its torch threads, its environment knobs."""

from __future__ import annotations

import os
import socket

from search.errors import StudyError
from search.tracking._backlog import SPOOL_ENV as SPOOL_ENV  # one name for workers and the CLI

THREADS_ENV = "HPSEARCH_TORCH_THREADS"
N_WORKERS_ENV = "HPSEARCH_N_WORKERS"  # set by `run_study` for the workers it starts


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def configure_threads(n_workers: int | None = None) -> int:
    """Torch intra-op threads: `$HPSEARCH_TORCH_THREADS`, else 1.

    Parallelism comes from workers, not from threads inside one: an MLP's small matmuls gain
    nothing from a thread pool and lose to its synchronization. Measured on the 2-core CI
    machine (digits, 30 epochs): 0.15 s with 1 thread, 0.8-1.5 s with 2. Several workers each
    using every core would also oversubscribe the CPU. `n_workers` caps an explicit setting at
    the cores each worker gets.
    """
    import torch

    raw = os.environ.get(THREADS_ENV)
    threads = 1
    if raw:
        try:
            threads = max(1, int(raw))
        except ValueError:
            raise StudyError(f"`{THREADS_ENV}` must be an integer >= 1, but got {raw!r}") from None
        n = n_workers or int(os.environ.get(N_WORKERS_ENV, "1") or 1)
        threads = min(threads, max(1, (os.cpu_count() or 1) // max(1, n))) if n > 1 else threads
    torch.set_num_threads(threads)
    return threads


# `hpsearch run` starts its workers while it creates their study: each imports what it will
# need, then waits for one line on stdin before it opens the storage (which may not exist yet).
START_GATE_ENV = "HPSEARCH_START_GATE"  # "untracked" | "server" | "local"; unset: no gate
GATE_OPEN = b"go\n"


def pass_start_gate() -> bool:
    """Wait at the start gate, when this worker has one. False: the gate closed without
    opening (the study could not be created), so the worker has nothing to do."""
    import sys

    mode = os.environ.pop(START_GATE_ENV, None)
    if mode is None:
        return True
    # The heavy imports of a worker's first trial, done while the study is being created.
    import optuna  # noqa: F401
    import sqlalchemy  # noqa: F401
    import torch  # noqa: F401

    import trainers.loop  # noqa: F401

    if mode in ("server", "local"):
        import mlflow.tracking
    if mode == "local":  # a store in a database file: MLflow's SQLAlchemy store (~0.6 s)
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    return sys.stdin.buffer.readline() == GATE_OPEN
