"""A real `mlflow server` process on loopback, for the tests and the tracking benchmark."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import markers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_executable() -> str:
    exe = Path(sys.executable).with_name("mlflow")
    return str(exe) if exe.exists() else (shutil.which("mlflow") or "mlflow")


class MlflowServer:
    """A real `mlflow server` process on loopback; `stop()` and `start()` for fault tests."""

    def __init__(
        self, backend_uri: str, artifacts: Path, workers: int = 1, log_dir: Path | None = None
    ) -> None:
        self.backend_uri = backend_uri
        self.artifacts = artifacts
        self.workers = workers
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        # Beside the artifact root by default; its own folder when that root is unusable.
        self.log = (log_dir or artifacts.parent) / f"mlflow-server-{self.port}.log"

    def start(self, timeout: float = 90.0) -> None:
        markers.require("mlflow_server")
        cmd = [
            mlflow_executable(), "server",
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip
        env = {
            **os.environ,
            "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "false",
            # MLflow 3's GenAI job runner (a huey consumer per job type, 5+ processes): hpsearch
            # uses none of its jobs, and on 2 cores they cost more than the tests themselves.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def sqlite_mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, name: str = "mlflow"
) -> Iterator[MlflowServer]:
    """A module-scoped `mlflow server` on SQLite (use from a `scope="module"` fixture):
    starting one takes seconds, so a module's tests share it with distinct studies."""
    root = tmp_path_factory.mktemp(name)
    (root / "artifacts").mkdir()
    srv = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
    srv.start()
    yield srv
    srv.stop()
