"""The project's Dockerfile builds with both builders (issue 12's acceptance).

The classic builder builds it in build.sh (the image every engine scenario runs); this checks
that image, then builds the same Dockerfile with BuildKit where a client offers it: Debian's
docker.io 20.10 client has BuildKit built in (DOCKER_BUILDKIT=1); from Docker 23 on, the
client needs the buildx plugin, which Debian does not ship.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.compose_model import REPO
from tests.deploy.engine import PROJECT_IMAGE, docker, served_wheels

pytestmark = [pytest.mark.slow, pytest.mark.engine]


def test_classic_build_has_the_cli_the_slot_script_and_a_cpu_torch(engine_images: None) -> None:
    script = (
        "import os, torch, mlflow, flask_wtf, search; "
        "print(torch.__version__, os.access('/usr/local/bin/hpsearch-gpu-slot', os.X_OK))"
    )
    out = docker("run", "--rm", "--network", "none", PROJECT_IMAGE, "python", "-c", script)
    assert out.split() == ["2.13.0+cpu", "True"], out
    assert docker("image", "inspect", "-f", "{{.Config.User}}", PROJECT_IMAGE).strip() == "hpsearch"


def _buildkit_client(tmp_path: Path) -> list[str] | None:
    """A docker client that builds with BuildKit here (checked on a one-line Dockerfile)."""
    (tmp_path / "Dockerfile").write_text("FROM hpsearch-standin/debian:bookworm\nRUN true\n")
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    for client in dict.fromkeys(candidates):
        probe = subprocess.run(
            [client, "build", "-q", str(tmp_path)], capture_output=True, text=True, timeout=300,
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return [client]
    return None


def test_the_dockerfile_builds_with_buildkit(engine_images: None, tmp_path: Path) -> None:
    client = _buildkit_client(tmp_path)
    if client is None:
        pytest.skip("no docker client here builds with BuildKit (no buildx plugin)")
    with served_wheels() as wheels_url:
        result = subprocess.run(
            [*client, "build", "--network", "host", "--progress", "plain",
             "--build-arg", f"WHEELS_URL={wheels_url}", "-t", "hpsearch-ci:buildkit", str(REPO)],
            capture_output=True, text=True, timeout=1200,
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    out = docker("run", "--rm", "--network", "none", "hpsearch-ci:buildkit", "hpsearch", "--help")
    assert "worker" in out
