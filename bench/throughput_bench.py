"""Throughput: what the service costs around training, side by side with what users write instead.

(a) The README's demo, `hpsearch run` (12 trials of `lesson` on digits, 10 epochs, 2 workers,
    tracked in the local MLflow store, in a fresh folder) against the ten-line in-process
    Optuna loop a user would write (one process, in-memory storage, no tracking, the same
    space, data and epochs). Whole processes, alternated A B A B; the ratio of medians.
    Target: <= 0.8.
(b) Tiny trials (`synthetic:200`, 1 epoch, tiers 1) on one PostgreSQL study: trials per second
    from the first trial's start to the last one's end (process start-up excluded), with 1, 2
    and 4 worker processes; untracked (target >= 100/s at the best count, >= 1.8x from 1 to 2
    workers) and tracked by a real `mlflow server` on PostgreSQL (target >= 40/s).
(c) Service cost per trial, amortized: one in-process worker's span minus its time inside
    `train()`, over its trials (claim, sampling, heartbeats, telling, tracking hand-off), on
    SQLite and on PostgreSQL; plain Optuna's ask + tell on the same storage as context.
    Target: <= 5 ms.
(d) Start-up: `hpsearch --help` against `optuna --help` (target <= 0.3 s); a worker process
    from its start to its first trial recorded (one epoch of a tiny trial; an upper bound of
    "start -> first epoch", target <= 1.5 s).

    .venv/bin/python -m bench.throughput_bench [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    CpuSampler,
    Row,
    fresh_postgres_database,
    is_quick,
    mlflow_server_process,
    row,
    write_result,
)

HPSEARCH = str(Path(sys.executable).with_name("hpsearch"))
OPTUNA = str(Path(sys.executable).with_name("optuna"))
TINY = {"dataset": "synthetic:200", "epochs": 1, "hidden_units": 16, "hidden_layers": 1,
        "batch_size": 64, "device": "cpu"}  # fmt: skip

# The loop a user writes instead of hpsearch: same space, data, epochs and trial count.
_LOOP_SETUP = """
import optuna, spaces, trainers
optuna.logging.set_verbosity(optuna.logging.WARNING)
space = spaces.load_space("lesson")
base = {"dataset": "digits", "epochs": 10}
data = trainers.prepare_data(trainers.TrainConfig(**base))
def objective(trial):
    config = trainers.TrainConfig.from_dict({**space.suggest(trial, 3), **base})
    return trainers.train(config, data, lambda epoch, metrics: None).metrics["val_accuracy"]
"""
IN_PROCESS_LOOP = _LOOP_SETUP + (
    'optuna.create_study(direction="maximize").optimize(objective, n_trials=12)\n'
)
# What any 2-worker design can reach here, service or none: the loop's process, after its
# imports and the data load (paid once, as hpsearch's prefork leader pays them), forks two
# workers of 6 trials with one torch thread each (as hpsearch's workers); no storage, no
# tracking, no claim. Its ratio to the loop bounds the demo's from below.
FORKED_FLOOR = (
    _LOOP_SETUP
    + """
import os, traceback, torch
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            torch.set_num_threads(1)
            optuna.create_study(direction="maximize").optimize(objective, n_trials=6)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    children.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
raise SystemExit(max(codes))
"""
)


def _run(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def _rotate(commands: Sequence[Callable[[], float]], repeats: int) -> list[list[float]]:
    """A B C A B C ... after one warm-up of each: neighbours share the machine's drift."""
    for command in commands:
        command()
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for command, seconds in zip(commands, times, strict=True):
            seconds.append(command())
    return times


# --- (a) the demo -------------------------------------------------------------------------------


def demo(repeats: int) -> list[Row]:
    phases: list[tuple[float, float, float]] = []

    def ours() -> float:
        with tempfile.TemporaryDirectory(prefix="hpsearch-demo-") as tmp:
            began = _utc_now()
            seconds = _run([HPSEARCH, "run", "--no-progress"], Path(tmp))
            phases.append(_phases(f"sqlite:///{tmp}/hpsearch.db", began, seconds))
            # The study's pictures come from a detached process after the command returns:
            # not in its wall time, but it must not run beside the next measurement either.
            _wait_for_processes("search.summary")
            return seconds

    def theirs() -> float:
        with tempfile.TemporaryDirectory(prefix="hpsearch-loop-") as tmp:
            return _run([sys.executable, "-c", IN_PROCESS_LOOP], Path(tmp))

    def floor() -> float:
        with tempfile.TemporaryDirectory(prefix="hpsearch-floor-") as tmp:
            return _run([sys.executable, "-c", FORKED_FLOOR], Path(tmp))

    a, b, c = _rotate([ours, theirs, floor], repeats)
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    floor_ratio = statistics.median(z / y for z, y in zip(c, b, strict=True))
    measured = phases[1:]  # the warm-up's first
    start_s, span_s, tail_s = (statistics.median(p[i] for p in measured) for i in range(3))
    return [
        row(
            "README demo (`hpsearch run`, 12 trials, tracked) vs the in-process Optuna loop",
            statistics.median(a),
            statistics.median(b),
            ratio=ratio,
            unit="s (median wall)",
            target="<= 0.8x",
            met=ratio <= 0.8,
        ),
        row(
            "2-worker floor (the loop's process forked into 2 workers of 6 trials, no service) "
            "vs the in-process loop",
            statistics.median(c),
            statistics.median(b),
            ratio=floor_ratio,
            unit="s (median wall)",
        ),
        row("README demo: command start -> first trial starts", start_s, unit="s"),
        row("README demo: first trial starts -> last trial ends (2 workers)", span_s, unit="s"),
        row("README demo: last trial ends -> command exits", tail_s, unit="s"),
    ]


