"""`Space`: an ordered, tiered set of `Param`s that samples a TrainConfig's fields."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from spaces.errors import SpaceError
from spaces.param import Param
from spaces.toml_text import space_to_toml
from spaces.validation import decision_order, parse_document


@dataclass(frozen=True)
class Space:
    """A search space: parameters in the lesson's priority order, each with a tier and a default.

    `suggest(trial, tiers=N)` searches tiers 1..N and fixes the rest at their defaults.
    """

    name: str
    params: tuple[Param, ...]
    description: str = ""
    sampler: str | None = None  # the space's preferred sampler; never "grid"
    source: str = field(default="<string>", compare=False)

    # --- building ----------------------------------------------------------------------
    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Space:
        """Parse and validate TOML text; raises `SpaceError` naming `source`, parameter, rule."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpaceError(f"{source}: not valid TOML: {exc}") from None
        name, description, sampler, params = parse_document(doc, source)
        if name is None:
            stem = source.rsplit("/", 1)[-1].removesuffix(".toml")
            name = stem if stem and not stem.startswith("<") else "space"
        return cls(name, params, description, sampler, source)

    def to_toml(self) -> str:
        """Canonical TOML text; `Space.from_toml(space.to_toml()) == space`."""
        return space_to_toml(self)

    # --- reading -----------------------------------------------------------------------
    @property
    def max_tier(self) -> int:
        return max(p.tier for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise SpaceError(f"space {self.name!r} has no parameter {name!r}; it has {self.names()}")

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def searched(self, tiers: int = 3) -> list[Param]:
        """The parameters searched at `tiers` (conditionals included; they may stay inactive)."""
        _check_tiers(tiers)
        return [p for p in self.params if p.tier <= tiers]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    # --- sampling ----------------------------------------------------------------------
    def suggest(self, trial: Any, tiers: int = 3) -> dict[str, Any]:
        """Draw the searched parameters through `trial.suggest_*`; return field -> value.

        The result holds every parameter of the space: drawn ones derived (beta = 1 -
        one_minus_beta, batch_size = 2 ** log2_batch_size), defaults for tiers above `tiers`
        and for parameters whose `when` condition does not hold. Side-effect free apart from
        the `suggest_*` calls. `trial` is an `optuna.Trial`, or a `FrozenTrial` (which replays
        its stored params: a finished trial's config can be rebuilt this way). `tiers` larger
        than the space's last tier searches everything.
        """
        _check_tiers(tiers)
        values: dict[str, Any] = {}
        # A parameter named in a `when` is decided before the parameters that depend on it.
        for p in decision_order(self.params):
            if p.tier <= tiers and p.applies(values):
                values[p.name] = p.suggest(trial)
            else:
                values[p.name] = p.default
        return {p.name: values[p.name] for p in self.params}  # in file order


def _check_tiers(tiers: int) -> None:
    if isinstance(tiers, bool) or not isinstance(tiers, int) or tiers < 1:
        raise SpaceError(f"`tiers` must be an integer >= 1, but got {tiers=!r}")
