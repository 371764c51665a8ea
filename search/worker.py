"""`run_worker`: pull trials from a study until its budget of finished trials is met.

A worker needs only a storage URL and a study name: the rest (space, data, metric, sampler,
budget, MLflow ids) is the `StudySpec` stored with the study. One worker trains one trial at a
time; start several (processes, hosts) to train in parallel.

The loop, per trial:

1. Under the study's cross-process budget lock: fail stale trials (dead workers; each one is
   re-queued with its parameters), count trials, and either ask for one (a re-queued trial
   first), stop (the budget of finished trials is met), or wait for running trials of other
   workers (one of them may still fail and need a retry). Counting and asking under one lock
   gives exactly the budget, never more, and trial numbers 0..n-1 when nothing fails, so a
   keyed sampler gives the same configurations with 1 or N workers.
2. A heartbeat thread proves this worker alive while it trains (Optuna sends heartbeats only
   inside `study.optimize`, which an ask-and-tell worker does not use).
3. Sample, build the `TrainConfig`, open the trial's MLflow run, train. Each epoch: buffered
   MLflow metrics, an Optuna intermediate value (pruning; also how a late worker learns its
   trial was failed as stale), and the pruner's verdict.
4. Tell Optuna the outcome (see `search.outcomes`) and close the MLflow run to match.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from search.errors import InfrastructureError, StudyError
from search.outcomes import MAX_CONSECUTIVE_ERRORS, Outcome, is_infrastructure_fault, value_outcome
from search.storage import (
    BudgetLock,
    absolute_storage_url,
    count_trials,
    open_storage,
    redact_url,
    retry_transient,
    set_user_attrs,
)
from search.study import StudySpec, load_spec, make_pruner, worker_tracking_uri

_logger = logging.getLogger("search.worker")

THREADS_ENV = "HPSEARCH_TORCH_THREADS"
N_WORKERS_ENV = "HPSEARCH_N_WORKERS"  # set by `run_study` for the workers it starts
SPOOL_ENV = "HPSEARCH_SPOOL_DIR"
STALE_REASON = "result discarded: trial was failed as stale"


@dataclass
class TrialTiming:
    """Service overhead around one trial, in seconds (`time.perf_counter` stamps).

    - pull_s: in the budget lock and `ask` (waiting for other workers' trials excluded).
    - pull_to_train_s: from the pulled trial to `train()` being called (sampling, attrs,
      MLflow run start, cached data).
    - train_to_next_pull_s: from `train()` returning to the next trial pulled (tell, attrs,
      MLflow run finish, and the next pull); None for the last trial.
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


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def configure_threads(n_workers: int | None = None) -> int:
    """Torch intra-op threads: `$HPSEARCH_TORCH_THREADS`, else 1.

    Parallelism comes from workers, not from threads inside one: an MLP's small matmuls gain
    nothing from a thread pool and lose to its synchronization. Measured on the 2-core CI
    machine (digits, 30 epochs): 0.15 s with 1 thread, 0.8-1.5 s with 2. Several workers each
    using every core would also oversubscribe the CPU. `n_workers` caps an explicit setting at
    the cores each worker gets.
    """
    import torch

    raw = os.environ.get(THREADS_ENV)
    threads = 1
    if raw:
        try:
            threads = max(1, int(raw))
        except ValueError:
            raise StudyError(f"`{THREADS_ENV}` must be an integer >= 1, but got {raw!r}") from None
        n = n_workers or int(os.environ.get(N_WORKERS_ENV, "1") or 1)
        threads = min(threads, max(1, (os.cpu_count() or 1) // max(1, n))) if n > 1 else threads
    torch.set_num_threads(threads)
    return threads


class _HeartbeatThread:
    """Records the trial's heartbeat every interval until stopped (errors are logged, not raised:
    a missed beat is what the grace period is for)."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval_s: float) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hpsearch-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:  # a flaky database must not kill the trial
                _logger.warning("heartbeat of trial id %s failed: %s", self._trial_id, exc)

    def __enter__(self) -> _HeartbeatThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


class _NoRun:
    """The trial run when tracking is off (benchmarks, `--no-tracking`)."""

    run_id: str | None = None

    def log_epoch(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def finish(self, status: str, metrics: Any, tags: Any, **kwargs: Any) -> None:
        pass


class _Stop(Exception):
    """Raised from the SIGTERM handler: finish the current trial as an infrastructure failure."""


class Worker:
    def __init__(
        self,
        storage_url: str,
        study_name: str,
        *,
        tracking_uri: str | None = None,
        max_trials: int | None = None,
        poll_interval_s: float = 0.5,
        spool_dir: str | Path | None = None,
    ) -> None:
        from search.samplers import make_sampler
        from spaces import Space
        from trainers import DataCache

        self.storage_url = absolute_storage_url(storage_url)
        self.spec: StudySpec = load_spec(self.storage_url, study_name)
        self.id = worker_id()
        self.max_trials = max_trials
        self.poll_interval_s = poll_interval_s
        self.space = Space.from_toml(self.spec.space_toml, source=f"study {study_name}")
        self.storage = open_storage(
            self.storage_url, heartbeat=self.spec.heartbeat, stale_trial_callback=self._on_stale
        )
        self.study = optuna.load_study(
            study_name=study_name,
            storage=self.storage,
            sampler=make_sampler(self.spec.sampler, self.spec.seed, self.space),
            pruner=make_pruner(self.spec),
        )
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.lock = BudgetLock(self.storage_url, study_name)
        self.cache = DataCache()
        self.tracking_uri: str | None = None
        self.tracker: Any = None
        self.ref: Any = None
        if self.spec.tracking_uri is not None:
            from search.tracking import StudyRunRef, Tracker

            own = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            self.tracking_uri = worker_tracking_uri(self.spec.tracking_uri, own)
            self.ref = StudyRunRef(
                experiment_id=self.spec.experiment_id,
                parent_run_id=self.spec.parent_run_id,
                tracking_uri=self.tracking_uri,
                study_name=self.spec.name,
            )
            spool = spool_dir or os.environ.get(SPOOL_ENV)
            extra = {"spool_dir": Path(spool)} if spool else {}
            self.tracker = Tracker(self.ref, worker=self.id, **extra)
        self.report = WorkerReport(worker=self.id)
        self._consecutive_errors = 0

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> WorkerReport:
        last_train_end: float | None = None
        try:
            while True:
                if self.max_trials is not None and len(self.report.trials) >= self.max_trials:
                    self.report.stop_reason = f"ran --max-trials={self.max_trials}"
                    break
                if self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                    self.report.stop_reason = (
                        f"{self._consecutive_errors} trials in a row failed with an error; "
                        "see the trials' `reason` attribute"
                    )
                    break
                pulled = retry_transient(self._pull, "pulling the next trial")
                if pulled == "done":
                    self.report.stop_reason = "the study's budget is met"
                    self._summarize_once()
                    break
                if pulled == "wait":
                    time.sleep(self.poll_interval_s)
                    continue
                trial, pull_started, pulled_at = pulled
                if last_train_end is not None and self.report.timings:
                    self.report.timings[-1].train_to_next_pull_s = pulled_at - last_train_end
                last_train_end = self._run_trial(trial, pull_started, pulled_at)
        finally:
            self.close()
        return self.report

    def _pull(self) -> tuple[optuna.Trial, float, float] | str:
        started = time.perf_counter()
        with self.lock.held(), warnings.catch_warnings():
            # "experimental" and "Heartbeat ... supposed to be used with Study.optimize":
            # this loop sends its own heartbeats and fails stale trials itself.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            fail_stale_trials(self.study)  # re-queues dead workers' trials (_on_stale)
            counts = count_trials(self.storage, self.study_id)
            if not (counts.waiting or counts.live < self.spec.n_trials):
                return "done" if counts.finished >= self.spec.n_trials else "wait"
            trial = self.study.ask()
        # Its own retry: a transient error here must not make the caller retry the whole pull,
        # which would ask a second trial and leave this one RUNNING with no heartbeat, a trial
        # no worker ever fails as stale (the study could then never finish its budget).
        retry_transient(
            lambda: self.storage.record_heartbeat(trial._trial_id),
            f"starting the heartbeat of trial {trial.number}",
        )
        return trial, started, time.perf_counter()

    def _run_trial(self, trial: optuna.Trial, pull_started: float, pulled_at: float) -> float:
        from trainers import TrainConfig, prepare_data, train

        outcome, reason, value = Outcome.ERROR, "", None
        result: Any = None
        run: Any = _NoRun()
        config: Any = None
        late = threading.Event()  # set when the trial was failed as stale under us
        pruning = self.spec.pruner != "none"
        train_started = train_ended = time.perf_counter()
        frozen = retry_transient(
            lambda: self.study._storage.get_trial(trial._trial_id), "reading the pulled trial"
        )
        retry_of = frozen.user_attrs.get("retry_of")
        attempt = len(frozen.system_attrs.get("retry_history", []))

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            run.log_epoch(epoch, metrics)
            metric = metrics.get(self.spec.metric)
            # Intermediate values only feed a pruner: each is a database write, and a SQLite
            # write takes the file's single write lock (a worker paused inside one would block
            # every other worker). Without a pruner, the epochs live in MLflow only.
            if not pruning or metric is None or not math.isfinite(metric):
                return False
            try:
                trial.report(float(metric), epoch)
            except optuna.exceptions.UpdateFinishedTrialError:
                late.set()  # failed as stale while we were away: stop, the result is void
                return True
            return trial.should_prune()

        with _HeartbeatThread(self.storage, trial._trial_id, self.spec.heartbeat_interval_s):
            try:
                with _sigterm_raises():
                    drawn = self.space.suggest(trial, self.spec.tiers)
                    config = TrainConfig.from_dict(self._merge(drawn, trial.params))
                    data = prepare_data(config, cache=self.cache)
                    if self.tracker is not None:
                        # Created while the trial trains; its id is recorded on the trial
                        # from the tracker's thread (`_record_run_id`).
                        run = self.tracker.start_trial(
                            trial.number,
                            attempt,
                            config.to_dict(),
                            self._run_tags(trial.number, retry_of),
                            on_created=functools.partial(self._record_run_id, trial),
                        )
                    derived = {k: v for k, v in drawn.items() if k not in trial.params}
                    attrs = {"config": config.to_dict(), "derived": derived, "worker": self.id}
                    set_user_attrs(self.storage, trial._trial_id, attrs)
                    train_started = time.perf_counter()
                    result = train(config, data, report)
                    train_ended = time.perf_counter()
                if late.is_set():
                    outcome, reason = Outcome.INFRA, STALE_REASON
                elif result.outcome == "complete":
                    value = result.metrics.get(self.spec.metric)
                    outcome, reason = value_outcome(value)
                elif result.outcome == "diverged":
                    outcome, reason = Outcome.DIVERGED, result.reason or "diverged"
                else:
                    outcome, reason = Outcome.PRUNED, result.reason or "pruned by the pruner"
            except optuna.exceptions.UpdateFinishedTrialError:
                late.set()
                outcome, reason = Outcome.INFRA, STALE_REASON
            except BaseException as exc:
                train_ended = time.perf_counter()
                infra = is_infrastructure_fault(exc) or isinstance(exc, _Stop)
                outcome = Outcome.INFRA if infra else Outcome.ERROR
                text = str(exc) if isinstance(exc, _Stop) else f"{type(exc).__name__}: {exc}"
                reason = text[:500]
                if not infra:
                    _logger.exception("trial %d failed with an error", trial.number)
                # Stopped on purpose (Ctrl-C, SIGTERM): KILLED; a machine fault: FAILED.
                stopped = isinstance(exc, KeyboardInterrupt | _Stop | SystemExit)
                status = "KILLED" if stopped else None
                self._finish(trial, run, outcome, reason, None, result, config, late, status)
                self.report.timings.append(
                    TrialTiming(
                        trial.number,
                        outcome.value,
                        pulled_at - pull_started,
                        train_started - pulled_at,
                        train_ended - train_started,
                    )
                )
                if stopped:
                    raise
                return train_ended
            self._finish(trial, run, outcome, reason, value, result, config, late)
        self.report.timings.append(
            TrialTiming(
                trial.number,
                outcome.value if not late.is_set() else "discarded",
                pulled_at - pull_started,
                train_started - pulled_at,
                train_ended - train_started,
            )
        )
        return train_ended

    def _merge(self, drawn: dict[str, Any], trial_params: dict[str, Any]) -> dict[str, Any]:
        """Space defaults < the study's [train] values < the values this trial drew.

        A parameter the space did not search keeps the study's own value (its `epochs`,
        `optimizer`...), not the space's default; a searched one always wins.
        """
        searched = {p.name for p in self.space.params if p.drawn_name in trial_params}
        return {
            **drawn,
            **self.spec.base,
            **{k: v for k, v in drawn.items() if k in searched},
        }

    def _run_tags(self, number: int, retry_of: int | None) -> dict[str, str]:
        tags = {"hpsearch.worker": self.id, "hpsearch.study": self.spec.name}
        if retry_of is not None:
            tags["hpsearch.retry_of"] = str(retry_of)
        return tags

    # --- ending a trial ---------------------------------------------------------------------------

    def _finish(
        self,
        trial: optuna.Trial,
        run: Any,
        outcome: Outcome,
        reason: str | None,
        value: float | None,
        result: Any,
        config: Any,
        late: threading.Event,
        status: str | None = None,
    ) -> None:
        """Tell Optuna, then close the MLflow run (`status` overrides the outcome's)."""
        told = False
        tries = 0

        def tell() -> None:
            nonlocal tries
            tries += 1
            if tries > 1:
                # Retried after a lost connection: the last try may have committed (its
                # acknowledgement lost with the connection). Never write a finished trial twice.
                state = self.storage.get_trial(trial._trial_id).state
                if state == outcome.state:
                    return  # our own result (nobody else finishes this trial with that state)
                if state.is_finished():  # failed as stale meanwhile (heartbeats stopped too)
                    raise optuna.exceptions.UpdateFinishedTrialError(
                        f"trial {trial.number} is already {state.name}"
                    )
            self._set_result_attrs(trial, outcome, reason, result, run)
            if outcome is Outcome.INFRA:
                # Fail and re-queue under the lock: between the two the study would be one
                # trial short, and another worker could ask a trial beyond the budget.
                with self.lock.held():
                    self.study.tell(trial, state=TrialState.FAIL)
                    self._requeue(self.study._storage.get_trial(trial._trial_id), reason or "")
            elif outcome is Outcome.COMPLETE:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=outcome.state)

        closed = False
        state = retry_transient(lambda: self._state(trial), f"reading trial {trial.number}")
        if not late.is_set() and state is TrialState.FAIL:
            late.set()  # failed as stale while this worker was paused: don't close it FINISHED
        if not late.is_set():
            # The MLflow run is closed first: `finish` writes its metrics to a write-ahead spool
            # before it returns, so a trial is never public in Optuna with its metrics lost.
            self._close_run(
                run, status or outcome.mlflow_status, outcome.value, reason, result, config
            )
            closed = True
            try:
                # A database restart while the result is written: wait for it, then write
                # (a failed commit wrote nothing), rather than lose a trained result.
                retry_transient(tell, f"recording the result of trial {trial.number}")
                told = True
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as exc:
                if self._state(trial) is not TrialState.FAIL:
                    raise
                _logger.debug("tell refused for a stale-failed trial: %s", exc)
                late.set()
        if late.is_set():
            _logger.warning(
                "trial %d was failed as stale while this worker was away (paused or cut off); "
                "its result is discarded and a retry trains the same parameters",
                trial.number,
            )
            self.report.discarded += 1
            if closed:
                self._discard_closed_run(run)
            else:
                self._close_run(run, "KILLED", "discarded", STALE_REASON, result, config)
            return
        assert told
        self.report.trials.append(trial.number)
        self.report.outcomes[outcome.value] += 1
        self._consecutive_errors = self._consecutive_errors + 1 if outcome is Outcome.ERROR else 0
        if outcome is Outcome.COMPLETE and self.ref is not None and value is not None:
            # Off the critical path: a best-trial read and a request, after the run's finish.
            self.tracker.submit(functools.partial(self._maybe_update_best, trial.number, value))

    def _discard_closed_run(self, run: Any) -> None:
        """The run was closed with the result just before Optuna refused it: mark it KILLED."""
        if self.tracker is None or isinstance(run, _NoRun) or run.run_id is None:
            return
        self.tracker.wait_finished()  # its own terminate must land first, then this one
        client = self.tracker.client
        try:
            client.set_tag(run.run_id, "outcome", "discarded")
            client.set_tag(run.run_id, "reason", STALE_REASON)
            client.set_terminated(run.run_id, "KILLED")
        except Exception as exc:
            _logger.warning("marking the discarded run KILLED failed: %s", exc)

    def _record_run_id(self, trial: optuna.Trial, run_id: str) -> None:
        """Called from the tracker's thread once the trial's MLflow run exists."""
        try:
            set_user_attrs(self.storage, trial._trial_id, {"mlflow_run_id": run_id})
        except Exception as exc:  # e.g. failed as stale meanwhile; the result attrs retry it
            _logger.debug("recording trial %d's run id failed: %s", trial.number, exc)

    def _set_result_attrs(
        self, trial: optuna.Trial, outcome: Outcome, reason: str | None, result: Any, run: Any
    ) -> None:
        attrs: dict[str, Any] = {"outcome": outcome.value}
        if run.run_id is not None:  # again: `_record_run_id` may have met a database restart
            attrs["mlflow_run_id"] = run.run_id
        if reason:
            attrs["reason"] = reason
        if result is not None:
            attrs.update(
                device=result.device, flags=list(result.flags), epochs_run=result.epochs_run
            )
        set_user_attrs(self.storage, trial._trial_id, attrs)

    def _state(self, trial: optuna.Trial) -> TrialState:
        return self.storage.get_trial(trial._trial_id).state

    def _close_run(
        self,
        run: Any,
        status: str,
        outcome: str,
        reason: str | None,
        result: Any,
        config: Any,
    ) -> None:
        if self.tracker is None or isinstance(run, _NoRun):
            return
        tags = {"outcome": outcome}
        if reason:
            tags["reason"] = reason
        if result is not None and result.flags:
            tags["flags"] = ",".join(result.flags)
        metrics = {k: v for k, v in (result.metrics if result else {}).items() if _finite(v)}
        try:
            run.finish(
                status,
                metrics,
                tags,
                artifacts=_artifacts(config),
                history=result.history if result is not None else None,
            )
        except Exception as exc:  # tracking is best effort; the trial's result is in Optuna
            _logger.warning("closing the MLflow run failed: %s", exc)

    def _maybe_update_best(self, number: int, value: float) -> None:
        from search.tracking import update_study_best

        try:
            best = self.study._storage.get_best_trial(self.study_id)
        except ValueError:
            return
        except Exception as exc:  # the result is told; the MLflow summary can wait
            _logger.warning("reading the study's best trial failed: %s", exc)
            return
        if best.number == number:
            try:
                update_study_best(self.ref, value, number, number)
            except Exception as exc:
                _logger.warning("updating the study's best in MLflow failed: %s", exc)

    def _summarize_once(self) -> None:
        """The first worker to see the budget met stores the study's summary in MLflow and
        ends its parent run (with docker-compose no `hpsearch run` process is there to)."""
        if self.ref is None:
            return
        from search.api import summarize

        self.tracker.wait_finished()
        try:
            summarize(self.spec, self.storage_url, tracking_uri=self.tracking_uri)
        except Exception as exc:  # the trials are all recorded; the summary is a convenience
            _logger.warning("summarizing the study in MLflow failed: %s", exc)

    # --- retries --------------------------------------------------------------------------------

    def _on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial whose worker stopped sending heartbeats was failed: end its run, retry it."""
        reason = (
            f"worker {trial.user_attrs.get('worker', '?')} stopped sending heartbeats for "
            f"> {self.spec.grace_period_s} s (killed, or cut off)"
        )
        _logger.warning("trial %d is stale: %s; re-queued", trial.number, reason)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id and self.ref is not None:
            # It died between creating the run and recording its id: find the run by tags.
            from search.tracking import find_trial_run

            attempt = len(trial.system_attrs.get("retry_history", []))
            run_id = find_trial_run(self.ref, trial.number, attempt)
        if run_id and self.tracking_uri:
            from search.tracking import mark_run_ended

            try:
                # Spooled when MLflow is down too, so the dead attempt never stays RUNNING.
                spool = self.tracker.spool_dir if self.tracker is not None else None
                mark_run_ended(self.tracking_uri, run_id, "KILLED", reason, spool_dir=spool)
            except Exception as exc:
                _logger.warning("marking the dead attempt's MLflow run failed: %s", exc)
        self._requeue(trial, reason, study)

    def _requeue(self, trial: FrozenTrial, reason: str, study: optuna.Study | None = None) -> None:
        """Queue a WAITING copy of a failed trial with the same parameters (a new number).

        Like Optuna's `RetryHeartbeatStaleTrialCallback`, but the copy does not inherit the dead
        attempt's user attributes (its MLflow run id, worker, outcome): only where it came from.
        """
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.spec.max_retries:
            _logger.warning(
                "trial %d is not retried: %d attempts failed (max_retries=%d)",
                trial.number, len(history), self.spec.max_retries,
            )  # fmt: skip
            return
        original = trial.system_attrs.get("failed_trial", trial.number)
        (study or self.study).add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={"retry_of": trial.number, "retry_reason": reason[:500]},
                system_attrs={"failed_trial": original, "retry_history": history},
            )
        )

    def close(self) -> None:
        if self.tracker is not None:
            with contextlib.suppress(Exception):
                self.tracker.close()
            self.tracker = None
        self.lock.close()
        self.storage.engine.dispose()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _artifacts(config: Any) -> dict[str, bytes]:
    """config.json: ready for `hpsearch train --config` (the tracker draws the learning curves
    from the history it is given)."""
    if config is None:
        return {}
    return {"config.json": json.dumps(config.to_dict(), indent=2).encode()}


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM (from `run_study` on Ctrl-C, or a scheduler) ends the trial as an infrastructure
    failure: it is failed and re-queued at once instead of waiting out the grace period."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Stop(f"stopped: the worker received {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_worker(
    storage_url: str,
    study_name: str,
    *,
    tracking_uri: str | None = None,
    max_trials: int | None = None,
    n_workers: int | None = None,
    poll_interval_s: float = 0.5,
) -> WorkerReport:
    """Pull and train trials of `study_name` until its budget is met; returns what it did.

    Raises `StudyError` when the study does not exist and `InfrastructureError` when the
    storage cannot be reached.
    """
    configure_threads(n_workers)
    try:
        worker = Worker(
            storage_url,
            study_name,
            tracking_uri=tracking_uri,
            max_trials=max_trials,
            poll_interval_s=poll_interval_s,
        )
    except optuna.exceptions.StorageInternalError as exc:
        raise InfrastructureError(f"the storage {redact_url(storage_url)!r} failed: {exc}") from exc
    return worker.run()
