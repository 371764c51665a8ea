"""Helpers for the fault-injection suite (no tests here): studies, worker processes, read-back.

Everything is real: PostgreSQL or SQLite storages, `mlflow server` processes, worker processes
started the way a second host starts them (`python -m search worker NAME --storage URL`), and
faults injected with signals (SIGKILL, SIGSTOP/SIGCONT) or by stopping the servers. The
"nothing lost" checks read the Optuna storage and MLflow back; they never trust exit codes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from search.study import StudyRequest, StudySpec, create_study
from tests.support.study import TINY_SPACE
from tests.support.study import WILD_SPACE as WILD_SPACE  # re-exported
from tests.support.study import trials as trials  # re-exported
from tests.support.study import wait_for as wait_for  # re-exported

REPO = Path(__file__).resolve().parents[2]

# Only alpha is searched, over a range where plain momentum on digits always converges; and
# a range whose upper part diverges (alpha up to 1e3 with plain gradient descent).
FAULT_SPACE = TINY_SPACE

TINY_TRAIN: dict[str, Any] = {
    "dataset": "digits",
    "epochs": 3,
    "hidden_units": 16,
    "hidden_layers": 1,
    "batch_size": 64,
    "optimizer": "momentum",
    "device": "cpu",
}

# Per-epoch keys every classification trial logs (grad_norm/<i> per layer come on top).
EPOCH_KEYS = ("train_loss", "val_loss", "val_accuracy", "lr")
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def fault_request(
    name: str,
    n_trials: int,
    *,
    tracking_uri: str | None = None,
    train: dict[str, Any] | None = None,
    **changes: Any,
) -> StudyRequest:
    """A small study: heartbeat every 1 s, a trial is stale after 3 s of silence."""
    fields: dict[str, Any] = {
        "name": name,
        "space_toml": FAULT_SPACE,
        "tiers": 1,
        "train": {**TINY_TRAIN, **(train or {})},
        "n_trials": n_trials,
        "tracking_uri": tracking_uri,
        "no_tracking": tracking_uri is None,
        "heartbeat_interval_s": 1,
        "grace_period_s": 3,
    }
    fields.update(changes)
    return StudyRequest(**fields)


def create(storage: str, request: StudyRequest) -> StudySpec:
    spec, resumed = create_study(request.resolve(storage), storage)
    assert not resumed
    return spec


# --- worker processes -------------------------------------------------------------------------


@dataclass
class WorkerPool:
    """Worker processes of one test; each in its own session so a signal hits only it."""

    cwd: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self, study: str, storage: str, *extra: str) -> subprocess.Popen[bytes]:
        log = self.cwd / f"worker-{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "search", "worker", study, "--storage", storage, *extra],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def wait_all(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"workers still running after {timeout} s\n{self.text()}"
                ) from None
        return codes

    def text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs
        )

    def stop_all(self) -> None:
        """Resume stopped workers and kill what is left (only processes this pool started)."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def worker_env(tracking_uri: str | None, spool: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HPSEARCH_"))}
    env["HPSEARCH_TORCH_THREADS"] = "1"
    env["HPSEARCH_SPOOL_DIR"] = str(spool)
    env["PYTHONPATH"] = str(REPO)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra)
    return env


