"""A trial run's name, written to read at a glance in the MLflow runs table (issue 13):
`trial-8: momentum alpha=0.2 3x256 batch=64` (the number first, so names sort and search as
before; then what the lesson's tiers change)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def trial_run_name(trial_number: int, attempt: int, config: Mapping[str, Any]) -> str:
    name = f"trial-{trial_number}" + (f"-attempt-{attempt}" if attempt > 0 else "")
    parts = []
    if "optimizer" in config:
        parts.append(str(config["optimizer"]))
    if isinstance(config.get("alpha"), int | float):
        parts.append(f"alpha={config['alpha']:.3g}")
    if "hidden_layers" in config and "hidden_units" in config:
        parts.append(f"{config['hidden_layers']}x{config['hidden_units']}")
    if "batch_size" in config:
        parts.append(f"batch={config['batch_size']}")
    return f"{name}: {' '.join(parts)}" if parts else name
