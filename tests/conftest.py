"""Fixtures for real components: a fresh PostgreSQL database, a real `mlflow server` process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_HOST = os.environ.get("HPSEARCH_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HPSEARCH_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HPSEARCH_TEST_PG_USER", "postgres")


def pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _pg_admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _postgres_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_db() -> Callable[[], str]:
    """A factory of fresh, empty PostgreSQL databases (dropped after the test); returns URLs.

    Fails (not skips) when CI says PostgreSQL must be there: HPSEARCH_REQUIRE_POSTGRES=1.
    """
    if not _postgres_available():
        if os.environ.get("HPSEARCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable on {PG_HOST}:{PG_PORT}")
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT}")
    created: list[str] = []

    def make() -> str:
        name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return pg_url(name)

    yield make
    for name in created:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_db: Callable[[], str]) -> str:
    """One fresh PostgreSQL database for this test."""
    return postgres_db()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_executable() -> str:
    exe = Path(sys.executable).with_name("mlflow")
    return str(exe) if exe.exists() else (shutil.which("mlflow") or "mlflow")


class MlflowServer:
    """A real `mlflow server` process on loopback; `stop()` and `start()` for fault tests."""

    def __init__(self, backend_uri: str, artifacts: Path, workers: int = 1) -> None:
        self.backend_uri = backend_uri
        self.artifacts = artifacts
        self.workers = workers
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = artifacts.parent / f"mlflow-server-{self.port}.log"

    def start(self, timeout: float = 90.0) -> None:
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
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture
def mlflow_server_factory(tmp_path: Path) -> Iterator[Callable[..., MlflowServer]]:
    """Start real `mlflow server` processes: `factory(backend_uri, workers=1)`."""
    servers: list[MlflowServer] = []

    def start(backend_uri: str | None = None, workers: int = 1) -> MlflowServer:
        backend = backend_uri or f"sqlite:///{tmp_path / f'mlflow-{len(servers)}.db'}"
        artifacts = tmp_path / f"mlartifacts-{len(servers)}"
        artifacts.mkdir()
        server = MlflowServer(backend, artifacts, workers=workers)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mlflow_server(
    mlflow_server_factory: Callable[..., MlflowServer], postgres_db: Callable[[], str]
) -> MlflowServer:
    """A real `mlflow server` backed by a fresh PostgreSQL database."""
    return mlflow_server_factory(postgres_db())


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
