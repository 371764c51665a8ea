"""The collector is paused through a command's start-up, then resumed with start-up's objects
frozen; a library user's process is left as it was."""

from __future__ import annotations

import gc
import subprocess
import sys

from search import start_up_gc


def test_start_up_done_leaves_a_library_users_collector_alone() -> None:
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    start_up_gc.start_up_done()  # no pause came first: nothing to undo
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_paused_start_up_freezes_its_imports_and_resumes_collecting() -> None:
    code = (
        "import gc\n"
        "from search import start_up_gc\n"
        "start_up_gc.pause_for_start_up()\n"
        "assert not gc.isenabled()\n"
        "import optuna, torch\n"
        "start_up_gc.start_up_done()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 100_000)\n"
        "start_up_gc.start_up_done()\n"  # twice: the second is a no-op
        "print(gc.isenabled())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "True"], out.stdout


def test_the_command_exits_cleanly_with_collection_paused() -> None:
    # A short verb never resumes collection: it exits through `entry` with start-up frozen.
    out = subprocess.run(
        [sys.executable, "-m", "search", "space", "show", "lesson"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "alpha" in out.stdout
