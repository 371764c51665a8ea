"""The project's Dockerfile builds with both builders (issue 12's acceptance).

The classic builder builds it in build.sh (the image every engine scenario runs); this checks
that image. The same Dockerfile is built with BuildKit where a client offers it (see
`buildkit_client`), in the background from the start of the session (`engine_images`); this
waits for that build and runs its image.
"""

from __future__ import annotations

import pytest

from tests.deploy.conftest import EngineImages
from tests.deploy.engine import BUILDKIT_IMAGE, PROJECT_IMAGE, docker

pytestmark = [pytest.mark.slow, pytest.mark.engine]

IMAGE_CHECK = (
    "import os, torch, mlflow, flask_wtf, search; "
    "print(torch.__version__, os.access('/usr/local/bin/hpsearch-gpu-slot', os.X_OK))"
)


def test_classic_build_has_the_cli_the_slot_script_and_a_cpu_torch(
    engine_images: EngineImages,
) -> None:
    out = docker("run", "--rm", "--network", "none", PROJECT_IMAGE, "python", "-c", IMAGE_CHECK)
    assert out.split() == ["2.13.0+cpu", "True"], out
    assert docker("image", "inspect", "-f", "{{.Config.User}}", PROJECT_IMAGE).strip() == "hpsearch"


def test_the_dockerfile_builds_with_buildkit(engine_images: EngineImages) -> None:
    if engine_images.buildkit is None:
        pytest.skip("no docker client here builds with BuildKit (no buildx plugin)")
    code, log = engine_images.buildkit.result()
    assert code == 0, log[-4000:]
    assert "naming to docker.io/library/hpsearch-ci:buildkit" in log, log[-2000:]
    out = docker("run", "--rm", "--network", "none", BUILDKIT_IMAGE, "python", "-c", IMAGE_CHECK)
    assert out.split() == ["2.13.0+cpu", "True"], out
