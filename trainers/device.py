"""Which device a run trains on: `auto` picks CUDA when there is one, else the CPU."""

from __future__ import annotations

import torch

from trainers.config import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a `TrainConfig.device` string into a `torch.device`, refusing what cannot run here.

    `auto` -> `cuda` when `torch.cuda.is_available()`, else `cpu`. An explicit `cuda` or
    `cuda:N` on a host without that GPU is a `ConfigError` (a silent CPU fallback would make a
    GPU worker train hundreds of times slower without anyone noticing).
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"`device` asks for CUDA but torch.cuda.is_available() is False on this host, "
                f"but got device={spec!r}; use device='auto' or 'cpu'"
            )
        if spec == "cuda":
            return torch.device("cuda")
        index_text = spec.removeprefix("cuda:")
        count = torch.cuda.device_count()
        if not index_text.isdigit() or int(index_text) >= count:
            raise ConfigError(
                f"`device` must be cuda:N with 0 <= N < {count} (GPUs on this host), "
                f"but got device={spec!r}"
            )
        return torch.device("cuda", int(index_text))
    raise ConfigError(f"`device` must be auto, cpu, cuda or cuda:N, but got device={spec!r}")
