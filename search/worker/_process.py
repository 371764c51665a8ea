"""What a worker process sets up once: its id, its torch threads, its environment knobs."""

from __future__ import annotations

import os
import socket

from search.errors import StudyError

THREADS_ENV = "HPSEARCH_TORCH_THREADS"
N_WORKERS_ENV = "HPSEARCH_N_WORKERS"  # set by `run_study` for the workers it starts
SPOOL_ENV = "HPSEARCH_SPOOL_DIR"


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
