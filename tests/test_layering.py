"""Dependencies point one way: search -> spaces, trainers. A fresh interpreter proves it."""

import subprocess
import sys

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