def run_hpsearch(
    args: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python -m search ARGS` in `cwd`, as a user runs it there, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def signal_worker(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    os.killpg(proc.pid, sig)


# --- reading the Optuna storage back ------------------------------------------------------------


def training(storage: str, name: str, tracked: bool = False) -> list[FrozenTrial]:
    """RUNNING trials whose worker has set them up (the `worker` attribute is written just
    before `train()` is called), so a fault injected now hits a trial mid-training.

    `tracked`: only those whose MLflow run exists and is recorded on the trial (the run is
    created from a helper thread while the trial trains, its id written a moment later).
    """
    return [
        t
        for t in trials(storage, name)
        if t.state == TrialState.RUNNING
        and "worker" in t.user_attrs
        and (not tracked or "mlflow_run_id" in t.user_attrs)
    ]


def config_key(t: FrozenTrial) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(t.params.items()))


def assert_study_whole(storage: str, spec: StudySpec) -> list[FrozenTrial]:
    """The Optuna side of "nothing lost": exactly the budget finished, nothing left RUNNING or
    WAITING, every failed attempt retried with its parameters, no configuration finished twice."""
    ts = trials(storage, spec.name)
    states = Counter(t.state for t in ts)
    table = [(t.number, t.state.name, t.params, t.user_attrs.get("retry_of")) for t in ts]
    done = [t for t in ts if t.state in FINISHED_STATES]
    assert len(done) == spec.n_trials, table
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, table
    assert len({t.number for t in ts}) == len(ts), table
    by_config = Counter(config_key(t) for t in done)
    assert max(by_config.values()) == 1, f"a configuration finished twice: {table}"
    for failed in (t for t in ts if t.state == TrialState.FAIL):
        retries = [t for t in ts if t.user_attrs.get("retry_of") == failed.number]
        assert len(retries) == 1, (failed.number, table)
        assert retries[0].params == failed.params
    return ts


# --- reading MLflow back --------------------------------------------------------------------------


def mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def trial_runs(uri: str, spec: StudySpec) -> list[Any]:
    """Every child run (one per trial attempt) of the study's experiment."""
    client = mlflow_client(uri)
    return client.search_runs(
        [str(spec.experiment_id)],
        filter_string="tags.`hpsearch.role` = 'trial'",
        max_results=1000,
    )


def runs_by_attempt(runs: list[Any]) -> dict[tuple[int, str], Any]:
    """Child runs keyed by (trial number, attempt); a duplicate key is itself a failure."""
    out: dict[tuple[int, str], Any] = {}
    for run in runs:
        key = (int(run.data.tags["hpsearch.trial_number"]), run.data.tags["hpsearch.attempt"])
        assert key not in out, f"two MLflow runs for trial/attempt {key}"
        out[key] = run
    return out


def metric_lengths(uri: str, run_id: str, keys: tuple[str, ...] = EPOCH_KEYS) -> dict[str, int]:
    client = mlflow_client(uri)
    return {key: len(client.get_metric_history(run_id, key)) for key in keys}


def assert_tracking_whole(
    uri: str, spec: StudySpec, ts: list[FrozenTrial], epochs: int, *, replayed_ok: bool = False
) -> None:
    """The MLflow side: each finished trial has exactly one run, in the matching status, with
    every epoch's metric points, its params, and a back link from the trial.

    `replayed_ok`: a run created by a spool replay (the server was down when its trial
    started) is found by its tags; the trial, already finished, has no run id to link it.
    """
    runs = trial_runs(uri, spec)
    by_number: dict[int, list[Any]] = {}
    for run in runs:
        by_number.setdefault(int(run.data.tags["hpsearch.trial_number"]), []).append(run)
    for t in ts:
        if t.state == TrialState.RUNNING:
            raise AssertionError(f"trial {t.number} is still RUNNING")
        mine = by_number.get(t.number, [])
        if t.state == TrialState.COMPLETE:
            assert len(mine) == 1, (t.number, [r.info.run_id for r in mine])
            run = mine[0]
            assert run.info.status == "FINISHED", (t.number, run.info.status)
            assert run.data.tags.get("outcome") == "complete"
            lengths = metric_lengths(uri, run.info.run_id)
            assert set(lengths.values()) == {epochs}, (t.number, lengths)
            assert float(run.data.params["alpha"]) == t.params["alpha"]
            linked = t.user_attrs.get("mlflow_run_id")
            if not (replayed_ok and linked is None):
                assert linked == run.info.run_id, (
                    f"trial {t.number} does not link to its run {run.info.run_id}"
                )
        elif t.state == TrialState.FAIL:
            for run in mine:  # an attempt whose run exists must not be left RUNNING
                assert run.info.status in ("KILLED", "FAILED"), (t.number, run.info.status)
    for run in runs:
        assert run.info.status != "RUNNING", (run.data.tags.get("mlflow.runName"), run.info)
        if run.info.status == "FINISHED":  # never FINISHED with a metric point missing
            lengths = metric_lengths(uri, run.info.run_id)
            assert set(lengths.values()) == {epochs}, (run.data.tags["mlflow.runName"], lengths)
