"""Local workers forked from one process that imported their libraries once (pre-fork).

`hpsearch run` used to start each local worker as its own `python -m search worker NAME`, and
each imported torch, Optuna and MLflow anew: seconds of CPU per worker on the 2-core CI
machine, paid while the command itself imports MLflow to create the study's experiment. On
the README's demo, two workers then finished *later* than one (measured: 8.7 s against 7.1 s
wall, 11.0 s against 7.6 s of CPU), the second worker's imports costing more than the
training it took over. So, as Gunicorn's `--preload` and PyTorch's DataLoader do, one
*leader* process (`python -m search worker NAME` with `$HPSEARCH_PREFORK` set) imports at its
start gate and then forks the workers; each child goes on exactly as a plain `hpsearch worker`
does after its gate (its own pid, worker id, storage connection, log file and environment:
GPU pin, thread count), so a local run still exercises a second host's path.

The leader forks only once its gate opens (the study exists), before any storage, thread or
CUDA context is made, then only reaps: it prints `pid I PID` and `exit I CODE` lines on its
stdout for the runner and forwards SIGTERM/SIGINT to its children. The runner holds one
`ForkedWorker` per child, with the part of `subprocess.Popen` it uses (poll, wait, signals).
Linux only (fork after importing these libraries is not safe on macOS); elsewhere the runner
starts one process per worker as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

PREFORK_ENV = "HPSEARCH_PREFORK"  # JSON: {"logs": [path per child], "envs": [env per child]}
_forked = False  # this process is a leader, or a worker a leader forked


def available() -> bool:
    return sys.platform == "linux"


# --- the leader (in the worker process) --------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    logs: list[str]
    envs: list[dict[str, str]]


def _plan_from_env() -> _Plan | None:
    raw = os.environ.pop(PREFORK_ENV, None)
    if not raw:
        return None
    data = json.loads(raw)
    return _Plan([str(p) for p in data["logs"]], [dict(e) for e in data["envs"]])


def lead_or_continue() -> int | None:
    """In a leader: fork the workers and supervise them; returns the leader's exit code.
    In a forked child, or in a plain worker (no `$HPSEARCH_PREFORK`): returns None, and the
    caller goes on as a worker."""
    global _forked
    plan = _plan_from_env()
    if plan is None:
        return None
    # The collector stays paused (`search.start_up_gc`): each child freezes what it inherited
    # with `start_up_done`, so its collections never touch (and copy) the shared pages.
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, int] = {}  # pid -> child index
    stops = {signal.SIGTERM, signal.SIGINT}
    # Blocked while forking: a stop that arrives meanwhile is forwarded to every child once
    # they are all known (the handler is installed first, so the leader never dies of it).
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    _forward_stops_to(children)
    for i, (log, env) in enumerate(zip(plan.logs, plan.envs, strict=True)):
        pid = os.fork()
        if pid == 0:
            _forked = True
            for sig in stops:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
            _become_worker(log, env)
            return None
        children[pid] = i
        _report(f"pid {i} {pid}")
    _forked = True  # the leader too: its teardown would only hold up the runner's reaping
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    return _supervise(children)


def exit_if_forked(code: int) -> None:
    """In a forked worker (and its leader), end the process now, as multiprocessing's forked
    children do: the interpreter's teardown would decref the leader's whole imported heap,
    copying every page a child shares with the leader (measured on the README's demo: 0.8 s
    between the workers' last trial and the runner seeing them exit, 0.2 s for a worker
    started on its own). What must outlive a worker is already written (its storage
    disposed, spool files whole); its logs are flushed here and its non-daemon threads
    joined first."""
    if not _forked:
        return
    import logging

    # What a forked multiprocessing child does before its os._exit: the threading module's
    # exit callbacks (executors told to finish), then every non-daemon thread joined.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _become_worker(log: str, env: dict[str, str]) -> None:
    """The child's own environment and log (fds 1 and 2, so `print`, logging and native
    libraries all write there); stdin closed like a worker's after its gate."""
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _forward_stops_to(children: dict[int, int]) -> None:
    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)


def _supervise(children: dict[int, int]) -> int:
    """Reap the children, reporting each one's exit code; 1 when any failed."""
    worst = 0
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid in children:
            code = os.waitstatus_to_exitcode(status)
            _report(f"exit {children.pop(pid)} {code}")
            worst = worst or code
    return 0 if worst == 0 else 1


def _report(line: str) -> None:
    os.write(1, f"{line}\n".encode())


# --- the runner's side -------------------------------------------------------------------------


@dataclass
class _Reports:
    """What the leader said, read by a thread from its stdout."""

    pids: dict[int, int] = field(default_factory=dict)
    codes: dict[int, int] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)
    leader_done: bool = False


class Leader:
    """The leader process and its reports."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.reports = _Reports()
        self._reader = threading.Thread(target=self._read, name="hpsearch-prefork", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            parts = raw.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] in ("pid", "exit"):
                with self.reports.changed:
                    target = self.reports.pids if parts[0] == "pid" else self.reports.codes
                    target[int(parts[1])] = int(parts[2])
                    self.reports.changed.notify_all()
        self.proc.wait()
        with self.reports.changed:
            self.reports.leader_done = True
            self.reports.changed.notify_all()


class ForkedWorker:
    """One forked worker, seen from the runner like a `subprocess.Popen`."""

    def __init__(self, leader: Leader, index: int) -> None:
        self.leader = leader
        self.index = index

    @property
    def pid(self) -> int | None:
        """Its pid once forked (None while the leader is still at its gate)."""
        return self.leader.reports.pids.get(self.index)

    @property
    def returncode(self) -> int | None:
        reports = self.leader.reports
        with reports.changed:
            if self.index in reports.codes:
                return reports.codes[self.index]
            if reports.leader_done:
                # The leader ended without reporting this child: it never forked it (its gate
                # closed, it was killed) or died before reaping it.
                return self.leader.proc.returncode  # reaped before `leader_done` was set
            return None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        reports = self.leader.reports
        with reports.changed:
            while self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"worker {self.index}", timeout or 0.0)
                reports.changed.wait(left)
            code = self.returncode
        assert code is not None
        if all(i in reports.codes for i in reports.pids):
            # The last one out: the leader exits now; reap it (it has nothing left to do).
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.leader.proc.wait(timeout=10.0)
        return code

    def send_signal(self, sig: int) -> None:
        """To the child once it exists; before that to the leader (at its gate, it dies; later
        it forwards the signal to every child)."""
        pid = self.pid
        try:
            if pid is not None and self.returncode is None:
                os.kill(pid, sig)
            elif self.leader.proc.poll() is None:
                self.leader.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(
    cmd: Sequence[str],
    env: dict[str, str],
    child_envs: Sequence[dict[str, str]],
    logs: Sequence[Path],
    leader_log: Path,
) -> list[ForkedWorker]:
    """Start a leader for `len(child_envs)` workers; one `ForkedWorker` each."""
    plan = {"logs": [str(p) for p in logs], "envs": list(child_envs)}
    with open(leader_log, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**env, PREFORK_ENV: json.dumps(plan)},
            start_new_session=True,
        )
    leader = Leader(proc)
    return [ForkedWorker(leader, i) for i in range(len(child_envs))]
