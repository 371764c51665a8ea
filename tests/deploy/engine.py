"""The compose files on a real Docker engine: a stack per test module, read back from outside.

`Stack` runs Debian's docker-compose 1.29 (or `docker compose`) on the project's own files with
a project name, free loopback ports and an env file of its own, so stacks of several tests (and
other engineers' servers on this machine) never collide. What a stack did is read back through
the ports it publishes on 127.0.0.1: PostgreSQL (the Optuna storage) and the MLflow server.
Images come from tests/deploy/images/build.sh (the stand-in base images and the project's).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.compose_model import MAIN_FILE, REPO, read_env_file
from tests.support.mlflow_server import free_port

BUILD_SCRIPT = REPO / "tests" / "deploy" / "images" / "build.sh"
PROJECT_IMAGE = "hpsearch-ci:test"
BUILDKIT_IMAGE = "hpsearch-ci:buildkit"
WHEELS_DIR = Path(os.environ.get("HPSEARCH_CI_CACHE", "/var/tmp/hpsearch-ci")) / "wheels"


def engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def skip_or_fail_without_engine() -> None:
    """CI sets HPSEARCH_REQUIRE_DOCKER=1: a missing engine fails the test instead of skipping."""
    if engine_available() and compose_command() is not None:
        return
    message = "needs a running Docker engine and docker-compose (see .ci/run)"
    if os.environ.get("HPSEARCH_REQUIRE_DOCKER") == "1":
        pytest.fail(message + "; HPSEARCH_REQUIRE_DOCKER=1", pytrace=False)
    pytest.skip(message)


def compose_command() -> list[str] | None:
    # Debian's docker-compose 1.29 first: the version CI has. `docker compose` (v2) otherwise.
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if probe.returncode == 0 else None


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result.stdout


def build_images(project_tag: str = PROJECT_IMAGE) -> float:
    """Runs build.sh (idempotent; the engine's layer cache makes a rebuild quick); its seconds."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), project_tag], capture_output=True, text=True, timeout=1500,
        env={**os.environ, "PYTHON": sys.executable}, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"build.sh failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    print(result.stdout, end="")
    return time.monotonic() - started


@contextlib.contextmanager
def served_wheels(preferred_port: int = 38518) -> Iterator[str]:
    """build.sh's wheelhouse on loopback (a build's WHEELS_URL); a stable port when it is free,
    because the URL is part of the layer cache's key."""
    port = preferred_port
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            port = free_port()
    server = subprocess.Popen(
        ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(WHEELS_DIR),
         str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)


def buildkit_client(scratch: Path) -> str | None:
    """A docker client that builds with BuildKit here (tried on a one-line Dockerfile): Debian's
    docker.io 20.10 client has BuildKit built in; from Docker 23 on, a client needs the buildx
    plugin, which Debian does not ship."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "Dockerfile").write_text("FROM hpsearch-standin/debian:bookworm\nRUN true\n")
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    for client in dict.fromkeys(candidates):
        probe = subprocess.run(
            [client, "build", "-q", str(scratch)], capture_output=True, text=True, timeout=300,
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return client
    return None


class BackgroundBuild:
    """The project's Dockerfile built with BuildKit while the scenarios run (minutes of mostly
    waiting on pip and layer export, overlapped with theirs); `result()` waits for it."""

    def __init__(self, client: str, tag: str, log: Path) -> None:
        self.tag = tag
        self.log = log
        self._wheels = contextlib.ExitStack()
        wheels_url = self._wheels.enter_context(served_wheels())
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [client, "build", "--network", "host", "--progress", "plain",
                 "--build-arg", f"WHEELS_URL={wheels_url}", "-t", tag, str(REPO)],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
            )  # fmt: skip

    def result(self, timeout: float = 1200) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._wheels.close()
        return code, self.log.read_text(errors="replace")


@dataclass
class Stack:
    """One compose project on the engine: `up`, `down`, `kill`, ... with its own env file."""

    root: Path
    files: list[Path] = field(default_factory=lambda: [MAIN_FILE])
    env: dict[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = ("cpu",)
    name: str = field(default_factory=lambda: f"hpsearch-ci-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        self.env = {
            **read_env_file(),
            "POSTGRES_PASSWORD": f"pgpw{uuid.uuid4().hex}",
            "HPSEARCH_IMAGE": PROJECT_IMAGE,
            "POSTGRES_HOST_PORT": str(free_port()),
            "PGBOUNCER_HOST_PORT": str(free_port()),
            "MLFLOW_HOST_PORT": str(free_port()),
            "MLFLOW_SERVER_WORKERS": "1",
            "WORKER_CPU_THREADS": "1",
            "STUDY_TRIALS": "8",
            "STUDY_EPOCHS": "3",
            "STUDY_TIERS": "1",
            **self.env,
        }
        self.env_file = self.root / f"{self.name}.env"
        self.write_env()

    def write_env(self, **changes: str) -> None:
        self.env.update(changes)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        cli = compose_command()
        assert cli is not None
        argv = [*cli, "--project-directory", str(REPO), "--env-file", str(self.env_file)]
        argv += ["-p", self.name]
        for path in self.files:
            argv += ["-f", str(path)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        # Only this stack's values: the caller's environment (an MLFLOW_* or POSTGRES_* of a
        # developer's shell, COMPOSE_*) would win over the env file's in the substitution.
        env = {
            k: v for k, v in os.environ.items()
            if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") or k.startswith("DOCKER_")
        }  # fmt: skip
        result = subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}\n{self.logs(tail=30)}"
            )
        return result.stdout + result.stderr

    def up(self, *services: str, workers: int = 2, timeout: float = 600) -> None:
        """`up -d` without building (the image is build.sh's) with `workers` CPU workers."""
        self.compose(
            "up", "-d", "--no-build", "--scale", f"worker-cpu={workers}", *services,
            timeout=timeout,
        )  # fmt: skip

    def down(self, *extra: str) -> None:
        self.compose("down", "--remove-orphans", *extra, timeout=180, check=False)

    def containers(self, service: str | None = None, *, all_: bool = True) -> list[str]:
        args = ["ps", "-q"] + (["-a"] if all_ else [])
        args += ["--filter", f"label=com.docker.compose.project={self.name}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        return docker(*args).split()

    def inspect(self, container: str) -> dict[str, object]:
        return dict(json.loads(docker("inspect", container))[0])

    def logs(self, tail: int | None = None) -> str:
        """Every container's log, headed by its service; `tail`: its last lines only (a
        failure's message shows each worker's end, not one chatty server's health checks)."""
        out = []
        for cid in self.containers():
            service = self.inspect(cid)["Config"]["Labels"]["com.docker.compose.service"]  # type: ignore[index]
            args = ["docker", "logs", *(["--tail", str(tail)] if tail else []), cid]
            result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
            out.append(f"--- {service} {cid[:12]}\n{result.stdout}{result.stderr}")
        return "\n".join(out)

    def wait_exited(self, service: str, timeout: float) -> list[int]:
        """Waits until every container of `service` has exited; their exit codes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [self.inspect(c)["State"] for c in self.containers(service)]
            if states and all(not s["Running"] and not s["Restarting"] for s in states):  # type: ignore[index]
                return [int(s["ExitCode"]) for s in states]  # type: ignore[index]
            time.sleep(2)
        raise AssertionError(f"{service} still running after {timeout}s\n{self.logs(tail=30)}")

    # --- reading back, from outside, through the published loopback ports

    def storage_url(self, host: str = "127.0.0.1") -> str:
        e = self.env
        return (
            f"postgresql+psycopg://{e['POSTGRES_USER']}:{e['POSTGRES_PASSWORD']}"
            f"@{host}:{e['POSTGRES_HOST_PORT']}/{e['OPTUNA_DB']}"
        )

    def tracking_uri(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.env['MLFLOW_HOST_PORT']}"


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
