"""The worker's side of MLflow: each attempt's child run opened, closed, discarded or ended.

Every request goes through the worker's `Tracker` threads (`start_trial` creates the run from
a helper thread, `finish` hands the last requests to the background finisher, `submit` queues
the rest behind them): the worker's thread never waits on the tracking server, and nothing is
sent while a storage lock is held.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from search.errors import StudyError
from search.study import StudySpec
from search.worker._outcome import STALE_REASON

_logger = logging.getLogger("search.worker")


class NoRun:
    """The trial run when tracking is off (benchmarks, `--no-tracking`)."""

    created_id: str | None = None

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        pass


class TrialRuns:
    """Opens and ends the worker's trial runs; a no-op when the study is not tracked."""

    def __init__(
        self,
        spec: StudySpec,
        worker: str,
        tracking_uri: str | None,
        spool_dir: str | Path | None,
    ) -> None:
        self.spec = spec
        self.worker = worker
        self.tracking_uri = tracking_uri
        self.tracker: Any = None
        self.ref: Any = None
        if tracking_uri is not None:
            from search.tracking import DEFAULT_SPOOL_DIR, StudyRunRef, Tracker

            if spec.experiment_id is None or spec.parent_run_id is None:
                raise StudyError(
                    f"the study {spec.name!r} is tracked but has no MLflow experiment and parent "
                    "run: create it again with `hpsearch create`"
                )
            self.ref = StudyRunRef(
                experiment_id=spec.experiment_id,
                parent_run_id=spec.parent_run_id,
                tracking_uri=tracking_uri,
                study_name=spec.name,
            )
            spool = Path(spool_dir) if spool_dir else DEFAULT_SPOOL_DIR
            self.tracker = Tracker(self.ref, spool_dir=spool, worker=worker)

    @property
    def enabled(self) -> bool:
        return self.tracker is not None

    def open(
        self,
        number: int,
        attempt: int,
        config: Mapping[str, Any],
        retry_of: int | None,
        on_created: Callable[[str], None],
    ) -> Any:
        if self.tracker is None:
            return NoRun()
        tags = {"hpsearch.worker": self.worker, "hpsearch.study": self.spec.name}
        if retry_of is not None:
            tags["hpsearch.retry_of"] = str(retry_of)
        # Created while the trial trains; `on_created` records its id on the trial.
        return self.tracker.start_trial(number, attempt, dict(config), tags, on_created=on_created)

    def finish(
        self,
        run: Any,
        status: str,
        outcome: str,
        reason: str | None,
        result: Any,
        config: Mapping[str, Any] | None,
    ) -> Future[None] | None:
        """End the run without waiting for the server. The future is done once the run's ops
        are in a write-ahead spool file: wait for it before telling Optuna, so that a trial is
        never public in Optuna with its metrics lost."""
        if self.tracker is None or isinstance(run, NoRun):
            return None
        tags = {"outcome": outcome}
        if reason:
            tags["reason"] = reason
        if result is not None and result.flags:
            tags["flags"] = ",".join(result.flags)
        metrics = {k: v for k, v in (result.metrics if result else {}).items() if _finite(v)}
        artifacts = {"config.json": json.dumps(dict(config), indent=2).encode()} if config else {}
        try:
            spooled: Future[None] = run.finish(
                status,
                metrics,
                tags,
                artifacts=artifacts,
                history=result.history if result is not None else None,
            )
            return spooled
        except Exception as exc:  # tracking is best effort; the trial's result is in Optuna
            _logger.warning("closing the MLflow run failed: %s", exc)
            return None

    def discard(self, run: Any) -> None:
        """The run was closed with a result that Optuna then refused (failed as stale
        meanwhile): mark it KILLED, after its own end (queued behind it)."""
        if self.tracker is None or isinstance(run, NoRun):
            return
        self.tracker.submit(functools.partial(self._discard, run))

    def _discard(self, run: Any) -> None:
        run_id = run.created_id  # this runs after the run's own end: its creation is done
        if run_id is None:
            return
        client = self.tracker.client
        try:
            client.set_tag(run_id, "outcome", "discarded")
            client.set_tag(run_id, "reason", STALE_REASON)
            client.set_terminated(run_id, "KILLED")
        except Exception as exc:
            _logger.warning("marking the discarded run KILLED failed: %s", exc)

    def end_dead_attempt(self, number: int, attempt: int, run_id: str | None, reason: str) -> None:
        """A dead worker's attempt was failed as stale: end its run KILLED (found by its tags
        when the worker died before recording its id). Spooled when MLflow is down."""
        if self.tracking_uri is None:
            return
        self._submit(functools.partial(self._end_dead, number, attempt, run_id, reason))

    def _end_dead(self, number: int, attempt: int, run_id: str | None, reason: str) -> None:
        from search.tracking import find_trial_run, mark_run_ended

        assert self.tracking_uri is not None
        try:
            if not run_id and self.ref is not None:
                run_id = find_trial_run(self.ref, number, attempt)
            if run_id:
                spool = self.tracker.spool_dir if self.tracker is not None else None
                mark_run_ended(self.tracking_uri, run_id, "KILLED", reason, spool_dir=spool)
        except Exception as exc:
            _logger.warning("marking the dead attempt's MLflow run failed: %s", exc)

    def fail_study_run(self, reason: str) -> None:
        """This worker stops for errors: end the study's MLflow run FAILED, with the reason,
        rather than leave it RUNNING as if the study went on (queued behind every run's end;
        a later run of the study that meets its budget ends it FINISHED)."""
        if self.tracker is not None:
            self.tracker.submit(functools.partial(self._fail_study_run, reason))

    def _fail_study_run(self, reason: str) -> None:
        from search.tracking import REASON_TAG, clean_tag

        client, run_id = self.tracker.client, self.ref.parent_run_id
        try:
            client.set_tag(run_id, REASON_TAG, clean_tag(reason))
            client.set_terminated(run_id, "FAILED")
        except Exception as exc:  # the trials' own states say what happened
            _logger.warning("marking the study's MLflow run FAILED failed: %s", exc)

    def update_best(
        self, read_best: Callable[[], tuple[int, float] | None], numbers: set[int]
    ) -> None:
        """After complete trials were recorded: if one of them is the study's best, say so on
        the parent run (a read and a request, off the worker's thread)."""
        if self.tracker is None:
            return
        self._submit(functools.partial(self._update_best, read_best, numbers))

    def _update_best(
        self, read_best: Callable[[], tuple[int, float] | None], numbers: set[int]
    ) -> None:
        from search.tracking import update_study_best

        try:
            best = read_best()
        except Exception as exc:  # the results are told; the MLflow summary can wait
            _logger.warning("reading the study's best trial failed: %s", exc)
            return
        if best is not None and best[0] in numbers:
            try:
                update_study_best(self.ref, best[1], best[0], best[0])
            except Exception as exc:
                _logger.warning("updating the study's best in MLflow failed: %s", exc)

    def submit(self, fn: Callable[[], None]) -> None:
        """`fn` on the tracker's finishing thread, after every run ended so far."""
        self._submit(fn)

    def _submit(self, fn: Callable[[], None]) -> None:
        if self.tracker is not None:
            self.tracker.submit(fn)
        else:
            fn()

    def wait(self) -> None:
        if self.tracker is not None:
            self.tracker.wait_finished()

    def shutdown(self) -> None:
        if self.tracker is not None:
            try:
                self.tracker.close()
            except Exception as exc:
                _logger.warning("closing the tracker failed: %s", exc)
            self.tracker = None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
