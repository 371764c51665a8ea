"""SIGTERM as a request to stop: the trial in training ends as an infrastructure failure (failed
and re-queued at once instead of waiting out the grace period); between trials the worker
records what it trained, gives back what it had not started, and exits."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Stop(Exception):
    """Raised in the training thread when SIGTERM arrives during training."""


class StopSignal:
    """Installs a SIGTERM handler for the worker's life (main thread only)."""

    def __init__(self) -> None:
        self.requested: str | None = None  # the reason, once a stop was asked for
        self._training = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = f"stopped: the worker received {signal.Signals(signum).name}"
        if self._training:
            self._training = False  # raise once; cleanup code after it must not be interrupted
            raise Stop(self.requested)

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Inside this block a SIGTERM raises `Stop` (the trial is interrupted)."""
        if self.requested:
            raise Stop(self.requested)
        self._training = True
        try:
            yield
        finally:
            self._training = False
