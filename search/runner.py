"""`run_study`: start N worker processes on a study, show progress, summarize at the end.

Workers are separate processes running `python -m search worker NAME` (the storage URL passed
in `$HPSEARCH_STORAGE` so no password shows in `ps`), exactly what a second host would run,
so a local run exercises the same path as a distributed one; on Linux they are forked by one
leader that imported torch, Optuna and MLflow once for all of them (`search.prefork`). With GPUs,
`workers="auto"` starts `workers_per_gpu` workers per GPU, each pinned with
`CUDA_VISIBLE_DEVICES`; on CPU it starts min(cores, 4) and splits the cores' torch threads
among them. Ctrl-C stops the workers (SIGTERM: each fails and re-queues its running trial), so
running the same study again resumes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from search import prefork
from search.errors import InfrastructureError, StudyError
from search.storage import count_trials, open_storage
from search.study import StudySpec
from search.summary import SUMMARY_ENV
from search.worker import GATE_OPEN, N_WORKERS_ENV, START_GATE_ENV

MAX_AUTO_CPU_WORKERS = 4
POLL_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 30.0
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/kfd")

# A local worker: forked by a leader (Linux), or a process of its own.
WorkerProcess = subprocess.Popen[bytes] | prefork.ForkedWorker


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers, and the environment of each (its GPU pin, if any)."""

    envs: list[dict[str, str]] = field(default_factory=list)
    device: str = "cpu"

    @property
    def n(self) -> int:
        return len(self.envs)


def gpu_count() -> int:
    # Importing torch costs the runner about a second; a Linux host without NVIDIA's (or
    # ROCm's) device nodes has no GPU torch could use, so it need not be asked.
    if sys.platform == "linux" and not any(os.path.exists(p) for p in GPU_DEVICE_NODES):
        return 0
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


