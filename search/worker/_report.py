"""What a worker did: its trials by outcome, the discarded late results, the timings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class TrialTiming:
    """Service overhead around one trial, in seconds (`time.perf_counter` stamps).

    - pull_s: the trial's share of the claim that brought it (a claim covers a batch).
    - pull_to_train_s: from the claim (or the previous trial's end) to `train()` being called
      (config, cached data, MLflow run start).
    - train_to_next_pull_s: from `train()` returning to the next trial's start (closing its
      run, recording results, claiming); None for the last trial.
    """

    number: int
    outcome: str
    pull_s: float
    pull_to_train_s: float
    train_s: float
    train_to_next_pull_s: float | None = None


@dataclass
class WorkerReport:
    worker: str
    trials: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    discarded: int = 0
    timings: list[TrialTiming] = field(default_factory=list)
    stop_reason: str = ""
