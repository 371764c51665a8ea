"""Shared samples of the built-in `lesson` space, drawn the way a study draws them."""

from __future__ import annotations

from typing import Any

import pytest

from search.samplers import draw
from spaces import Space

N_SAMPLES = 2000


@pytest.fixture(scope="session")
def lesson_tier2_samples(lesson: Space) -> list[dict[str, Any]]:
    """2,000 configurations of tiers 1..2 from the default (keyed random) sampler, seed 0."""
    return [t["config"] for t in draw(lesson, n=N_SAMPLES, seed=0, tiers=2, sampler="random")]
