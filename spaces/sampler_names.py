"""Which samplers a space (or a study) may name, and why a grid is never one of them."""

from __future__ import annotations

from spaces.errors import SpaceError

# `random` is the default: the lesson's advice. `sobol` spreads points more evenly (still random
# after scrambling, never a lattice). `tpe` is opt-in for users who want a model-based search.
SAMPLER_NAMES: tuple[str, ...] = ("random", "sobol", "tpe")

GRID_REFUSAL = (
    "a grid search is refused: it is hard to say in advance which hyperparameters matter "
    '(the lesson: "don\'t use a grid"), and a grid spends its budget repeating the same few '
    "values of the one that does. Bergstra & Bengio (2012, 'Random Search for Hyper-Parameter "
    "Optimization') show that random search finds configurations as good or better with the "
    "same budget, because every trial tries a new value of every important parameter. "
    f"Use one of {list(SAMPLER_NAMES)} (random is the default)."
)

# Spellings of "try every combination": optuna's GridSampler and BruteForceSampler, "grid_search"...
_GRID_SPELLINGS = frozenset(
    {"grid", "gridsampler", "gridsearch", "bruteforce", "bruteforcesampler", "exhaustive"}
)


def is_grid_name(name: str) -> bool:
    """True for any spelling of a grid: `grid`, `GridSampler`, `grid_search`, `Grid-Search`..."""
    squashed = "".join(ch for ch in name.lower() if ch.isalnum())
    return squashed in _GRID_SPELLINGS


def check_sampler_name(name: object, where: str = "sampler") -> str:
    """Return the normalized sampler name, or raise `SpaceError` (with the lesson for a grid)."""
    if not isinstance(name, str):
        raise SpaceError(f"`{where}` must be a string naming a sampler, but got {name!r}")
    if is_grid_name(name):
        raise SpaceError(f"`{where}` = {name!r}: {GRID_REFUSAL}")
    normalized = name.strip().lower()
    if normalized not in SAMPLER_NAMES:
        raise SpaceError(
            f"`{where}` must be one of {list(SAMPLER_NAMES)}, but got {where}={name!r}"
        )
    return normalized
