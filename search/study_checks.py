"""What a study can need, checked before its first write (`StudyRequest.resolve` calls these).

A field's own rule (`TrainConfig`, `Space`) is checked where the field lives; this module
checks what only the study as a whole knows: the budget against its cap, `--tiers` against the
space, the device against this host, and every value the space can draw against the trials it
lands in (a space's `dataset` choices are loaded, once each, and must share one task, the one
the study's metric belongs to). Anything refused here would otherwise surface as failed
trials, with the study, its MLflow experiment and parent run already created.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from search.errors import StudyError

if TYPE_CHECKING:
    from spaces import Param, Space
    from trainers import DataSummary, TrainConfig

# A budget above this is far more trials than a study is meant to hold (each is a row in
# Optuna and a run in MLflow): a typo such as a few extra zeros, refused unless forced.
MAX_TRIALS = 100_000
# Optuna numbers trials in a 32-bit column (PostgreSQL INTEGER): no force goes beyond.
HARD_MAX_TRIALS = 2**31 - 1
FORCE_HINT = "pass --force-budget (force_budget = true in a study file's [study]) for more"
DEFAULT_TIERS = 3
# Fields whose value changes which rows are loaded and how: each combination a space can draw
# is loaded (from a cache: once per distinct load) before the study exists.
DATA_FIELDS = ("dataset", "target", "task", "missing_target", "val_fraction", "test_fraction")
MAX_DATA_VARIANTS = 64  # more combinations than this: each field's choices on their own


def check_budget(n_trials: int, force: bool) -> None:
    """`n_trials` (already an integer >= 1) under the cap, or under the hard limit if forced."""
    if n_trials > MAX_TRIALS and not force:
        raise StudyError(
            f"`trials` must be <= {MAX_TRIALS} (the cap on a study's budget; {FORCE_HINT}, up "
            f"to {HARD_MAX_TRIALS}), but got trials={n_trials}"
        )
    if n_trials > HARD_MAX_TRIALS:
        raise StudyError(
            f"`trials` must be <= {HARD_MAX_TRIALS} even with --force-budget (Optuna numbers "
            f"trials in a 32-bit column), but got trials={n_trials}"
        )


def resolve_tiers(tiers: int | None, space: Space) -> int:
    """The tiers a study searches: `DEFAULT_TIERS` (at most the space's last tier) when not
    given; a given value beyond the space's last tier is refused (it would search nothing more
    and look like a typo)."""
    if tiers is None:
        return min(DEFAULT_TIERS, space.max_tier)
    if tiers > space.max_tier:
        raise StudyError(
            f"`tiers` must be in 1..{space.max_tier} (the tiers of space {space.name!r}), "
            f"but got tiers={tiers}"
        )
    return tiers


def fixed_config(space: Space, base: Mapping[str, Any]) -> dict[str, Any]:
    """What every trial holds in the fields it does not draw: the space's defaults, under the
    study's [train] values (the order `search.worker._configs.configuration` merges them)."""
    from trainers import ConfigError, TrainConfig

    fixed = {**space.defaults(), **base}
    try:
        TrainConfig.from_dict(fixed)
    except ConfigError as exc:
        raise StudyError(
            f"space {space.name!r}: its defaults together with the study's [train] values are "
            f"refused: {exc}"
        ) from None
    return fixed


def drawable_values(param: Param) -> tuple[Any, ...]:
    """The values that bound what `param` can draw: its choices, or its low, high and default
    (TrainConfig's rules are ranges, so the ends decide)."""
    if param.kind == "categorical":
        assert param.choices is not None
        return tuple(param.choices)
    return (param.low, param.high, param.default)


def check_drawn_values(space: Space, tiers: int, fixed: Mapping[str, Any]) -> None:
    """Every value a searched parameter can draw, in the trial config it lands in, is one
    TrainConfig accepts (one field at a time; e.g. a `val_fraction` range that meets the
    study's `test_fraction`)."""
    from trainers import ConfigError, TrainConfig

    for param in space.searched(tiers):
        for value in drawable_values(param):
            try:
                TrainConfig.from_dict({**fixed, param.name: value})
            except ConfigError as exc:
                raise StudyError(
                    f"space {space.name!r}: parameter `{param.name}` can draw {value!r}, "
                    f"which the study's trials refuse: {exc}"
                ) from None


def check_devices(space: Space, tiers: int, fixed: Mapping[str, Any]) -> None:
    """Each device a trial can ask for exists on this host (`ConfigError` names it). Only an
    explicit CUDA device needs torch to tell: `auto` and `cpu` always exist."""
    devices = {str(fixed.get("device", "auto"))}
    for param in space.searched(tiers):
        if param.name == "device":
            devices.update(str(v) for v in drawable_values(param))
    for device in sorted(devices - {"auto", "cpu"}):
        from trainers import resolve_device

        resolve_device(device)


def data_variants(space: Space, tiers: int) -> Iterator[dict[str, Any]]:
    """The combinations of data-field values the space can draw ({} when it draws none)."""
    searched = [
        p for p in space.searched(tiers) if p.name in DATA_FIELDS and p.kind == "categorical"
    ]
    choices = [[(p.name, v) for v in drawable_values(p)] for p in searched]
    combinations = 1
    for options in choices:
        combinations *= len(options)
    if combinations > MAX_DATA_VARIANTS:
        for options in choices:  # each field's choices on their own: still every value
            for name, value in options:
                yield {name: value}
        return
    for combo in itertools.product(*choices):
        yield dict(combo)


def load_drawn_data(space: Space, tiers: int, fixed: Mapping[str, Any]) -> DataSummary:
    """Load and check the data every trial can draw (each distinct load once, without torch);
    returns the fixed config's. Every variant must load and share the fixed config's task."""
    from trainers import DataError, TrainConfig

    config = TrainConfig.from_dict(dict(fixed))
    checked: dict[tuple[object, ...], DataSummary] = {}
    data = _checked(config, checked)
    for variant in data_variants(space, tiers):
        drawn = config.replace(**variant)
        what = ", ".join(f"`{k}` = {v!r}" for k, v in variant.items())
        try:
            other = _checked(drawn, checked)
        except DataError as exc:
            raise StudyError(f"space {space.name!r} can draw {what}: {exc}") from None
        if other.task != data.task:
            raise StudyError(
                f"space {space.name!r} can draw {what}, a {other.task} dataset, but the study's "
                f"trials are {data.task} (dataset {config.dataset!r}): every dataset a study "
                "draws must have one task, the one its metric belongs to"
            )
    return data


def _checked(config: TrainConfig, memo: dict[tuple[object, ...], DataSummary]) -> DataSummary:
    from trainers import check_data
    from trainers.datasets import raw_cache_key

    key = (raw_cache_key(config), config.val_fraction, config.test_fraction, config.split_seed)
    if key not in memo:
        memo[key] = check_data(config)
    return memo[key]
