"""Tracking backpressure: trials that finish faster than the MLflow store takes them.

Two workers run 1-epoch trials on `wine` (a few ms each) against a local SQLite MLflow store
(four requests per run, tens of ms of writes): the store is the bottleneck. A worker keeps at
most `MAX_RUNS_BEHIND` finished runs that MLflow has not taken; then everything is SIGKILLed,
`hpsearch status` in the folder sends what the dead workers left in their spool and says how
many runs still wait, and a new worker finishes the study.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from search.tracking import MAX_RUNS_BEHIND
from tests.faults.support import (
    WorkerPool,
    assert_study_whole,
    assert_tracking_whole,
    create,
    fault_request,
    run_hpsearch,
    worker_env,
)

N_WORKERS = 2
TINY = {"dataset": "wine", "epochs": 1, "hidden_units": 8, "hidden_layers": 1, "batch_size": 256}


def _finished_trials(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        query = "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
        return int(conn.execute(query).fetchone()[0])


def _spool_files(spool: Path, *, temp: bool = False) -> list[Path]:
    """The runs in the spool (a dot file is one being written; with `temp`, those too)."""
    if not spool.is_dir():
        return []
    return sorted(p for p in spool.iterdir() if temp or not p.name.startswith("."))


def _runs_behind_each_second(mlflow_db: Path) -> list[int]:
    """At each whole second of the study: trial runs whose worker had finished them (their
    last metric point, stamped when the trial's run was closed) but whose end MLflow had not
    been sent yet (the end is stamped just before it is sent). KILLED runs were ended by
    another worker after their own died, not by their sender: left out."""
    query = """
        SELECT MAX(m.timestamp), r.end_time FROM runs r
        JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'hpsearch.role' AND t.value = 'trial'
        JOIN metrics m ON m.run_uuid = r.run_uuid
        WHERE r.status != 'KILLED' AND r.end_time IS NOT NULL
        GROUP BY r.run_uuid
    """
    with sqlite3.connect(mlflow_db, timeout=30) as conn:
        spans = [(int(a), int(b)) for a, b in conn.execute(query)]
    assert spans, "no finished trial run in MLflow"
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    return [
        sum(1 for done, sent in spans if done <= t < sent) for t in range(first, last + 1, 1000)
    ]


def _hpsearch(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    proc = run_hpsearch(args, cwd, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, proc.stderr


@pytest.mark.slow  # worker processes, a kill and a resumed study: about a minute
def test_mlflow_stays_within_its_bound_and_a_kill_leaves_nothing_unsent(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    storage = f"sqlite:///{folder / 'hpsearch.db'}"
    mlflow_db = folder / "mlflow.db"
    uri = f"sqlite:///{mlflow_db}"
    spool = folder / "hpsearch-spool"  # the folder's default spool: no HPSEARCH_SPOOL_DIR
    spec = create(storage, fault_request("backlog", 100, tracking_uri=uri, train=TINY))
    env = worker_env(uri, spool)
    del env["HPSEARCH_SPOOL_DIR"]
    pool = WorkerPool(folder, env)
    try:
        for _ in range(N_WORKERS):
            pool.start(spec.name, storage)
        # Sampled every second until enough trials finished: the spool never holds more than
        # each worker's run in flight (no outage here).
        spooled_each_second: list[int] = []
        deadline = time.monotonic() + 90
        while _finished_trials(folder / "hpsearch.db") < 40:
            assert time.monotonic() < deadline, pool.text()
            assert all(p.poll() is None for p in pool.procs), pool.text()
            spooled_each_second.append(len(_spool_files(spool)))
            time.sleep(1.0)
        for proc in pool.procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        left = _spool_files(spool)
        assert max(spooled_each_second) <= N_WORKERS, spooled_each_second

        # The next command in the folder sends the dead workers' spooled runs first.
        out, err = _hpsearch(["status", "--storage", storage], folder, env)
        # On failure: what the command said on stderr (why a run was not sent) and the spool,
        # printed whole (pytest shows captured output in full, a long message cut short).
        if "MLflow runs waiting to be sent: 0" not in out:
            print(f"stdout:\n{out}\nstderr:\n{err}\nspool before: {left}")
            for path in _spool_files(spool, temp=True):
                print(f"{path.name}:\n{path.read_text(encoding='utf-8')[:2000]}")
        assert "MLflow runs waiting to be sent: 0" in out, out
        if left:
            sent = re.search(r"sent (\d+) run\(s\) that a stopped worker left", out)
            assert sent and int(sent.group(1)) == len(left), (out, left)
        # Nothing left, not even the temp file of a write a kill cut short.
        assert _spool_files(spool, temp=True) == [], _spool_files(spool, temp=True)

        # A new worker fails the killed attempts as stale, retries them, meets the budget.
        pool.start(spec.name, storage)
        assert pool.wait_all(timeout=120)[-1] == 0, pool.text()
    finally:
        pool.stop_all()
    ts = assert_study_whole(storage, spec)
    assert_tracking_whole(uri, spec, ts, epochs=1, replayed_ok=True)
    behind = _runs_behind_each_second(mlflow_db)
    # The bound held throughout, and the store really was the bottleneck (else the test
    # measured nothing): at some second the workers were near their bound.
    assert max(behind) <= MAX_RUNS_BEHIND * N_WORKERS, behind
    assert max(behind) >= MAX_RUNS_BEHIND // 2, behind
