"""What a space needs to know of `TrainConfig`: its field names, types, and the values it takes.

`trainers.config` is imported on first use, not when `spaces` is imported: `trainers/__init__`
exports the training loop (torch), and `import spaces` must stay light (the CLI's `space` verbs,
tests/test_layering.py). Only `trainers.config`, a plain dataclass module, is ever used here.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def field_names() -> frozenset[str]:
    from trainers.config import field_names as names

    return frozenset(names())


@cache
def field_types() -> dict[str, type]:
    from trainers.config import field_types as types

    return types()


def default_of(name: str) -> Any:
    from trainers.config import TrainConfig

    return getattr(TrainConfig(), name)


def refusal(values: dict[str, Any]) -> str | None:
    """TrainConfig's own message when it refuses these field values (others at defaults)."""
    from trainers.config import ConfigError, TrainConfig

    try:
        TrainConfig(**values)
    except ConfigError as exc:
        return str(exc)
    return None
