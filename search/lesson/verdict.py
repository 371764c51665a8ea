"""Turning an experiment's numbers into the lesson's verdict: spreads over seeds, paired
comparisons, epochs to a target, and the `Verdict` itself.

A verdict is computed, never written in: each experiment states its rule in words (printed with
the verdict) and applies it to the per-seed numbers with these functions. Seeds are the unit of
replication (each seed: its own data split, weight initialization and sampler seed, shared by
every arm, so comparisons between arms are paired).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

NEVER = math.inf  # "epochs to a target" of a curve that never reaches it


@dataclass(frozen=True)
class Spread:
    """One number per seed: its median and range (what a table cell shows)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        finite_or_inf = [v for v in self.values if not math.isnan(v)]
        return float(statistics.median(finite_or_inf)) if finite_or_inf else math.nan

    @property
    def low(self) -> float:
        kept = [v for v in self.values if not math.isnan(v)]
        return min(kept) if kept else math.nan

    @property
    def high(self) -> float:
        kept = [v for v in self.values if not math.isnan(v)]
        return max(kept) if kept else math.nan

    def text(self, digits: int = 3, inf: str = "inf") -> str:
        """`0.972 (0.944..0.989)`: the median, then the range over seeds (`inf` names an
        infinite value: "never" for epochs to a target)."""
        if len(self.values) <= 1:
            return number_text(self.median, digits, inf)
        return (
            f"{number_text(self.median, digits, inf)} "
            f"({number_text(self.low, digits, inf)}..{number_text(self.high, digits, inf)})"
        )


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile), inclusive method (fine for small samples)."""
    if not values:
        raise ValueError("`values` must not be empty to take quartiles, but got []")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def number_text(value: float, digits: int = 3, inf: str = "inf") -> str:
    if value == math.inf:
        return inf
    if value == -math.inf:
        return f"-{inf}"
    if math.isnan(value):
        return "-"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return (
        f"{value:.{digits}g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.{digits}f}"
    )


def epochs_text(values: Sequence[float]) -> str:
    """Epochs to a target over seeds: `3 (2..never)`."""
    return Spread.of(values).text(inf="never")


def is_better(a: float, b: float, direction: str, margin: float = 0.0) -> bool:
    """`a` beats `b` by more than `margin` (a NaN, e.g. no complete trial, never beats)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a - b > margin if direction == "maximize" else b - a > margin


@dataclass(frozen=True)
class Paired:
    """Per-seed wins of arm A over arm B (by a stated rule), and the paired differences."""

    wins: int
    ties: int
    losses: int
    differences: tuple[float, ...]  # A - B per seed

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def majority(self) -> bool:
        """A beats B in more than half of the seeds."""
        return self.wins * 2 > self.n

    def text(self) -> str:
        return f"{self.wins}/{self.ties}/{self.losses} (wins/ties/losses over {self.n} seeds)"


def paired(a: Sequence[float], b: Sequence[float], direction: str, margin: float = 0.0) -> Paired:
    """Compare two arms seed by seed: a win is `a` better than `b` by more than `margin`."""
    if len(a) != len(b):
        raise ValueError(f"paired arms need one value per seed each, but got {len(a)} and {len(b)}")
    wins = sum(is_better(x, y, direction, margin) for x, y in zip(a, b, strict=True))
    losses = sum(is_better(y, x, direction, margin) for x, y in zip(a, b, strict=True))
    return Paired(
        wins, len(a) - wins - losses, losses, tuple(x - y for x, y in zip(a, b, strict=True))
    )


def paired_fewer(a: Sequence[float], b: Sequence[float], ratio: float = 1.0) -> Paired:
    """Fewer is better (epochs to a target): `a` wins a seed when a < ratio * b (NEVER is worst;
    two NEVERs tie)."""
    wins = losses = 0
    for x, y in zip(a, b, strict=True):
        if x < NEVER and (y == NEVER or x < ratio * y):
            wins += 1
        elif y < NEVER and (x == NEVER or y < ratio * x):
            losses += 1
    diffs = tuple(x - y if x < NEVER and y < NEVER else math.nan for x, y in zip(a, b, strict=True))
    return Paired(wins, len(a) - wins - losses, losses, diffs)


def epochs_to_reach(curve: Sequence[float], target: float, direction: str) -> float:
    """The first epoch (1-based) whose value reaches `target`; NEVER when none does."""
    for epoch, value in enumerate(curve, start=1):
        if math.isfinite(value) and (
            value >= target if direction == "maximize" else value <= target
        ):
            return float(epoch)
    return NEVER


def target_of(best: float, direction: str, share: float = 0.95) -> float:
    """`share` of the way to `best`: 95% of an accuracy, or 1/0.95 times an error."""
    return best * share if direction == "maximize" else best / share


@dataclass(frozen=True)
class Verdict:
    """The lesson's claim, whether the numbers support it, by which rule, and the numbers."""

    claim: str
    supported: bool
    rule: str
    evidence: tuple[str, ...]

    @property
    def word(self) -> str:
        return "supported" if self.supported else "not supported"

    def text(self) -> str:
        lines = [
            f"claim: {self.claim}",
            f"verdict: {self.word.upper()}",
            f"rule: {self.rule}",
        ]
        lines += [f"  - {line}" for line in self.evidence]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "claim": self.claim,
            "verdict": self.word,
            "supported": self.supported,
            "rule": self.rule,
            "evidence": list(self.evidence),
        }
