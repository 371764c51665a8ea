"""The garbage collector around a command's start-up: paused while the imports run, then their
objects frozen and collection resumed.

Importing torch, Optuna and MLflow allocates hundreds of thousands of long-lived objects, and
the collector walks the growing heap again and again while they load: about a quarter of a
worker's import time on the 2-core CI machine (`bench/throughput_bench.py` measures start-up).
None of it is garbage. `hpsearch` (`search.cli.entry`) pauses collection before anything is
imported; each long-running verb calls `start_up_done()` once its heavy imports are in (a
worker before its first trial, `run` once its study exists, `train` and `lesson` before they
train), which freezes what start-up allocated (never walked by a collection again) and
resumes collection. Short verbs exit with it paused.

A library user's process is left alone: `start_up_done` acts only after `pause_for_start_up`.
"""

from __future__ import annotations

import gc

_paused = False


def pause_for_start_up() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def start_up_done() -> None:
    """Freeze the objects start-up allocated and collect from here on (a no-op unless
    `pause_for_start_up` paused collection in this process)."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False
