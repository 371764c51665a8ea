"""What a trial's ending means, in Optuna's terms and in MLflow's.

| outcome     | cause                                   | Optuna  | budget  | retried | MLflow run |
| ----------- | --------------------------------------- | ------- | ------- | ------- | ---------- |
| complete    | trained; the metric is the value        | COMPLETE| counts  | no      | FINISHED   |
| pruned      | the pruner stopped it early             | PRUNED  | counts  | no      | KILLED     |
| diverged    | NaN/inf loss, exploding gradients       | PRUNED  | counts  | no      | FAILED     |
| infra       | OOM, lost GPU, killed, interrupted      | FAIL    | no      | yes     | FAILED (*) |
| error       | a bug (an exception that is not infra)  | FAIL    | no      | no      | FAILED     |

(*) KILLED when the worker was stopped on purpose (Ctrl-C, SIGTERM) or the attempt was
failed as stale (its worker died or was cut off).

Pruned and diverged are both Optuna PRUNED (a finished trial with no value to compare) and
are told apart by the trial's `outcome` user attribute and the run's `outcome` tag. A pruned
run is KILLED in MLflow (stopped on purpose); a diverged one FAILED (the config failed).

A bug is not retried: the same code would fail the same way, and a retry loop would hide it.
A worker stops after `MAX_CONSECUTIVE_ERRORS` bugs in a row rather than burn the budget.
"""

from __future__ import annotations

import math
from enum import StrEnum

from optuna.trial import TrialState

MAX_CONSECUTIVE_ERRORS = 3


class Outcome(StrEnum):
    COMPLETE = "complete"
    PRUNED = "pruned"
    DIVERGED = "diverged"
    INFRA = "infra"  # infrastructure failure: failed, re-queued with the same params
    ERROR = "error"  # a bug: failed, not retried

    @property
    def state(self) -> TrialState:
        return {
            Outcome.COMPLETE: TrialState.COMPLETE,
            Outcome.PRUNED: TrialState.PRUNED,
            Outcome.DIVERGED: TrialState.PRUNED,
        }.get(self, TrialState.FAIL)

    @property
    def mlflow_status(self) -> str:
        return {
            Outcome.COMPLETE: "FINISHED",
            Outcome.PRUNED: "KILLED",
        }.get(self, "FAILED")


# Names rather than classes: torch.cuda.OutOfMemoryError is missing on some builds, and
# driver errors arrive as plain RuntimeErrors whose message is the only clue.
_INFRA_TYPES = (
    "OutOfMemoryError", "MemoryError", "KeyboardInterrupt", "SystemExit", "ConnectionError",
    "BrokenPipeError", "TimeoutError", "AcceleratorError",
    # the database went away under the trial (a restart): retry the configuration elsewhere
    "StorageInternalError", "OperationalError", "InterfaceError",
)  # fmt: skip
_INFRA_MESSAGES = (
    "cuda error", "cuda out of memory", "out of memory", "device-side assert", "cudnn",
    "nccl", "device lost", "mps backend out of memory", "hip error",
)  # fmt: skip


def is_infrastructure_fault(exc: BaseException) -> bool:
    """Whether an exception is the machine's fault (retry elsewhere), not the config's or code's."""
    if any(t.__name__ in _INFRA_TYPES for t in type(exc).__mro__):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in message for m in _INFRA_MESSAGES)


def value_outcome(value: float | None) -> tuple[Outcome, str | None]:
    """A complete trial whose metric is not a finite number is diverged: nothing to compare."""
    if value is None:
        return Outcome.DIVERGED, "the metric is missing from the final metrics"
    if not math.isfinite(value):
        return Outcome.DIVERGED, f"the metric is {value} (not finite)"
    return Outcome.COMPLETE, None
