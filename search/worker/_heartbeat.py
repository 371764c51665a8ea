"""One heartbeat per worker: every interval, one statement beats for all the trials it holds.

Optuna sends heartbeats only inside `study.optimize`, one transaction per trial; a worker that
holds a batch of claimed trials beats for all of them at once, learns which of them were failed
as stale while it was away (paused, cut off), and looks for other workers' stale trials.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from search.trial_queue import TrialQueue

_logger = logging.getLogger("search.worker")


class HeartbeatThread:
    """Beats for `held` trials every `interval_s`; calls `on_interval` after each beat (the
    stale-trial sweep). Errors are logged, never raised: a missed beat is what the grace period
    is for."""

    def __init__(
        self,
        queue: TrialQueue,
        interval_s: float,
        on_interval: Callable[[], None] | None = None,
    ) -> None:
        self._queue = queue
        self._interval = interval_s
        self._on_interval = on_interval
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpsearch-heartbeat", daemon=True)

    def hold(self, trial_ids: Iterable[int]) -> None:
        with self._lock:
            self._held.update(trial_ids)

    def drop(self, trial_ids: Iterable[int]) -> None:
        with self._lock:
            ids = set(trial_ids)
            self._held -= ids
            self._lost -= ids

    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)

    def lost(self, trial_id: int) -> bool:
        """Whether the last beat found this trial failed as stale (no longer ours)."""
        with self._lock:
            return trial_id in self._lost

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                held = sorted(self._held)
            try:
                lost = self._queue.heartbeat(held)
            except Exception as exc:  # a flaky database must not kill the trial
                _logger.warning("heartbeat of %d trial(s) failed: %s", len(held), exc)
                continue
            if lost:
                with self._lock:
                    self._lost |= lost & self._held
            if self._on_interval is not None:
                try:
                    self._on_interval()
                except Exception as exc:
                    _logger.warning("the stale-trial sweep failed: %s", exc)

    def __enter__(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)