def plan_workers(
    workers: int | str, workers_per_gpu: int, spec: StudySpec, n_gpus: int | None = None
) -> WorkerPlan:
    """The worker processes to start for `spec` (never more than its budget)."""
    if isinstance(workers_per_gpu, bool) or not isinstance(workers_per_gpu, int):
        raise StudyError(f"`workers_per_gpu` must be an integer >= 1, but got {workers_per_gpu!r}")
    if workers_per_gpu < 1:
        raise StudyError(f"`workers_per_gpu` must be an integer >= 1, but got {workers_per_gpu}")
    device = str(spec.base.get("device", "auto"))
    gpus = (gpu_count() if n_gpus is None else n_gpus) if device != "cpu" else 0
    if device.startswith("cuda:"):
        gpus = 0  # the study pins one device itself; do not re-pin it
    if workers == "auto":
        n = gpus * workers_per_gpu if gpus else min(os.cpu_count() or 1, MAX_AUTO_CPU_WORKERS)
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        n = workers
    else:
        raise StudyError(f"`workers` must be an integer >= 1 or 'auto', but got {workers!r}")
    n = max(1, min(n, spec.n_trials))
    envs = []
    for i in range(n):
        env = {N_WORKERS_ENV: str(n)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str((i // workers_per_gpu) % gpus)
        envs.append(env)
    return WorkerPlan(envs, "cuda" if gpus else device)


@dataclass
class RunOutcome:
    spec: StudySpec
    finished: int
    workers: int
    exit_codes: list[int]
    wall_time_s: float
    log_dir: Path

    @property
    def ok(self) -> bool:
        return self.finished >= self.spec.n_trials and all(c == 0 for c in self.exit_codes)


def start_workers(
    spec: StudySpec,
    storage_url: str,
    plan: WorkerPlan,
    log_dir: Path,
    tracking_uri: str | None = None,
) -> list[WorkerProcess]:
    """Start the plan's workers. They import what they need, then wait at their start gate
    (`open_gates`) before they touch the storage, so workers can start while the study is
    still being created. On Linux one leader imports for all and forks them at the gate
    (`search.prefork`); elsewhere each worker is its own process."""
    env = dict(os.environ)
    # URLs by environment, not argv: a password in argv shows in `ps` to every user.
    env["HPSEARCH_STORAGE"] = storage_url
    env[SUMMARY_ENV] = "runner"  # the summary is written once, by `api.run_study`
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env[START_GATE_ENV] = _gate_mode(tracking_uri or spec.tracking_uri)
    cmd = [sys.executable, "-m", "search", "worker", spec.name]
    logs = [log_dir / f"worker-{i}.log" for i in range(plan.n)]
    if prefork.available():
        return list(prefork.start(cmd, env, plan.envs, logs, log_dir / "leader.log"))
    procs: list[WorkerProcess] = []
    for extra, path in zip(plan.envs, logs, strict=True):
        with open(path, "ab") as log:
            procs.append(
                subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, **extra},
                    start_new_session=True,
                )
            )
    return procs


def _gate_mode(tracking_uri: str | None) -> str:
    """What a worker preloads at its gate: nothing of MLflow, its REST client, or its store."""
    if not tracking_uri:
        return "untracked"
    return "server" if tracking_uri.startswith(("http://", "https://")) else "local"


def open_gates(procs: Sequence[WorkerProcess]) -> None:
    """Let the workers go on: their study exists now."""
    for proc in procs:
        # A forked worker's gate is its leader's stdin: opened once, then closed.
        stdin = proc.leader.proc.stdin if isinstance(proc, prefork.ForkedWorker) else proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.write(GATE_OPEN)
                stdin.close()
            except OSError:  # it died meanwhile: its exit code tells
                pass


def stop_workers(procs: Sequence[WorkerProcess], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each worker (it fails and re-queues its trial), SIGKILL what outlives `timeout_s`."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class EarlyStart:
    """Workers started for a study, waiting at their start gates until `run_study` opens
    them. Started before the study is created, their imports (torch, Optuna, MLflow: most of
    a worker's start-up) overlap the creation instead of following it."""

    plan: WorkerPlan
    log_dir: Path
    procs: list[WorkerProcess]

    def cancel(self) -> None:
        """The study could not be created: stop the waiting workers (they wrote nothing)."""
        stop_workers(self.procs, timeout_s=5.0)
        shutil.rmtree(self.log_dir, ignore_errors=True)


def start_early(
    spec: StudySpec,
    storage_url: str,
    workers: int | str = "auto",
    workers_per_gpu: int = 1,
    tracking_uri: str | None = None,
) -> EarlyStart:
    """Start `spec`'s workers behind their gates (see `EarlyStart`)."""
    plan = plan_workers(workers, workers_per_gpu, spec)
    log_dir = Path(tempfile.mkdtemp(prefix=f"hpsearch-{_safe(spec.name)}-"))
    procs = start_workers(spec, storage_url, plan, log_dir, tracking_uri)
    return EarlyStart(plan, log_dir, procs)


def run_study(
    spec: StudySpec,
    storage_url: str,
    *,
    workers: int | str = "auto",
    workers_per_gpu: int = 1,
    tracking_uri: str | None = None,
    progress: bool = True,
    out: TextIO | None = None,
    early: EarlyStart | None = None,
) -> RunOutcome:
    """Run `spec` (already created) with local worker processes until its budget is met:
    the ones `early` started before the study existed, or new ones."""
    out = out or sys.stderr
    early = early or start_early(spec, storage_url, workers, workers_per_gpu, tracking_uri)
    plan, log_dir, procs = early.plan, early.log_dir, early.procs
    storage = open_storage(storage_url)
    study_id = storage.get_study_id_from_name(spec.name)
    started = time.monotonic()
    print(
        f"study {spec.name!r}: {spec.n_trials} trials, {plan.n} worker(s) on {plan.device}, "
        f"logs in {log_dir}",
        file=out,
    )
    open_gates(procs)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=spec.n_trials, desc=spec.name, unit="trial", file=out, leave=True)
    finished = 0
    previous = _stop_on_sigterm()
    try:
        while True:
            counts = count_trials(storage, study_id)
            finished = counts.finished
            if bar is not None:
                bar.n = min(finished, spec.n_trials)
                bar.set_postfix_str(_best_text(storage, study_id, spec), refresh=False)
                bar.refresh()
            if _wait_any_exit(procs, POLL_INTERVAL_S):
                finished = count_trials(storage, study_id).finished
                break
    except KeyboardInterrupt:
        print("\nstopping workers (their running trials are re-queued)...", file=out)
        stop_workers(procs)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
        storage.engine.dispose()
    codes = [p.wait() for p in procs]  # each has exited: this reaps (a leader too)
    outcome = RunOutcome(spec, finished, plan.n, codes, time.monotonic() - started, log_dir)
    if any(codes):
        tails = "\n".join(_tail(_log_of(log_dir, i)) for i, c in enumerate(codes) if c)
        message = f"{sum(1 for c in codes if c)} worker(s) failed (exit codes {codes}):\n{tails}"
        if finished < spec.n_trials:
            raise InfrastructureError(message)
        print(message, file=out)
    return outcome


def _wait_any_exit(procs: Sequence[WorkerProcess], seconds: float) -> bool:
    """Sleep up to `seconds`, returning as soon as every worker has exited (True): the study's
    end is seen in a tenth of a second, not a whole progress-bar interval."""
    deadline = time.monotonic() + seconds
    while True:
        if all(p.poll() is not None for p in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _stop_on_sigterm() -> Any:
    """SIGTERM to the runner (a scheduler, `kill`) stops its workers like Ctrl-C does, instead
    of orphaning them (they run in their own sessions so that a terminal's Ctrl-C reaches only
    the runner, which then stops them in order)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _best_text(storage: Any, study_id: int, spec: StudySpec) -> str:
    try:
        best = storage.get_best_trial(study_id)
    except (ValueError, KeyError):
        return "best: -"
    return f"best {spec.metric}={best.value:.4g} (trial {best.number})"


def _log_of(log_dir: Path, i: int) -> Path:
    """Worker i's log; the leader's, when i was never forked (the leader failed first)."""
    own, leader = log_dir / f"worker-{i}.log", log_dir / "leader.log"
    return own if own.exists() or not leader.exists() else leader


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"({path} unreadable)"
    return f"--- {path}\n" + "\n".join(text)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]
