"""On a CUDA host, a run really lands on the GPU (skipped where torch sees no CUDA)."""

from __future__ import annotations

import pytest
import torch

from trainers import DataCache, TrainConfig, prepare_data, resolve_device, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.mark.parametrize("device", ["auto", "cuda", "cuda:0"])
def test_training_runs_on_cuda(device: str) -> None:
    config = TrainConfig(dataset="digits", epochs=5, device=device)
    data = prepare_data(config, DataCache())
    assert data.x_train.is_cuda and data.y_train.is_cuda and data.x_val.is_cuda
    result = train(config, data)
    assert result.device.startswith("cuda")
    assert result.outcome == "complete"
    assert result.metrics["val_accuracy"] > 0.9


def test_gpu_and_cpu_agree_closely() -> None:
    """Same seed, same initial weights (drawn on the CPU); batch order differs by device RNG,
    so only the quality is compared."""
    config = TrainConfig(dataset="digits", epochs=10)
    gpu = train(config.replace(device="cuda"), prepare_data(config.replace(device="cuda")))
    cpu = train(config.replace(device="cpu"), prepare_data(config.replace(device="cpu")))
    assert abs(gpu.metrics["val_accuracy"] - cpu.metrics["val_accuracy"]) < 0.03


def test_resolve_device_auto_prefers_cuda() -> None:
    assert resolve_device("auto").type == "cuda"
