"""deploy/gpu_slot.py: scaled worker containers on one host take different GPUs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.compose_model import REPO

SLOT = [sys.executable, str(REPO / "deploy" / "gpu_slot.py")]
# Prints the GPU it was given, then holds its slot until its stdin closes.
HOLDER = [
    sys.executable, "-c",
    "import os, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'), flush=True); "
    "sys.stdin.read()",
]  # fmt: skip


def start(lock_dir: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SLOT, *HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "HPSEARCH_GPU_LOCK_DIR": str(lock_dir), **env},
    )  # fmt: skip


def gpu_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read() if proc.stderr else ""
    return line


def release(proc: subprocess.Popen[str]) -> None:
    proc.communicate("", timeout=30)
    assert proc.returncode == 0


def test_replicas_spread_over_gpus_and_refuse_when_full(tmp_path: Path) -> None:
    first, second = (start(tmp_path, HPSEARCH_GPU_COUNT="2") for _ in range(2))
    first_gpu, second_gpu = gpu_of(first), gpu_of(second)
    assert {first_gpu, second_gpu} == {"0", "1"}
    third = subprocess.run(
        [*SLOT, *HOLDER], input="", capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "HPSEARCH_GPU_LOCK_DIR": str(tmp_path),
             "HPSEARCH_GPU_COUNT": "2"},
    )  # fmt: skip
    assert third.returncode == 2
    assert "all 2 GPU slots" in third.stderr and "HPSEARCH_WORKERS_PER_GPU" in third.stderr
    # A worker that stops frees its GPU for the next one (a restarted container).
    release(first)
    replacement = start(tmp_path, HPSEARCH_GPU_COUNT="2")
    assert gpu_of(replacement) == first_gpu
    release(second)
    release(replacement)


def test_workers_per_gpu_fills_every_gpu_before_doubling_up(tmp_path: Path) -> None:
    env = {"HPSEARCH_GPU_COUNT": "2", "HPSEARCH_WORKERS_PER_GPU": "2"}
    procs = [start(tmp_path, **env) for _ in range(4)]
    gpus = sorted(gpu_of(p) for p in procs)
    assert gpus == ["0", "0", "1", "1"]
    for p in procs:
        release(p)


def test_no_gpu_or_a_chosen_gpu_runs_the_command_as_is(tmp_path: Path) -> None:
    no_gpu = start(tmp_path, HPSEARCH_GPU_COUNT="0")
    assert gpu_of(no_gpu) == "unset"
    release(no_gpu)
    chosen = start(tmp_path, HPSEARCH_GPU_COUNT="2", CUDA_VISIBLE_DEVICES="1")
    assert gpu_of(chosen) == "1"
    release(chosen)
    assert not list(tmp_path.glob("*.lock")), "a user's own CUDA_VISIBLE_DEVICES takes no slot"


def test_invalid_setting_names_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SLOT, "true"], capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "HPSEARCH_GPU_LOCK_DIR": str(tmp_path),
             "HPSEARCH_GPU_COUNT": "1", "HPSEARCH_WORKERS_PER_GPU": "0"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "`HPSEARCH_WORKERS_PER_GPU` must be >= 1, but got 0" in result.stderr