def _wait_for_processes(marker: str, timeout_s: float = 300.0) -> None:
    """Until no process whose command line contains `marker` is left (Linux /proc)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                alive = marker in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if alive:
                break
        if not alive:
            return
        time.sleep(0.2)


def _naive_utc(local: dt.datetime) -> dt.datetime:
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _phases(storage: str, began: dt.datetime, seconds: float) -> tuple[float, float, float]:
    """A `hpsearch run`'s wall time in three parts, from its trials' own stamps: start-up,
    the trials, and what follows the last one (workers' exit, the summary)."""
    import optuna

    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    # Optuna returns local naive datetimes; compare in UTC.
    first = min(t.datetime_start for t in trials if t.datetime_start)
    last = max(t.datetime_complete for t in trials if t.datetime_complete)
    start_s = (_naive_utc(first) - began).total_seconds()
    span_s = (_naive_utc(last) - _naive_utc(first)).total_seconds()
    return start_s, span_s, seconds - start_s - span_s


# --- (b) trials per second ----------------------------------------------------------------------


def _create(storage: str, name: str, n_trials: int, tracking_uri: str | None) -> Any:
    from search.study import StudyRequest, create_study

    request = StudyRequest(
        name=name,
        tiers=1,
        train=dict(TINY),
        seed=3,
        n_trials=n_trials,
        tracking_uri=tracking_uri,
        no_tracking=tracking_uri is None,
    )
    spec, _ = create_study(request.resolve(storage), storage)
    return spec


def _span_rate(storage: str, name: str) -> tuple[float, tuple[float, float]]:
    """Finished trials per second between the first and the last completion (each worker's
    start-up, imports and the dataset's first load inside its first trial, stays out), and
    that span as `time.time()` stamps."""
    import optuna

    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    ends = sorted(t.datetime_complete for t in trials if t.datetime_complete)
    rate = (len(ends) - 1) / max((ends[-1] - ends[0]).total_seconds(), 1e-6)
    return rate, (ends[0].timestamp(), ends[-1].timestamp())  # local naive: local time


def _workers(storage: str, name: str, n: int, env: dict[str, str]) -> None:
    # Each worker's log goes to a file: a worker prints a line per trial, and a pipe read only
    # after the worker before it has exited fills up and blocks it, holding its claimed trials
    # (the others then wait for those forever).
    with tempfile.TemporaryDirectory() as logs:
        paths = [Path(logs) / f"worker-{i}.log" for i in range(n)]
        procs = []
        for path in paths:
            with open(path, "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "search", "worker", name],
                        env={**os.environ, "HPSEARCH_STORAGE": storage, **env},
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        for proc, path in zip(procs, paths, strict=True):
            proc.wait(timeout=900)
            if proc.returncode != 0:
                tail = path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker failed ({proc.returncode}): {tail}")


def rates(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    counts = (1, 2) if quick else (1, 2, 4)
    # Several seconds of work per worker at hundreds of trials/s: a worker's staggered start
    # must be small against the span.
    per_worker = 600 if quick else 3000
    untracked: dict[int, float] = {}
    tracked: dict[int, float] = {}
    server_ms: dict[int, float] = {}  # the MLflow server's CPU per tracked trial
    busy: dict[int, float] = {}  # the machine's busy share of its cores in the tracked span
    with fresh_postgres_database("hpsearch_tput") as storage:
        for n in counts:
            name = f"tiny-{n}"
            _create(storage, name, per_worker * n, None)
            _workers(storage, name, n, {})
            untracked[n], _ = _span_rate(storage, name)
        with (
            fresh_postgres_database("hpsearch_tput_mlflow") as backend,
            tempfile.TemporaryDirectory() as tmp,
            mlflow_server_process(backend, Path(tmp) / "artifacts", workers=2) as server,
        ):
            for n in counts[:2] if quick else counts:
                name = f"tiny-tracked-{n}"
                n_trials = (per_worker // 30) * n
                _create(storage, name, n_trials, server.uri)
                before = server.cpu_s()
                with CpuSampler() as cpu:
                    _workers(
                        storage,
                        name,
                        n,
                        {
                            "MLFLOW_TRACKING_URI": server.uri,
                            "HPSEARCH_SPOOL_DIR": str(Path(tmp) / "spool"),
                        },
                    )
                tracked[n], span = _span_rate(storage, name)
                busy[n] = cpu.busy_fraction(*span)
                server_ms[n] = (server.cpu_s() - before) / n_trials * 1000
    best_n = max(untracked, key=lambda n: untracked[n])
    scale = untracked[2] / untracked[1]
    best_tracked_n = max(tracked, key=lambda n: tracked[n])
    best_tracked = tracked[best_tracked_n]
    rows = [
        row(f"tiny trials/s, PostgreSQL, untracked, {n} worker(s)", untracked[n], unit="trials/s")
        for n in counts
    ]
    rows.append(
        row(
            "tiny trials/s, untracked, best worker count",
            untracked[best_n],
            unit="trials/s",
            target=">= 100/s",
            met=untracked[best_n] >= 100,
        )
    )
    rows.append(
        row(
            "scaling 1 -> 2 workers, untracked",
            scale,
            unit="x",
            target=">= 1.8x",
            met=scale >= 1.8,
            auto_ratio=False,
        )
    )
    rows += [
        row(
            f"tiny trials/s, PostgreSQL, tracked (MLflow server), {n} worker(s)",
            tracked[n],
            unit="trials/s",
        )
        for n in tracked
    ]
    rows.append(
        row(
            "tiny trials/s, tracked, best worker count",
            best_tracked,
            unit="trials/s",
            target=">= 40/s",
            met=best_tracked >= 40,
        )
    )
    # What bounds the tracked rate: the server's own CPU per trial (its 4 requests) at the
    # best worker count, and the rate the machine's cores could give if the server had them
    # all to itself (the workers and PostgreSQL need their share too).
    ceiling = (os.cpu_count() or 1) * 1000 / server_ms[best_tracked_n]
    rows.append(
        row(
            f"MLflow server CPU per tracked trial ({best_tracked_n} worker(s)); the ceiling it "
            f"sets with all {os.cpu_count()} cores its own: {ceiling:.0f} trials/s",
            server_ms[best_tracked_n],
            unit="ms",
            auto_ratio=False,
        )
    )
    # Whether the cores themselves were the bound: near 100% busy, no scheduling or
    # batching on hpsearch's side can raise the rate, only less CPU per trial.
    rows.append(
        row(
            f"machine's cores busy during the tracked span ({best_tracked_n} worker(s): "
            "workers, MLflow server, PostgreSQL)",
            100 * busy[best_tracked_n],
            unit="%",
            auto_ratio=False,
        )
    )
    return rows, {
        "untracked": untracked,
        "tracked": tracked,
        "mlflow_server_cpu_ms": server_ms,
        "cores_busy_tracked": busy,
        "trials_per_worker": per_worker,
    }


# --- (c) service cost per trial -----------------------------------------------------------------


def _service_ms(storage: str, name: str, n_trials: int) -> float:
    from search.worker import run_worker

    _create(storage, name, n_trials, None)
    start = time.perf_counter()
    report = run_worker(storage, name)
    span = time.perf_counter() - start
    inside = sum(t.train_s for t in report.timings)
    return 1000 * (span - inside) / max(1, len(report.trials))


def _optuna_ask_tell_ms(storage: str, n_trials: int) -> float:
    import optuna

    from spaces import load_space

    space = load_space("lesson")
    study = optuna.create_study(storage=storage, study_name=f"plain-{time.time_ns()}")
    start = time.perf_counter()
    for _ in range(n_trials):
        trial = study.ask()
        space.suggest(trial, 1)
        study.tell(trial, 0.5)
    return 1000 * (time.perf_counter() - start) / n_trials


def service_cost(quick: bool) -> list[Row]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = 100 if quick else 400
    out = []
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres_database("hpsearch_cost") as pg:
        sqlite = f"sqlite:///{tmp}/cost.db"
        for label, storage in (("SQLite", sqlite), ("PostgreSQL", pg)):
            # A first study in this process pays one-time costs (the trainer's first tensors,
            # the ORM's set-up: ~2.5 s here, 6 ms a trial over 400), which the start-up rows
            # measure; the per-trial cost is taken on a second one.
            _service_ms(storage, f"warm-{label}", 20)
            ours = _service_ms(storage, f"cost-{label}", n)
            theirs = _optuna_ask_tell_ms(storage, min(n, 100))
            out.append(
                row(
                    f"service cost per trial, {label} (vs plain Optuna ask + tell there)",
                    ours,
                    theirs,
                    unit="ms",
                    target="<= 5 ms",
                    met=ours <= 5.0,
                )
            )
    return out


# --- (d) start-up -------------------------------------------------------------------------------


def startup(repeats: int) -> list[Row]:
    here = Path.cwd()
    a, b = _rotate(
        [lambda: _run([HPSEARCH, "--help"], here), lambda: _run([OPTUNA, "--help"], here)],
        repeats,
    )
    help_s = statistics.median(a)
    rows = [
        row(
            "`hpsearch --help` vs `optuna --help`",
            help_s,
            statistics.median(b),
            unit="s (median wall)",
            target="<= 0.3 s",
            met=help_s <= 0.3,
        )
    ]
    firsts, floors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/start.db"
        for i in range(repeats):
            name = f"start-{i}"
            _create(storage, name, 1, None)
            began = _utc_now()
            _workers(storage, name, 1, {})
            import optuna

            (trial,) = optuna.load_study(study_name=name, storage=storage).get_trials()
            assert trial.datetime_complete is not None
            # Optuna returns local naive datetimes; compare in UTC.
            done = _naive_utc(trial.datetime_complete)
            firsts.append((done - began).total_seconds())
            # The floor: a process that only imports what any worker must (same minutes).
            floors.append(_run([sys.executable, "-c", "import torch, optuna"], Path(tmp)))
    first = statistics.median(firsts)
    rows.append(
        row(
            "worker process start -> its first (1-epoch) trial recorded, vs a process that "
            "only imports torch and Optuna",
            first,
            statistics.median(floors),
            unit="s",
            target="<= 1.5 s",
            met=first <= 1.5,
        )
    )
    return rows


# Why a target is missed, as measured here (profiles of this machine; see the issue notes).
MISS_REASONS = {
    "worker process start": (
        "importing torch and Optuna alone takes longer than the target on this machine (the "
        "'theirs' column: a process doing only that, in the same minutes, with the garbage "
        "collector on; a worker pauses it through start-up)"
    ),
    "scaling 1 -> 2": (
        "one worker and its PostgreSQL backend already keep most of both cores busy (the 1-"
        "worker row): a second worker has no core of its own"
    ),
    "tracked, best worker count": (
        "each trial is its own MLflow run: 4 requests (create, batch, config.json, end) whose "
        "server CPU per trial is the row below (its ceiling assumes both cores for the server "
        "alone); the workers' MLflow client and PostgreSQL need their CPU on the same cores, "
        "which the next row shows all but saturated through the tracked span: only less CPU "
        "per MLflow request, in the server itself, could raise the rate here"
    ),
    "README demo": (
        "the 2-worker floor row: the loop's own process forked into 2 workers, with no "
        "storage, no tracking and no claims, is already at about the target, so the target "
        "leaves the service no time at all on this machine; the rest is the phases below: "
        "before the first trial one leader imports torch, Optuna and MLflow for both workers "
        "while the command creates the study's MLflow experiment, then 12 tracked runs are "
        "written to the local MLflow store beside the training (the service's own per-trial "
        "cost is under 1 ms)"
    ),
}


def miss_notes(rows: Sequence[Row]) -> list[str]:
    return [
        f"missed: {r['what']}: {reason}"
        for r in rows
        if r["met"] is False
        for key, reason in MISS_REASONS.items()
        if key in r["what"]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    quick = is_quick(argv)
    repeats = 1 if quick else 3
    started = time.perf_counter()
    rows: list[Row] = []
    rows += startup(repeats)
    rows += service_cost(quick)
    rate_rows, detail = rates(quick)
    rows += rate_rows
    rows += demo(1 if quick else 5)  # whole studies on a shared 2-core machine: noisy pairs
    notes = [
        "(a) whole processes in fresh folders, alternated; ratio = median of the pairs' ratios",
        "(b) rate = (trials - 1) / (last completion - first completion), trials' own stamps",
        "(c) one in-process worker: (its wall span - time inside train()) / trials, after a "
        "20-trial warm-up study on the same storage (one-time costs are start-up's)",
        f"took {time.perf_counter() - started:.0f} s",
        *miss_notes(rows),
    ]
    path = write_result(
        "throughput", rows, notes=notes, settings={"quick": quick, "tiny": TINY}, extra=detail
    )
    for r in rows:
        print(
            f"{r['what']}: {r['ours']} {r['unit']} (theirs {r['theirs']}, target {r['target']},"
            f" met {r['met']})"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
