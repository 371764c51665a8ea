"""`Worker`: the loop that reads like its stages, claim -> train -> decide -> record.

- claim: one transaction sets a batch of trials RUNNING for this worker (sized to about a
  second of training from the trials it has timed), with their heartbeats and attributes.
- train: config from the trial's parameters, cached data, the MLflow run opened from a helper
  thread, `train()` with a `report` callback (buffered metrics; Optuna pruning when asked).
- decide: the outcome (`search.outcomes`) of what training returned or raised.
- record: the MLflow run closed (write-ahead spool first), then the results of the batch told
  to Optuna in one transaction; an infrastructure fault is failed and re-queued at once.

A heartbeat thread beats for every held trial in one statement and sweeps other workers'
stale trials (failed and re-queued with their parameters, their runs ended KILLED).

Why one module: the stages share the worker's state (the batch it holds, the results waiting
to be told, the run of the trial in training); each stage's logic that needs none of it lives
in the modules beside this one (configs, outcomes, runs, heartbeat, signals).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search.errors import WorkerStopped, user_errors
from search.optuna_internals import optuna_trial
from search.outcomes import MAX_CONSECUTIVE_ERRORS, Outcome
from search.samplers import KeyedRandomSampler
from search.storage import absolute_storage_url, open_storage, retry_transient, set_user_attrs
from search.study import StudySpec, make_pruner, read_spec, worker_tracking_uri
from search.trial_queue import Claim, ClaimedTrial, Draw, Recorded, TrialQueue, TrialResult
from search.worker._configs import Configured, configuration, draw_fresh, is_keyed
from search.worker._heartbeat import HeartbeatThread
from search.worker._outcome import STALE_REASON, Trained, Verdict, decide
from search.worker._process import SPOOL_ENV, worker_id
from search.worker._report import TrialTiming, WorkerReport
from search.worker._runs import NoRun, TrialRuns
from search.worker._signals import Stop, StopSignal

_logger = logging.getLogger("search.worker")
_trials_logger = logging.getLogger("search.worker.trials")

BATCH_TARGET_S = 1.0  # a claim covers about this much training, so claims stay rare
MAX_BATCH = 256
FLUSH_INTERVAL_S = 1.0  # results wait at most about this long before they are told
IDLE_POLL_START_S = 0.05


@dataclass
class _Pending:
    """A trained attempt whose run is closed and whose result waits for the next flush."""

    claimed: ClaimedTrial
    verdict: Verdict
    run: Any
    spooled: Future[None] | None  # the run's write-ahead spool file is written
    attrs: dict[str, Any]  # result attributes; the run id is added once the run exists
    train_s: float


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
        self.id = worker_id()
        self.storage = open_storage(
            self.storage_url, application_name=f"hpsearch-worker:{self.id}", check_schema=False
        )
        self.spec: StudySpec = read_spec(self.storage, study_name, self.storage_url)
        self.max_trials = max_trials
        self.poll_interval_s = poll_interval_s
        self.space = Space.from_toml(self.spec.space_toml, source=f"study {study_name}")
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.queue = TrialQueue(self.storage.engine, self.study_id)
        self.sampler = make_sampler(self.spec.sampler, self.spec.seed, self.space)
        self.keyed = is_keyed(self.sampler)
        self.pruning = self.spec.pruner != "none"
        self._study: optuna.Study | None = None  # only for pruning and adaptive samplers
        self.cache = DataCache()
        uri = None
        if self.spec.tracking_uri is not None:
            own = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            uri = worker_tracking_uri(self.spec.tracking_uri, own, self.spec.parent_run_id)
        self.runs = TrialRuns(self.spec, self.id, uri, spool_dir or os.environ.get(SPOOL_ENV))
        self.report = WorkerReport(worker=self.id)
        self.heartbeat = HeartbeatThread(
            self.queue, self.spec.heartbeat_interval_s, on_interval=self._sweep_while_busy
        )
        self.stop = StopSignal()
        self._held: list[ClaimedTrial] = []  # claimed, not yet started
        self._configured: dict[int, Configured] = {}
        self._pending: list[_Pending] = []
        self._last_flush = time.monotonic()
        self._trial_s: float | None = None  # moving average of one trial's duration
        self._consecutive_errors = 0
        self._config_error = ""  # set by a configuration error on this worker's first trial
        self._idle_s = IDLE_POLL_START_S
        self._idle = False  # polling for work: the loop sweeps stale trials itself
        self._last_train_end: float | None = None
        self._train_s = 0.0  # the last trial's time in train()

    @property
    def tracking_uri(self) -> str | None:
        return self.runs.tracking_uri

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> WorkerReport:
        try:
            self._check_host()
            with self.stop.installed(), self.heartbeat:
                self._loop()
        finally:
            self.close()
        return self.report

    def _check_host(self) -> None:
        """The study's device exists here (`ConfigError`, exit 2), before any trial is claimed:
        a worker on a host without it would fail every trial it takes."""
        from trainers import resolve_device

        resolve_device(str({**self.space.defaults(), **self.spec.base}.get("device", "auto")))

    def _loop(self) -> None:
        while True:
            reason = self._stop_reason()
            if reason:
                self.report.stop_reason = reason
                if self._config_error or self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                    self.runs.fail_study_run(reason)  # not left RUNNING as if work went on
                return
            started = time.perf_counter()
            claim = self._claim(self._demand())
            self._idle = not claim.trials
            if not claim.trials:
                counts = claim.counts or self.queue.counts()
                if counts.finished >= self.spec.n_trials:
                    self.report.stop_reason = "the study's budget is met"
                    self._summarize_once()
                    return
                # Others' trials are running: one of them may still fail and need a retry.
                # Polls start fast (the study's end is noticed at once) and back off to
                # `poll_interval_s` (hundreds of idle workers must not load the database).
                self._sweep_stale()
                time.sleep(self._idle_s)
                self._idle_s = min(2 * self._idle_s, self.poll_interval_s)
                continue
            self._idle_s = IDLE_POLL_START_S
            claim_s = time.perf_counter() - started
            self._held = list(claim.trials)
            self.heartbeat.hold(t.trial_id for t in claim.trials)
            while self._held:
                if self.stop.requested or self._stop_reason():
                    self._release_held()
                    break
                claimed = self._held.pop(0)
                self._run_trial(claimed, claim_s / len(claim.trials))
                if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
                    self._flush()
            self._flush()
            if self.stop.requested:
                raise WorkerStopped(self.stop.requested)

    def _stop_reason(self) -> str:
        if self._config_error:
            return self._config_error
        if self.max_trials is not None and self._done() >= self.max_trials:
            return f"ran --max-trials={self.max_trials}"
        if self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            return (
                f"{self._consecutive_errors} trials in a row failed with an error; "
                "see the trials' `reason` attribute"
            )
        return ""

    def _done(self) -> int:
        return len(self.report.trials) + len(self._pending)

    # --- claim ---------------------------------------------------------------------------------

    def _demand(self) -> int:
        """About `BATCH_TARGET_S` of trials, judged from those this worker timed (one at first)."""
        n = 1 if self._trial_s is None else round(BATCH_TARGET_S / max(self._trial_s, 1e-4))
        if self.max_trials is not None:
            n = min(n, self.max_trials - self._done())
        return max(1, min(n, MAX_BATCH))

    def _claim(self, n: int) -> Claim:
        tries = 0

        def attempt() -> Claim:
            nonlocal tries
            tries += 1
            if tries > 1:
                # The last try may have committed, its acknowledgement lost with the connection:
                # its trials are RUNNING under this worker's name, with heartbeats. Take them.
                adopted = self.queue.adopt(self.id, self._attrs_of)
                if adopted:
                    return Claim(adopted, None)
            draw = self._draw if self.keyed else None  # None: sampled while the trial runs
            return self.queue.claim(n, self.spec.n_trials, draw, self._attrs_of)

        return retry_transient(attempt, "claiming trials")

    def _draw(self, number: int) -> Draw:
        assert isinstance(self.sampler, KeyedRandomSampler)
        return draw_fresh(self.space, self.spec.tiers, self.sampler, number)

    def _attrs_of(self, claimed: ClaimedTrial) -> dict[str, Any]:
        attrs: dict[str, Any] = {"worker": self.id}
        if not claimed.params and not self.keyed:
            return attrs
        try:
            configured = configuration(self.space, self.spec, claimed.params, claimed.distributions)
        except Exception:  # the train stage meets the same error and records it
            return attrs
        self._configured[claimed.trial_id] = configured
        return {**attrs, "config": configured.config, "derived": configured.derived}

    def _release_held(self) -> None:
        held, self._held = self._held, []
        if held:
            ids = [t.trial_id for t in held]
            retry_transient(lambda: self.queue.release(ids), "giving back unstarted trials")
            self.heartbeat.drop(ids)
            for i in ids:
                self._configured.pop(i, None)

    # --- train and decide ----------------------------------------------------------------------

    def _run_trial(self, claimed: ClaimedTrial, pull_s: float) -> None:
        from trainers import TrainConfig, prepare_data, train

        began = time.perf_counter()
        if self._last_train_end is not None and self.report.timings:
            self.report.timings[-1].train_to_next_pull_s = began - self._last_train_end
        run: Any = NoRun()
        result: Any = None
        configured = self._configured.pop(claimed.trial_id, None)
        late = threading.Event()  # set when Optuna refuses an intermediate value
        train_started = train_ended = time.perf_counter()
        trial = self._optuna_trial(claimed) if (self.pruning or not self.keyed) else None

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            run.log_epoch(epoch, metrics)
            metric = metrics.get(self.spec.metric)
            # Intermediate values only feed a pruner: each is a database write. Without a
            # pruner, the epochs live in MLflow only.
            if not self.pruning or trial is None or metric is None or not math.isfinite(metric):
                return False
            try:
                trial.report(float(metric), epoch)
            except optuna.exceptions.UpdateFinishedTrialError:
                late.set()  # failed as stale while we were away: stop, the result is void
                return True
            return bool(trial.should_prune())

        try:
            with self.stop.raising():
                if configured is None:
                    configured = self._configure_running(claimed, trial)
                config = TrainConfig.from_dict(configured.config)
                data = prepare_data(config, cache=self.cache)
                run = self.runs.open(
                    claimed.number,
                    claimed.attempt,
                    configured.config,
                    claimed.retry_of,
                    functools.partial(self._record_run_id, claimed.trial_id, claimed.number),
                )
                train_started = time.perf_counter()
                result = train(config, data, report)
                train_ended = time.perf_counter()
            trained = Trained(result=result, late=late.is_set())
        except optuna.exceptions.UpdateFinishedTrialError:
            trained = Trained(late=True)
        except BaseException as exc:
            train_ended = time.perf_counter()
            trained = Trained(error=exc)
        verdict = decide(trained, self.spec.metric)
        if verdict.outcome is Outcome.ERROR:
            self._note_error(claimed.number, trained.error)
        config_dict = configured.config if configured is not None else None
        self._train_s = train_ended - train_started
        discarded = self._record(claimed, run, verdict, trained, result, config_dict)
        ended = time.perf_counter()
        self._trial_s = _average(self._trial_s, ended - began)
        self.report.timings.append(
            TrialTiming(
                claimed.number,
                "discarded" if discarded else verdict.outcome.value,
                pull_s,
                train_started - began,
                train_ended - train_started,
            )
        )
        self._last_train_end = train_ended
        if isinstance(trained.error, Stop):
            self._release_held()  # stop: what was not started goes back to the queue
        elif isinstance(trained.error, KeyboardInterrupt | SystemExit):
            self._flush()
            self._release_held()
            raise trained.error

    def _note_error(self, number: int, error: BaseException | None) -> None:
        """A user's configuration error (a dataset gone since the study was created, say) on
        this worker's first trial stops it at once, in one line: every trial would fail the
        same way. Any other error is a bug, logged with its traceback."""
        if isinstance(error, user_errors()) and not self.report.timings:
            self._config_error = (
                f"error: trial {number} failed on a configuration error, so this worker "
                f"stopped at once: {type(error).__name__}: {error}"
            )
            _logger.error("trial %d: %s: %s", number, type(error).__name__, error)
            return
        _logger.error("trial %d failed with an error", number, exc_info=error)

    def _configure_running(self, claimed: ClaimedTrial, trial: Any) -> Configured:
        """The slow path: an adaptive sampler draws now, through the running trial."""
        configured = configuration(
            self.space,
            self.spec,
            claimed.params,
            claimed.distributions,
            suggest_from=trial if not claimed.params else None,
        )
        attrs = {"config": configured.config, "derived": configured.derived}
        retry_transient(
            lambda: set_user_attrs(self.storage, claimed.trial_id, attrs),
            f"recording trial {claimed.number}'s configuration",
        )
        return configured

    def _optuna_trial(self, claimed: ClaimedTrial) -> optuna.Trial:
        if self._study is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._study = optuna.load_study(
                    study_name=self.spec.name,
                    storage=self.storage,
                    sampler=self.sampler,
                    pruner=make_pruner(self.spec),
                )
        return optuna_trial(self._study, claimed.trial_id)

    # --- record --------------------------------------------------------------------------------

    def _record(
        self,
        claimed: ClaimedTrial,
        run: Any,
        verdict: Verdict,
        trained: Trained,
        result: Any,
        config: dict[str, Any] | None,
    ) -> bool:
        """Close the run, then record (infrastructure faults at once, the rest in the next
        flush). Returns whether the result was discarded as late."""
        if trained.late or self.heartbeat.lost(claimed.trial_id):
            self.runs.finish(run, "KILLED", "discarded", STALE_REASON, result, config)
            self._discard(claimed)
            return True
        spooled = self.runs.finish(run, verdict.mlflow_status, verdict.outcome.value,
                                   verdict.reason, result, config)  # fmt: skip
        attrs = self._result_attrs(verdict, result)
        self._consecutive_errors = (
            self._consecutive_errors + 1 if verdict.outcome is Outcome.ERROR else 0
        )
        if verdict.outcome is Outcome.INFRA:
            _with_run_id(attrs, run, spooled)
            failed = retry_transient(
                lambda: self.queue.fail(
                    {claimed.trial_id: verdict.reason or "infrastructure failure"},
                    self.spec.max_retries,
                    attrs={claimed.trial_id: attrs},
                ),
                f"failing and re-queueing trial {claimed.number}",
            )
            self.heartbeat.drop([claimed.trial_id])
            if not failed:  # failed as stale meanwhile, by someone else
                self.runs.discard(run)
                self._discard(claimed)
                return True
            if not failed[0].requeued:
                self._not_retried(claimed.number, failed[0].attempt + 1)
            self._count(claimed.number, verdict, self._train_s)
            return False
        self._pending.append(_Pending(claimed, verdict, run, spooled, attrs, self._train_s))
        return False

    def _result_attrs(self, verdict: Verdict, result: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {"outcome": verdict.outcome.value}
        if verdict.reason:
            attrs["reason"] = verdict.reason
        if result is not None:
            attrs.update(
                device=result.device, flags=list(result.flags), epochs_run=result.epochs_run
            )
        return attrs

    def _flush(self) -> None:
        """Tell Optuna the batch's results in one transaction (retried through a restart:
        a commit whose acknowledgement was lost is recognised, never written twice)."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        results = []
        for p in batch:
            _with_run_id(p.attrs, p.run, p.spooled)  # the runs' data is safe on disk first
            state = p.verdict.outcome.state
            results.append(TrialResult(p.claimed.trial_id, state, p.verdict.value, p.attrs))
        statuses = retry_transient(
            lambda: self.queue.record(results),
            f"recording the results of {len(batch)} trial(s)",
        )
        complete: set[int] = set()
        for p in batch:
            if statuses[p.claimed.trial_id] is Recorded.LATE:
                self.runs.discard(p.run)
                self._discard(p.claimed)
                continue
            self._count(p.claimed.number, p.verdict, p.train_s)
            if p.verdict.outcome is Outcome.COMPLETE:
                complete.add(p.claimed.number)
        self.heartbeat.drop(p.claimed.trial_id for p in batch)
        if complete:
            self.runs.update_best(self._read_best, complete)

    def _count(self, number: int, verdict: Verdict, train_s: float) -> None:
        self.report.trials.append(number)
        self.report.outcomes[verdict.outcome.value] += 1
        # A line per recorded trial (`hpsearch worker` prints this logger's lines).
        _trials_logger.info(
            "trial %d: %s%s%s (%.1f s)",
            number,
            verdict.outcome.value,
            f" {self.spec.metric}={verdict.value:.4g}" if verdict.value is not None else "",
            f" ({verdict.reason})" if verdict.reason else "",
            train_s,
        )

    def _discard(self, claimed: ClaimedTrial) -> None:
        _logger.warning(
            "trial %d was failed as stale while this worker was away (paused or cut off); "
            "its result is discarded and a retry trains the same parameters",
            claimed.number,
        )
        self.report.discarded += 1
        self.heartbeat.drop([claimed.trial_id])

    def _not_retried(self, number: int, attempts: int) -> None:
        _logger.warning(
            "trial %d is not retried: %d attempts failed (max_retries=%d)",
            number, attempts, self.spec.max_retries,
        )  # fmt: skip

    def _record_run_id(self, trial_id: int, number: int, run_id: str) -> None:
        """Called from the tracker's thread once the trial's MLflow run exists: the link a
        dead worker's trial keeps to its run (its result carries the id again)."""
        if trial_id not in self.heartbeat.held():
            return  # recorded already: the result carried the id
        try:
            set_user_attrs(self.storage, trial_id, {"mlflow_run_id": run_id})
        except Exception as exc:  # e.g. failed as stale meanwhile; the result attrs retry it
            _logger.debug("recording trial %d's run id failed: %s", number, exc)

    def _read_best(self) -> tuple[int, float] | None:
        try:
            best = self.storage.get_best_trial(self.study_id)
        except ValueError:
            return None
        return (best.number, float(best.value)) if best.value is not None else None

    # --- other workers' dead attempts ----------------------------------------------------------

    def _sweep_while_busy(self) -> None:
        # An idle worker's loop sweeps on each poll: one thread on the database, so an idle
        # worker needs one connection, not two.
        if not self._idle:
            self._sweep_stale()

    def _sweep_stale(self) -> None:
        """Fail trials whose worker stopped sending heartbeats, re-queue them, end their runs
        KILLED (from the tracker's thread, after the storage transaction)."""
        own = self.heartbeat.held()  # alive: this process beats for them
        stale = [i for i in self.queue.stale(self.spec.grace_period_s) if i not in own]
        if not stale:
            return
        workers = self.queue.user_attr(stale, "worker")
        reasons = {
            i: f"worker {workers.get(i, '?')} stopped sending heartbeats for > "
            f"{self.spec.grace_period_s} s (killed, or cut off)"
            for i in stale
        }
        for failed in self.queue.fail(reasons, self.spec.max_retries):
            reason = reasons[failed.trial_id]
            if failed.requeued:
                _logger.warning("trial %d is stale: %s; re-queued", failed.number, reason)
            else:
                self._not_retried(failed.number, failed.attempt + 1)
            run_id = failed.user_attrs.get("mlflow_run_id")
            self.runs.end_dead_attempt(failed.number, failed.attempt, run_id, reason)

    def _summarize_once(self) -> None:
        """The first worker to see the budget met stores the study's summary in MLflow and
        ends its parent run (with docker-compose no `hpsearch run` process is there to)."""
        from search.summary import SUMMARY_ENV, summarize

        if not self.runs.enabled or os.environ.get(SUMMARY_ENV) == "runner":
            return  # `hpsearch run` started this worker: it summarizes the study itself

        def summarize_in_background() -> None:
            try:
                summarize(self.spec, self.storage_url, tracking_uri=self.tracking_uri)
            except Exception as exc:  # the trials are all recorded; this is a convenience
                _logger.warning("summarizing the study in MLflow failed: %s", exc)

        # From the tracker's thread, behind every run's end; `close` waits for it.
        self.runs.submit(summarize_in_background)

    def close(self) -> None:
        self.runs.shutdown()
        self.storage.engine.dispose()


def _average(previous: float | None, value: float, weight: float = 0.3) -> float:
    return value if previous is None else (1 - weight) * previous + weight * value


def _with_run_id(attrs: dict[str, Any], run: Any, spooled: Future[None] | None) -> None:
    """Wait for the run's write-ahead spool (it follows the run's creation), then name it."""
    if spooled is not None:
        spooled.result()
    if run.created_id is not None:
        attrs["mlflow_run_id"] = run.created_id
