"""Dependencies point one way: search -> spaces, trainers. A fresh interpreter proves it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return {name.split(".")[0] for name in out.split()}


@pytest.mark.parametrize("module", ["trainers", "spaces"])
def test_core_packages_never_import_optuna_sampling_or_mlflow(module: str) -> None:
    loaded = _imported_after(module)
    assert "mlflow" not in loaded
    assert "search" not in loaded
    if module == "trainers":
        assert "optuna" not in loaded
    if module == "spaces":
        assert "torch" not in loaded


def test_validating_a_study_loads_its_dataset_without_torch_or_scikit_learn(
    tmp_path: Path,
) -> None:
    """`hpsearch create`/`run` never train: validating the study (the dataset loaded and
    checked once) must not pay for importing torch before the workers can start. The dataset
    cache is warmed first, as any earlier process on the machine would have done."""
    env = {**os.environ, "HPSEARCH_CACHE_DIR": str(tmp_path)}
    code = (
        "import sys; from search.study import StudyRequest; "
        "StudyRequest(train={'dataset': 'digits'}, no_tracking=True).resolve('sqlite:///x.db'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn'}))"
    )
    for _ in range(2):  # the first load fills the cache (through scikit-learn)
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env,
            cwd=tmp_path,
        ).stdout  # fmt: skip
    assert out.split() == ["[]"]
    assert not (tmp_path / "x.db").exists()  # validation writes nothing


@pytest.mark.skipif(
    any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd")), reason="a GPU host"
)
def test_counting_gpus_on_a_host_without_gpu_devices_does_not_import_torch() -> None:
    code = (
        "import sys; from search.runner import gpu_count; "
        "print(gpu_count(), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False"]
