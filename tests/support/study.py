"""Shared helpers for the study, worker and CLI tests: tiny spaces, study requests,
and subprocess workers. Everything is real: SQLite or PostgreSQL files, trainers, MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from search.study import StudyRequest

REPO = Path(__file__).resolve().parents[2]

# Only alpha is searched; everything else is fixed: fast, and easy to reason about.
TINY_SPACE = """
name = "tiny"

[[param]]
name = "alpha"
kind = "float"
tier = 1
low = 0.001
high = 0.1
scale = "log"
default = 0.01
"""

# alpha up to 1e3 with plain gradient descent: the upper part of the range diverges.
WILD_SPACE = TINY_SPACE.replace("high = 0.1", "high = 1000.0").replace('"tiny"', '"wild"')

FAST_TRAIN = {
    "dataset": "digits",
    "epochs": 3,
    "hidden_units": 32,
    "hidden_layers": 1,
    "batch_size": 64,
    "optimizer": "momentum",
    "device": "cpu",
}


def request(name: str, n_trials: int = 4, **changes: Any) -> StudyRequest:
    train = {**FAST_TRAIN, **changes.pop("train", {})}
    fields: dict[str, Any] = {
        "name": name,
        "space_toml": TINY_SPACE,
        "tiers": 1,
        "train": train,
        "n_trials": n_trials,
        "no_tracking": True,
        "heartbeat_interval_s": 1,
        "grace_period_s": 3,
    }
    fields.update(changes)
    return StudyRequest(**fields)


def sqlite_url(tmp_path: Path, name: str = "study.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["HPSEARCH_TORCH_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def start_worker(
    study: str, storage: str, cwd: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m search worker STUDY --storage URL` as its own process (as on another host)."""
    log = open(cwd / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "search", "worker", study, "--storage", storage, *extra],
        cwd=cwd,
        env=env or worker_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def finished(ts: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in ts if t.state in states]


def logs(cwd: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace")[-3000:] for p in sorted(cwd.glob("worker-*.log"))
    )


class ObservedStart:
    """Records the workers `api.run_study` starts (`runner.start_early`), to look at them or
    signal one while the study is created or runs."""

    def __init__(self, monkeypatch: Any) -> None:
        from search import runner

        self.early: list[Any] = []
        real = runner.start_early

        def start_early(*args: Any, **kwargs: Any) -> Any:
            self.early.append(real(*args, **kwargs))
            return self.early[-1]

        monkeypatch.setattr(runner, "start_early", start_early)

    def alive(self) -> list[int]:
        return [p.pid for e in self.early for p in e.procs if p.poll() is None]
