"""`hpsearch run`'s local workers are forked by one leader that imported their libraries once
(`search.prefork`): the protocol with a stand-in worker body, then real studies."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search import api, prefork, runner
from tests.support.study import REPO, ObservedStart, request, sqlite_url, trials

pytestmark = pytest.mark.skipif(not prefork.available(), reason="pre-fork is Linux only")

# A leader like the worker verb's: it waits at a gate, then forks; each child prints its
# environment's X and exits with it (or sleeps, to be signalled).
BODY = """
import os, sys, time
from search.prefork import lead_or_continue
if sys.stdin.buffer.readline() != b"go\\n":
    sys.exit(0)
code = lead_or_continue()
if code is not None:
    sys.exit(code)
print("child", os.environ["X"], os.getpid(), flush=True)
if os.environ.get("SLEEP"):
    time.sleep(60)
sys.exit(int(os.environ["X"]))
"""


def _start(tmp_path: Path, envs: list[dict[str, str]]) -> list[prefork.ForkedWorker]:
    logs = [tmp_path / f"worker-{i}.log" for i in range(len(envs))]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return prefork.start([sys.executable, "-c", BODY], env, envs, logs, tmp_path / "leader.log")


def _wait_for_pids(workers: list[prefork.ForkedWorker]) -> list[int]:
    with workers[0].leader.reports.changed:
        workers[0].leader.reports.changed.wait_for(
            lambda: all(w.pid is not None for w in workers), timeout=60
        )
    pids = [w.pid for w in workers]
    assert all(p is not None for p in pids), f"the leader reported pids {pids}"
    return [int(p) for p in pids if p is not None]


def test_each_child_has_its_own_environment_log_and_exit_code(tmp_path: Path) -> None:
    workers = _start(tmp_path, [{"X": "0"}, {"X": "3"}, {"X": "5"}])
    assert all(w.pid is None and w.poll() is None for w in workers)  # at the gate: not forked
    runner.open_gates(workers)
    assert [w.wait(timeout=60) for w in workers] == [0, 3, 5]
    pids = [w.pid for w in workers]
    assert len(set(pids)) == 3 and workers[0].leader.proc.pid not in pids
    for i, x in enumerate(("0", "3", "5")):
        assert (tmp_path / f"worker-{i}.log").read_text() == f"child {x} {pids[i]}\n"
    assert workers[0].leader.proc.poll() is not None  # reaped with the last child


def test_a_signal_after_the_fork_reaches_that_child_only(tmp_path: Path) -> None:
    workers = _start(tmp_path, [{"X": "0", "SLEEP": "1"}, {"X": "0", "SLEEP": "1"}])
    runner.open_gates(workers)
    _wait_for_pids(workers)
    workers[0].send_signal(signal.SIGTERM)
    assert workers[0].wait(timeout=30) == -signal.SIGTERM
    assert workers[1].poll() is None
    workers[1].kill()
    assert workers[1].wait(timeout=30) == -signal.SIGKILL


def test_a_sigterm_to_the_leader_is_forwarded_to_every_child(tmp_path: Path) -> None:
    workers = _start(tmp_path, [{"X": "0", "SLEEP": "1"}, {"X": "0", "SLEEP": "1"}])
    runner.open_gates(workers)
    _wait_for_pids(workers)
    workers[0].leader.proc.send_signal(signal.SIGTERM)  # e.g. `kill` of the process group
    assert [w.wait(timeout=30) for w in workers] == [-signal.SIGTERM, -signal.SIGTERM]
    assert workers[0].leader.proc.wait(timeout=30) == 1  # its children failed


def test_a_signal_before_the_gate_stops_the_leader_and_forks_nothing(tmp_path: Path) -> None:
    workers = _start(tmp_path, [{"X": "0"}, {"X": "0"}])
    for w in workers:
        w.send_signal(signal.SIGTERM)
    assert [w.wait(timeout=30) for w in workers] == [-signal.SIGTERM, -signal.SIGTERM]
    assert all(w.pid is None for w in workers)
    assert not list(tmp_path.glob("worker-*.log"))


def test_a_gate_closed_without_opening_ends_every_worker_cleanly(tmp_path: Path) -> None:
    workers = _start(tmp_path, [{"X": "4"}, {"X": "4"}])
    stdin = workers[0].leader.proc.stdin
    assert stdin is not None
    stdin.close()  # the runner could not create the study
    assert [w.wait(timeout=30) for w in workers] == [0, 0]


def test_a_leader_that_fails_before_forking_gives_every_worker_its_code(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    body = "import sys; sys.stdin.readline(); sys.exit(3)"  # e.g. its imports failed
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    leader_log = tmp_path / "leader.log"
    workers = prefork.start([sys.executable, "-c", body], env, [{}, {}], logs, leader_log)
    runner.open_gates(workers)
    assert [w.wait(timeout=30) for w in workers] == [3, 3]
    assert runner._log_of(tmp_path, 0) == leader_log  # what the run's failure message shows


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> ObservedStart:
    monkeypatch.setenv("HPSEARCH_TORCH_THREADS", "1")
    return ObservedStart(monkeypatch)


def test_hpsearch_run_forks_its_workers_from_one_leader(
    observed: ObservedStart, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path)
    run = api.run_study(request("forked", n_trials=6), url, workers=2, progress=False)
    assert run.ok and run.finished == 6
    (early,) = observed.early
    procs = early.procs
    assert all(isinstance(p, prefork.ForkedWorker) for p in procs)
    leaders = {p.leader for p in procs if isinstance(p, prefork.ForkedWorker)}
    assert len(leaders) == 1
    pids = {p.pid for p in procs}
    # Each child is a worker of its own: its pid is in the worker id of the trials it ran.
    workers = {str(t.user_attrs["worker"]).rsplit(":", 1)[1] for t in trials(url, "forked")}
    assert workers <= {str(p) for p in pids} and len(pids) == 2


def test_a_forked_worker_killed_mid_trial_is_reported_and_its_trial_retried(
    observed: ObservedStart, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path)
    slow = {"dataset": "digits", "epochs": 30, "batch_size": 8}
    killed: list[int] = []

    def kill_one_mid_trial() -> None:
        import time

        deadline = time.monotonic() + 120

        # Forked means the study exists (the gate opened): only then is its storage read.
        def forked() -> bool:
            return any(p.pid for e in observed.early for p in e.procs)

        while time.monotonic() < deadline and not forked():
            time.sleep(0.05)
        while time.monotonic() < deadline and not killed:
            running = [t for t in trials(url, "forked-kill") if t.state == TrialState.RUNNING]
            if running and "worker" in running[0].user_attrs:
                pid = int(str(running[0].user_attrs["worker"]).rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(running[0].number)
            time.sleep(0.1)

    watcher = threading.Thread(target=kill_one_mid_trial, daemon=True)
    watcher.start()
    run = api.run_study(
        request("forked-kill", n_trials=4, train=slow), url, workers=2, progress=False
    )
    watcher.join(timeout=5)
    assert killed, "no trial was seen training"
    assert run.finished == 4
    assert run.outcome is not None and sorted(run.outcome.exit_codes) == [-signal.SIGKILL, 0]
    ts = trials(url, "forked-kill")
    victim = next(t for t in ts if t.number == killed[0])
    assert victim.state == TrialState.FAIL
    retry = next(t for t in ts if t.user_attrs.get("retry_of") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    assert observed.early  # the run went through the observed start
