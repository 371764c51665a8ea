"""What a training run returns, and which metric a task is judged by."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

# How one training run ended. (A trial's outcome, in `search`, has two more: infra and error.)
TrainOutcome = Literal["complete", "diverged", "pruned"]


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one `train()` call.

    - outcome: "complete" (all epochs, or stopped early on the validation metric),
      "diverged" (non-finite loss or a gradient norm above `explode_threshold`), or "pruned"
      (the `report` callback returned a truthy value).
    - reason: why it stopped when it was not a plain complete run, e.g.
      "loss became nan at epoch 3"; None otherwise.
    - metrics: the report keys of the final epoch (of the best epoch under early stopping; of
      the epoch that diverged, non-finite values included, when diverged).
    - history: one dict per epoch run: {"epoch": n, **that epoch's metrics}.
    - flags: health notes, e.g. "vanishing_gradients", "exploding_gradients", "early_stopped".
    """

    outcome: TrainOutcome
    reason: str | None
    metrics: dict[str, float]
    history: list[dict[str, float]]
    epochs_run: int
    wall_time_s: float
    device: str
    flags: list[str] = field(default_factory=list)
    # The trained network (a `trainers.model.MLP`; `.to_module()` gives a torch Sequential).
    # Not part of the record: `to_dict` leaves it out.
    model: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"
        }


def default_metric(task: str) -> tuple[str, str]:
    """(metric name, direction) a search optimizes for `task`."""
    if task == "classification":
        return ("val_accuracy", "maximize")
    if task == "regression":
        return ("val_rmse", "minimize")
    raise ValueError(f"`task` must be 'classification' or 'regression', but got {task=}")
