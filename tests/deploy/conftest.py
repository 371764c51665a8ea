"""The compose deployment, run as local processes: each service's own command and environment.

`deployment` (one per test session, shared by the local-run and browser tests) reads
docker-compose.yml and docker-compose.worker-host.yml, substitutes variables from .env.example
with test values (fresh databases, a small budget, a canary password), and maps what only
exists inside Docker to this machine: the service names `postgres:5432` and `mlflow:5000` to
the real PostgreSQL and a local port, the named volumes' mount points to temporary folders, the
`--host`/`--port` the mlflow container listens on to loopback and that port. Everything else
(the argv, the variables) comes from the files: change a command there and this runs the new one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose_model import (
    MAIN_FILE,
    REPO,
    WORKER_HOST_FILE,
    command_of,
    environment_of,
    load_compose,
    read_env_file,
)
from tests.deploy.engine import (
    BUILDKIT_IMAGE,
    BackgroundBuild,
    build_images,
    buildkit_client,
    skip_or_fail_without_engine,
)
from tests.support.mlflow_server import free_port
from tests.support.postgres import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    pg_admin,
    skip_or_fail_without_postgres,
)

CANARY_PASSWORD = f"canary-{uuid.uuid4().hex[:16]}"
TRIALS = 4
EPOCHS = 3
WORKER_TIMEOUT_S = 300.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Deployment:
    study_name: str
    storage_url: str  # the URL the workers use (with the canary password)
    tracking_uri: str  # the local mlflow process
    env: dict[str, str]  # the substitution values
    logs: list[Path] = field(default_factory=list)
    worker_runs: list[Proc] = field(default_factory=list)
    create_runs: list[subprocess.CompletedProcess[bytes]] = field(default_factory=list)
    artifacts_dir: Path | None = None


class LocalServices:
    """Runs compose services as processes here, with Docker-only names mapped to local ones."""

    def __init__(self, root: Path, mlflow_port: int) -> None:
        self.root = root
        self.mlflow_port = mlflow_port
        self.bin = root / "bin"
        self.bin.mkdir()
        # What the image installs on PATH besides the venv's scripts.
        shim = self.bin / "hpsearch-gpu-slot"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO}/deploy/gpu_slot.py" "$@"\n')
        shim.chmod(0o755)
        self.procs: list[Proc] = []
        self.volume_dirs: dict[str, Path] = {}

    def address_map(self) -> dict[str, str]:
        return {
            "postgres:5432": f"{PG_HOST}:{PG_PORT}",
            "mlflow:5000": f"127.0.0.1:{self.mlflow_port}",
        }

    def _map_text(self, text: str, volumes: dict[str, str]) -> str:
        for inside, outside in self.address_map().items():
            text = text.replace(inside, outside)
        for target, local in volumes.items():
            if text == target or text.startswith(target + "/"):
                text = local + text[len(target) :]
        return text

    def _volumes(self, service: dict[str, Any]) -> dict[str, str]:
        mapped = {}
        for spec in service.get("volumes") or []:
            source, _, rest = str(spec).partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/")):
                continue  # bind mounts of the repo: not used by these services' processes
            local = self.volume_dirs.setdefault(source, self.root / "volumes" / source)
            local.mkdir(parents=True, exist_ok=True)
            mapped[target] = str(local)
        return mapped

    def argv_env(
        self, service: dict[str, Any], extra_env: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        volumes = self._volumes(service)
        argv = [self._map_text(part, volumes) for part in command_of(service)]
        # The container listens on all its interfaces at its port; here: loopback, a free port.
        for option, value in (("--host", "127.0.0.1"), ("--port", str(self.mlflow_port))):
            if option in argv:
                argv[argv.index(option) + 1] = value
        env = {
            # A container starts with the image's environment, not the host's.
            "PATH": f"{self.bin}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            **{k: self._map_text(v, volumes) for k, v in environment_of(service).items()},
            **(extra_env or {}),
        }
        return argv, env

    def start(self, name: str, service: dict[str, Any], **extra_env: str) -> Proc:
        argv, env = self.argv_env(service, extra_env)
        workdir = self.root / "work" / f"{name}-{len(self.procs)}"  # the image's WORKDIR
        workdir.mkdir(parents=True)
        Path(env["HOME"]).mkdir(exist_ok=True)
        log = self.root / f"{name}-{len(self.procs)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def run_once(self, name: str, service: dict[str, Any], timeout: float) -> Proc:
        proc = self.start(name, service)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            pytest.fail(f"{name} did not finish in {timeout}s:\n{proc.output()[-3000:]}")
        return proc

    def stop(self, proc: Proc) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                # Short: the server's graceful shutdown waits on idle keep-alive connections.
                proc.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def wait_healthy(url: str, proc: Proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited {proc.popen.returncode}:\n{proc.output()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{proc.name} not healthy after {timeout}s:\n{proc.output()[-3000:]}")


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The whole compose deployment, run to the end of its study; shared by this directory.

    Session-scoped (the browser test looks at what the local run made), so it creates its
    databases with conftest's helpers rather than the function-scoped `postgres_db` fixture;
    same rule: fails, not skips, without PostgreSQL when HPSEARCH_REQUIRE_POSTGRES=1.
    """
    skip_or_fail_without_postgres()
    suffix = uuid.uuid4().hex[:10]
    databases = {
        "MLFLOW_DB": f"hpsearch_test_mlflow_{suffix}",
        "OPTUNA_DB": f"hpsearch_test_optuna_{suffix}",
    }
    for name in databases.values():
        pg_admin(f'CREATE DATABASE "{name}"')
    root = tmp_path_factory.mktemp("compose")
    mlflow_port = free_port()
    env = {
        **read_env_file(),
        **databases,
        # PostgreSQL here trusts loopback: the password is ignored by the server, so a canary
        # can travel the whole way and be looked for where it must never land.
        "POSTGRES_USER": PG_USER,
        "POSTGRES_PASSWORD": CANARY_PASSWORD,
        "STUDY_NAME": f"compose-{suffix}",
        "STUDY_TRIALS": str(TRIALS),
        "STUDY_EPOCHS": str(EPOCHS),
        "MLFLOW_SERVER_WORKERS": "1",
        "WORKER_CPU_THREADS": "1",
        # The worker host reaches host 1 through its published ports (the SSH tunnel's ends).
        "POSTGRES_HOST_PORT": str(PG_PORT),
        "MLFLOW_HOST_PORT": str(mlflow_port),
        "HPSEARCH_PRIMARY_HOST": "127.0.0.1",
    }
    main = load_compose(MAIN_FILE, env)["services"]
    other_host = load_compose(WORKER_HOST_FILE, env)["services"]
    local = LocalServices(root, mlflow_port)
    try:
        mlflow = local.start("mlflow", main["mlflow"])
        wait_healthy(f"http://127.0.0.1:{mlflow_port}/health", mlflow)
        deployment = Deployment(
            study_name=env["STUDY_NAME"],
            storage_url=local.argv_env(main["worker"])[1]["HPSEARCH_STORAGE"],
            tracking_uri=f"http://127.0.0.1:{mlflow_port}",
            env=env,
            artifacts_dir=local.volume_dirs["mlflow-artifacts"],
        )
        # create-study twice: `docker compose up` runs it again on every start (resume).
        for _ in range(2):
            create = local.run_once("create-study", main["create-study"], timeout=180)
            deployment.create_runs.append(
                subprocess.CompletedProcess(
                    create.popen.args, create.popen.returncode, create.output().encode()
                )
            )
            if create.popen.returncode != 0:
                pytest.fail(f"create-study exited {create.popen.returncode}:\n{create.output()}")
        # `--scale worker=2` on a host with two GPUs (simulated: the CPU build of torch sees
        # none), and one CPU worker joining from a second host.
        started = time.monotonic()
        workers = [
            local.start("worker", main["worker"], HPSEARCH_GPU_COUNT="2"),
            local.start("worker", main["worker"], HPSEARCH_GPU_COUNT="2"),
            local.start("worker-host-cpu", other_host["worker-cpu"]),
        ]
        for proc in workers:
            left = max(1.0, WORKER_TIMEOUT_S - (time.monotonic() - started))
            try:
                proc.popen.wait(timeout=left)
            except subprocess.TimeoutExpired:
                local.stop_all()
                pytest.fail(
                    f"{proc.name} still running after {WORKER_TIMEOUT_S}s:\n{proc.output()[-3000:]}"
                )
        deployment.worker_runs = workers
        deployment.logs = [p.log for p in local.procs if p.name != "mlflow"]
        yield deployment
    finally:
        local.stop_all()
        for name in databases.values():
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the real Docker engine (tests/deploy/test_engine_*.py) ------------------------------------

