"""`Tracker` (one per worker process) and `TrialRun` (one per trial attempt).

Requests per trial, when the server is up and the trial is shorter than `flush_interval_s`:
create_run, one log_batch (params, every epoch's metrics, tags), one PUT per artifact,
update_run (terminate): four with the trial's config.json. Longer trials add one log_batch
per `flush_interval_s`. One sender thread per worker owns the client and sends every request,
for any number of runs, in the order they were queued (the create while the trial trains,
the rest after `finish` returned): ordering comes from the queue, not from locks, and the
worker's thread never waits on a request.

Backpressure: at most `max_behind` (`MAX_RUNS_BEHIND`) finished runs of a worker are not yet
on the server (sent, or spooled when it is down). `start_trial` waits while that many are
queued, so a worker whose trials finish faster than MLflow takes them trains at MLflow's pace
instead of piling runs up in memory (a kill would lose them, and Optuna would see no result
until the sender caught up). A worker also waits for its runs' write-ahead spool files when
it records a batch of results, so Optuna never holds a result whose run could still be lost.

Why one module: `Tracker` and `TrialRun` share one sender queue, one outbox discipline and
one spool format; the ordering guarantees hold only across both.

No learning-curve picture per trial: the MLflow UI charts every metric's history natively
(and compares runs), while drawing one cost ~100 ms of CPU in a helper process and a request
per trial, more than a tiny trial's whole training.

When the server does not answer, nothing is lost and nothing raises into the trial: unsent
ops stay in memory while the trial runs and go to the spool at `finish`; the spool is replayed
after the next trial that reached the server, at `close()`, and by `replay_spool`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from search.redact import redact
from search.tracking._env import describe, is_permanent, make_client
from search.tracking._ops import (
    MetricPoint,
    Op,
    RunTarget,
    artifact_op,
    batch_ops,
    check_status,
    clean_key,
    clean_param,
    clean_tag,
    create_op,
    execute,
    nonfinite_keys,
    now_ms,
    terminate_op,
)
from search.tracking._run_names import trial_run_name
from search.tracking._spool import (
    OnRunCreated,
    ReplayedRun,
    pending_files,
    replay_files,
    spool_header,
    write_claimed_spool_file,
    write_spool_file,
)
from search.tracking._study_run import STUDY_TAG, StudyRunRef

_logger = logging.getLogger("search.tracking")

DEFAULT_SPOOL_DIR = Path("hpsearch-spool")
# Finished runs a worker may hold that the server has not taken yet. Enough to keep the sender
# busy while the next trial trains; small enough that a kill costs little and Optuna's view
# of the study trails training by a few trials, not by a batch of hundreds.
MAX_RUNS_BEHIND = 8
NONFINITE_TAG = "hpsearch.nonfinite_metrics"
FINAL_PREFIX = "final/"


class Tracker:
    """Logs a worker's trials to MLflow: one child run per trial attempt under the study run.

    Thread safety: one trial at a time (the worker's thread) plus the background flusher.
    `on_run_created` is called for a run that a replay created because the server was down
    when its trial started: store `ReplayedRun.run_id` on the Optuna trial there.
    """

    def __init__(
        self,
        ref: StudyRunRef,
        spool_dir: Path | str = DEFAULT_SPOOL_DIR,
        flush_interval_s: float = 15.0,
        worker: str = "",
        on_run_created: OnRunCreated | None = None,
        max_behind: int = MAX_RUNS_BEHIND,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"`flush_interval_s > 0` must hold, but got {flush_interval_s=}")
        if isinstance(max_behind, bool) or not isinstance(max_behind, int) or max_behind < 1:
            raise ValueError(f"`max_behind` must be an integer >= 1, but got {max_behind=!r}")
        self.ref = ref
        self.spool_dir = Path(spool_dir)
        self.flush_interval_s = float(flush_interval_s)
        self.worker = worker
        self.on_run_created = on_run_created
        self.client = make_client(ref.tracking_uri)
        self.study_name = ref.study_name or self._read_study_name()
        # Held by the sender around each job, so that `close` (after the sender stopped) and
        # the sender never interleave; log_epoch never takes it.
        self._io_lock = threading.Lock()
        self._active: TrialRun | None = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closed = False
        self.max_behind = max_behind
        self._behind = 0  # finished runs whose requests are not all done (sent or spooled)
        self.most_behind = 0  # the most this worker was ever behind (reported, tested)
        self._room = threading.Condition()
        # The one sender: `start_trial` queues the run's creation (the trial trains while it
        # is on its way), `finish` the run's write-ahead spool file and its last requests,
        # `submit` anything else, the flusher a long trial's buffered metrics.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpsearch-mlflow")

    def _read_study_name(self) -> str:
        try:
            return str(self.client.get_experiment(self.ref.experiment_id).name)
        except Exception as exc:
            _logger.warning("could not read the study's experiment name: %s", describe(exc))
            return ""

    def start_trial(
        self,
        trial_number: int,
        attempt: int,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        on_created: Callable[[str], None] | None = None,
    ) -> TrialRun:
        """Create the attempt's run (one request); params wait for the first batch.

        With background finishing the request is sent from a helper thread and this returns
        at once: `run_id` is None until the server answered (`wait_created` waits), and
        `on_created(run_id)` is called from that thread (e.g. to record the id on the trial).
        `finish` waits for the creation first, so the run's ops always follow it.

        Waits first while `max_behind` finished runs are still on their way (backpressure).
        """
        self.wait_for_room()
        previous = self._active
        if previous is not None and not previous.finished:
            _logger.warning(
                "trial %s was not finished before trial %s started; its run stays RUNNING",
                previous.trial_number,
                trial_number,
            )
            self._sender.submit(self._flush_active, previous)  # what it buffered still goes
        run_name = trial_run_name(trial_number, attempt, params)
        run_tags = {clean_key(k): clean_tag(v) for k, v in tags.items()}
        run_tags.update(
            {
                "mlflow.parentRunId": self.ref.parent_run_id,
                "mlflow.runName": run_name,
                STUDY_TAG: self.study_name,
                "hpsearch.role": "trial",
                "hpsearch.trial_number": str(trial_number),
                "hpsearch.attempt": str(attempt),
                "hpsearch.worker": clean_tag(self.worker),
            }
        )
        run = TrialRun(self, trial_number, attempt, params, create_op(now_ms(), run_tags))
        run._created = self._sender.submit(self._create, run, on_created)
        self._active = run
        self._ensure_flusher()
        return run

    def wait_for_room(self) -> None:
        """Block while `max_behind` finished runs are not yet sent (or spooled)."""
        with self._room:
            if self._behind >= self.max_behind:
                _logger.info(
                    "MLflow is %d run(s) behind: the next trial waits for it", self._behind
                )
            while self._behind >= self.max_behind:
                self._room.wait(timeout=1.0)

    def _run_queued(self) -> None:
        with self._room:
            self._behind += 1
            self.most_behind = max(self.most_behind, self._behind)

    def _run_done(self) -> None:
        with self._room:
            self._behind -= 1
            self._room.notify_all()

    def _create(self, run: TrialRun, on_created: Callable[[str], None] | None) -> None:
        try:
            # On the sender, like every request: nobody else touches this run's outbox.
            run._send_outbox()
            run_id = run._target.run_id  # not `run.run_id`: that waits for this very call
            if run_id is not None and on_created is not None:
                on_created(run_id)
        except Exception:  # a background thread must never die silently
            _logger.exception("creating the MLflow run of trial %s failed", run.trial_number)

    def submit(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the sender thread, after every request queued so far. For requests off
        a trial's critical path; must not raise."""
        self._sender.submit(fn)

    def _ensure_flusher(self) -> None:
        if self._flusher is None or not self._flusher.is_alive():
            self._stop.clear()
            self._flusher = threading.Thread(
                target=self._flush_loop, name="hpsearch-mlflow-flusher", daemon=True
            )
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            run = self._active
            if run is None or run.finished or not run._creation_done():
                continue
            try:
                self._sender.submit(self._flush_active, run)  # the sender sends, in order
            except RuntimeError:  # the sender is shut down: the tracker is closing
                return

    def _flush_active(self, run: TrialRun) -> None:
        try:
            with self._io_lock:
                if not run.finished:
                    run._flush_buffer()
                    run._send_outbox()
        except Exception:  # the sender must outlive any surprise
            _logger.exception("background MLflow flush failed")

    def replay(self) -> list[ReplayedRun]:
        """Send this server's spooled runs now (the next trial's finish does it too)."""
        with self._io_lock:
            return replay_files(
                self.client, self.ref.tracking_uri, self.spool_dir, self.on_run_created
            )

    def wait_finished(self) -> None:
        """Block until every run finished so far has sent its end (or spooled it)."""
        self._sender.submit(lambda: None).result()

    def close(self) -> None:
        """Finish pending runs, flush what is buffered, replay the spool, stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._sender.shutdown(wait=True)
        if self._flusher is not None:
            self._flusher.join(timeout=self.flush_interval_s + 60)
            self._flusher = None
        run = self._active
        if run is not None and not run.finished:
            with self._io_lock:
                run._flush_buffer()
                if not run._send_outbox():
                    run._spool_outbox()
        if pending_files(self.spool_dir, self.ref.tracking_uri):
            self.replay()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TrialRun:
    """One trial attempt's MLflow run. `run_id` is None while the run could not be created."""

    def __init__(
        self,
        tracker: Tracker,
        trial_number: int,
        attempt: int,
        params: Mapping[str, Any],
        create: Op,
    ) -> None:
        self.tracker = tracker
        self.trial_number = trial_number
        self.attempt = attempt
        self.finished = False
        self._target = RunTarget(tracker.ref.experiment_id)
        self._buffer_lock = threading.Lock()
        self._params = {clean_key(k): clean_param(v) for k, v in params.items()}
        self._metrics: list[MetricPoint] = []
        self._epoch_keys: set[str] = set()
        self._epoch_steps: set[int] = set()
        self._refused = False
        self._outbox: list[Op] = [create]  # acknowledged ops leave; the rest may be spooled
        self._created: Future[None] | None = None  # the background creation, if any

    @property
    def run_id(self) -> str | None:
        """The run's id, once the creation sent in the background is answered (this waits
        for it); None when the server did not take it."""
        return self.wait_created()

    def _creation_done(self) -> bool:
        return self._created is None or self._created.done()

    def wait_created(self) -> str | None:
        """Block until the background creation is done; the run id, or None (server down:
        the create op then waits in the outbox and goes to the spool with the rest)."""
        if self._created is not None:
            self._created.result()  # `_create` never raises
        return self._target.run_id

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer one epoch's metrics (no I/O: safe on the training thread)."""
        ts = now_ms()
        points = [(clean_key(k), float(v), ts, int(step)) for k, v in metrics.items()]
        with self._buffer_lock:
            self._metrics.extend(points)
            self._epoch_keys.update(key for key, _, _, _ in points)
            self._epoch_steps.add(int(step))

    def finish(
        self,
        status: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[str, bytes | str] | None = None,
        history: list[dict[str, float]] | None = None,
    ) -> Future[None]:
        """Send everything left, the artifacts, and end the run with `status`. Never raises
        for tracking trouble (the trial trained; its result must not depend on MLflow), and
        never waits for the server: the returned future is done once the run's remaining ops
        are safe in a write-ahead spool file (wait for it before publishing the trial).

        `metrics` with a key also logged per epoch are stored as `final/<key>`, so an epoch
        history keeps one point per epoch. `history` epochs never given to `log_epoch` are
        logged (step: the entry's `epoch`, else its position from 1).
        """
        check_status(status)
        if self.finished:
            _logger.warning("trial %s attempt %s finished twice", self.trial_number, self.attempt)
            done: Future[None] = Future()
            done.set_result(None)
            return done
        ts = now_ms()
        with self._buffer_lock:
            self.finished = True  # the flusher leaves it alone from here
            for i, entry in enumerate(history or [], start=1):
                step = int(entry.get("epoch", i))
                if step in self._epoch_steps:
                    continue
                self._epoch_steps.add(step)
                for key, value in entry.items():
                    if key != "epoch" and _is_number(value):
                        self._metrics.append((clean_key(key), float(value), ts, step))
                        self._epoch_keys.add(clean_key(key))
            last_step = max(self._epoch_steps, default=0)
            for key, value in metrics.items():
                name = clean_key(key)
                if name in self._epoch_keys:
                    name = FINAL_PREFIX + name
                self._metrics.append((name, float(value), ts, last_step))
        tags = {clean_key(k): clean_tag(v) for k, v in tags.items()}
        files: dict[str, bytes | str] = dict(artifacts or {})
        if self.tracker._active is self:
            self.tracker._active = None
        spooled: Future[None] = Future()
        self.tracker._run_queued()
        try:
            self.tracker._sender.submit(self._spool_and_send, status, tags, files, spooled)
        except BaseException:  # the sender is shut down: nothing will be sent to count down
            self.tracker._run_done()
            raise
        return spooled

    @property
    def created_id(self) -> str | None:
        """The run's id if the server has answered its creation (never waits)."""
        return self._target.run_id

    def _spool_and_send(
        self,
        status: str,
        tags: dict[str, str],
        files: dict[str, bytes | str],
        spooled: Future[None],
    ) -> None:
        """On the sender, after this run's creation: the write-ahead file (then `spooled` is
        done: the run's data survives this process), then the requests."""
        write_ahead = None
        try:
            write_ahead = self._write_ahead(status, tags, files)
        except Exception:  # a background thread must never die silently
            _logger.exception("spooling the MLflow run of trial %s failed", self.trial_number)
        finally:
            spooled.set_result(None)
        try:
            self._complete(status, tags, files, write_ahead)
        finally:
            self.tracker._run_done()

    def _write_ahead(
        self, status: str, tags: dict[str, str], files: dict[str, bytes | str]
    ) -> Path | None:
        """Spool the run's remaining ops, claimed by this process, before `finish` returns.

        While this process lives nobody else replays the file; if it dies before the
        background thread has sent everything, the claim goes stale and any later replay on
        this host sends the run (a batch sent just before the crash may then repeat).
        """
        with self._buffer_lock:
            params, metrics = dict(self._params), list(self._metrics)
        ops = [*self._outbox, *batch_ops(params, metrics, tags)]
        ops += [artifact_op(path, data) for path, data in files.items()]
        ops.append(terminate_op(status, now_ms()))
        try:
            return write_claimed_spool_file(self.tracker.spool_dir, self._spool_header(), ops)
        except OSError as exc:  # a full or read-only disk: still send, just without the net
            _logger.warning("no write-ahead spool for trial %s: %s", self.trial_number, exc)
            return None

    def _complete(
        self,
        status: str,
        tags: dict[str, str],
        files: dict[str, bytes | str],
        write_ahead: Path | None,
    ) -> None:
        """The slow half of `finish`: send, spool what the server did not take."""
        try:
            extra_tags: dict[str, str] = {}
            with self._buffer_lock:
                bad = nonfinite_keys(self._metrics)
            if bad:
                extra_tags[NONFINITE_TAG] = clean_tag(",".join(bad))
            ops = [artifact_op(path, data) for path, data in files.items()]
            ops.append(terminate_op(status, now_ms()))
            with self.tracker._io_lock:
                self._flush_buffer(tags | extra_tags)
                if not self._refused:
                    self._outbox.extend(ops)
                reached = self._send_outbox()
                if not reached:
                    self._spool_outbox()
            if write_ahead is not None:
                write_ahead.unlink(missing_ok=True)  # sent, or superseded by the spool
            if reached and pending_files(self.tracker.spool_dir, self.tracker.ref.tracking_uri):
                self.tracker.replay()
        except Exception:  # a background thread must never die silently
            _logger.exception("finishing the MLflow run of trial %s failed", self.trial_number)

    # --- called with the tracker's io lock held ----------------------------------------
    def _flush_buffer(self, tags: dict[str, str] | None = None) -> None:
        with self._buffer_lock:
            params, self._params = self._params, {}
            metrics, self._metrics = self._metrics, []
        if self._refused:
            return
        if params or metrics or tags:
            self._outbox.extend(batch_ops(params, metrics, tags or {}))

    def _send_outbox(self) -> bool:
        """Send ops in order; False (ops kept) at the first one the server did not take."""
        client = self.tracker.client
        while self._outbox:
            op = self._outbox[0]
            try:
                execute(client, self._target, op)
            except Exception as exc:
                if not is_permanent(exc):
                    _logger.warning(
                        "MLflow unreachable (%s for trial %s): %s",
                        op["op"],
                        self.trial_number,
                        describe(exc),
                    )
                    return False
                _logger.warning(
                    "MLflow refused %s for trial %s, dropped: %s",
                    op["op"],
                    self.trial_number,
                    describe(exc),
                )
                if op["op"] == "create_run":
                    self._refused = True  # no run: later ops have nowhere to go
                    self._outbox.clear()
                    return True
            self._outbox.pop(0)
        return True

    def _spool_header(self) -> dict[str, Any]:
        return spool_header(
            self.tracker.ref.tracking_uri,
            self._target,
            study=self.tracker.study_name,
            trial_number=self.trial_number,
            attempt=self.attempt,
        )

    def _spool_outbox(self) -> None:
        if not self._outbox:
            return
        try:
            path = write_spool_file(self.tracker.spool_dir, self._spool_header(), self._outbox)
        except OSError as exc:
            _logger.error("could not spool trial %s: %s", self.trial_number, describe(exc))
            return
        _logger.warning(
            "trial %s: %d MLflow op(s) spooled to %s",
            self.trial_number,
            len(self._outbox),
            redact(str(path)),
        )
        self._outbox = []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
