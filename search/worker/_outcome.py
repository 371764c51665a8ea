"""Decide a trial's outcome from what training returned or raised (see `search.outcomes`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.outcomes import Outcome, is_infrastructure_fault, value_outcome
from search.worker._signals import Stop

if TYPE_CHECKING:
    from trainers import TrainResult

STALE_REASON = "result discarded: trial was failed as stale"


@dataclass(frozen=True)
class Trained:
    """What the train stage produced: a result, or the exception that ended it."""

    result: TrainResult | None = None
    error: BaseException | None = None
    late: bool = False  # Optuna refused an intermediate value: failed as stale under us


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str | None = None
    value: float | None = None
    stopped: bool = False  # SIGTERM: the attempt's run ends KILLED, then the worker stops

    @property
    def mlflow_status(self) -> str:
        return "KILLED" if self.stopped else self.outcome.mlflow_status


def decide(trained: Trained, metric: str) -> Verdict:
    if trained.late:
        return Verdict(Outcome.INFRA, STALE_REASON)
    if trained.error is not None:
        exc = trained.error
        if isinstance(exc, Stop):
            return Verdict(Outcome.INFRA, str(exc)[:500], stopped=True)
        if isinstance(exc, KeyboardInterrupt | SystemExit):  # stopped on purpose: KILLED
            return Verdict(Outcome.INFRA, f"{type(exc).__name__}: {exc}"[:500], stopped=True)
        infra = is_infrastructure_fault(exc)
        text = f"{type(exc).__name__}: {exc}"[:500]
        return Verdict(Outcome.INFRA if infra else Outcome.ERROR, text)
    result = trained.result
    assert result is not None
    if result.outcome == "complete":
        value = result.metrics.get(metric)
        outcome, reason = value_outcome(value)
        return Verdict(outcome, reason, value if outcome is Outcome.COMPLETE else None)
    if result.outcome == "diverged":
        return Verdict(Outcome.DIVERGED, result.reason or "diverged")
    return Verdict(Outcome.PRUNED, result.reason or "pruned by the pruner")