_engine_seconds: dict[str, float] = {}


@dataclass
class EngineImages:
    """What the session built: the project's image (build.sh, classic builder) and, when the
    BuildKit test is selected and a client offers BuildKit, that build in the background."""

    buildkit: BackgroundBuild | None = None
    buildkit_client: str | None = None


@pytest.fixture(scope="session")
def engine_images(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineImages]:
    """The stand-in base images and the project's image, built once per session (build.sh).

    Fails, not skips, without an engine when HPSEARCH_REQUIRE_DOCKER=1 (CI). The seconds spent
    building and in the engine scenarios are printed at the end of the session.
    """
    skip_or_fail_without_engine()
    _engine_seconds["images"] = build_images()
    images = EngineImages()
    if any(item.path.name == "test_engine_build.py" for item in request.session.items):
        scratch = tmp_path_factory.mktemp("buildkit")
        images.buildkit_client = buildkit_client(scratch / "probe")
        if images.buildkit_client is not None:
            images.buildkit = BackgroundBuild(
                images.buildkit_client, BUILDKIT_IMAGE, scratch / "build.log"
            )
    yield images
    if images.buildkit is not None:
        images.buildkit.result(timeout=60)  # reaped if its test did not run


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Setup, call and teardown of every engine test: the stacks' `up` and `down` included.
    if "engine" in report.keywords:
        _engine_seconds["scenarios"] = _engine_seconds.get("scenarios", 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "scenarios" in _engine_seconds:
        images = _engine_seconds.get("images", 0.0)
        scenarios = _engine_seconds["scenarios"] - images  # the first setup ran build.sh
        terminalreporter.write_line(
            f"container part: build.sh {images:.0f} s, engine scenarios {scenarios:.0f} s"
        )
