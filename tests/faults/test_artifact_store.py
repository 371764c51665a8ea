"""Scenario 10: the MLflow server's artifact store refuses writes; trials and metrics go on.

Tests run as root, and chmod does not stop root. Two stores that fail for root too:
- `under-a-file`: the artifact root's parent is a regular file, so every mkdir is ENOTDIR;
- `full-tmpfs`: a 64 KiB tmpfs filled to the last byte, so every write is ENOSPC (needs
  `mount`; skipped where the machine does not allow it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MlflowServer
from tests.faults.support import (
    EPOCH_KEYS,
    WorkerPool,
    assert_study_whole,
    assert_tracking_whole,
    create,
    fault_request,
    mlflow_client,
    runs_by_attempt,
    trial_runs,
)

EPOCHS = 3


@contextlib.contextmanager
def _unwritable(kind: str, tmp_path: Path) -> Iterator[Path]:
    if kind == "under-a-file":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a regular file where the artifact root's parent should be")
        yield blocker / "artifacts"
        return
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        root = mount / "artifacts"
        root.mkdir()
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):  # fill the file system to the last byte: ENOSPC
            while True:
                os.write(fd, b"\0" * 512)
        os.close(fd)
        yield root
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("kind", ["under-a-file", "full-tmpfs"])
def test_an_unwritable_artifact_store_keeps_trials_metrics_and_params(
    kind: str,
    tmp_path: Path,
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
    make_pool: Callable[..., WorkerPool],
    spool: Path,
) -> None:
    storage = postgres_db()
    with _unwritable(kind, tmp_path) as artifacts:
        server = mlflow_server_factory()
        server.stop()
        server.artifacts = artifacts  # same port and backend store, a broken artifact root
        server.start()
        spec = create(storage, fault_request(f"art-{kind}", 4, tracking_uri=server.uri))
        pool = make_pool(server.uri)
        for _ in range(2):
            pool.start(spec.name, storage)
        assert pool.wait_all(timeout=240) == [0, 0], pool.text()

        ts = assert_study_whole(storage, spec)
        assert_tracking_whole(server.uri, spec, ts, EPOCHS)  # statuses, metrics, params, links
        client = mlflow_client(server.uri)
        for (number, _), run in runs_by_attempt(trial_runs(server.uri, spec)).items():
            error = run.data.tags.get("hpsearch.artifact_error", "")
            assert "config.json" in error, (number, run.data.tags)  # the reason is on the run
            assert run.data.params["dataset"] == "digits"  # the whole config, as params
            assert set(run.data.metrics) >= set(EPOCH_KEYS)
            assert client.list_artifacts(run.info.run_id) == []
        log = pool.text()
        assert "Traceback" not in log, log
        assert not list(spool.glob("*.jsonl")), "a store error is not an outage: nothing spooled"
