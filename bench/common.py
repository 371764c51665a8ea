"""What every benchmark shares: timing, the machine's description, and the result file.

A result is one JSON file, `bench/results/NAME.json`:

    {"name", "date", "machine", "command", "settings", "rows": [ROW, ...], "notes"}
    ROW = {"what", "ours", "theirs", "ratio", "unit", "target", "met"}

`bench/report.py` renders these into BENCHMARKS.md (and renders other shapes generically).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from search.lesson.verdict import quartiles as quartiles  # one definition, shared with bench

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# `python -m bench --quick` sets this for every module, so a module that does not parse
# `--quick` itself can still pick the small variant.
QUICK_ENV = "HPSEARCH_BENCH_QUICK"
PG_ADMIN_URL = os.environ.get(
    "HPSEARCH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Row(TypedDict):
    what: str
    ours: float | str | None
    theirs: float | str | None
    ratio: float | None
    unit: str
    target: str | None
    met: bool | None


def row(
    what: str,
    ours: float | str | None,
    theirs: float | str | None = None,
    *,
    unit: str = "",
    target: str | None = None,
    met: bool | None = None,
    ratio: float | None = None,
    auto_ratio: bool = True,
) -> Row:
    """One line of a result table; `ratio` defaults to ours/theirs when both are numbers.

    `auto_ratio=False` leaves the ratio empty where ours/theirs means nothing (two growths).
    """
    if ratio is None and auto_ratio and _is_number(ours) and _is_number(theirs) and theirs:
        ratio = float(ours) / float(theirs)
    return Row(
        what=what,
        ours=_round(ours),
        theirs=_round(theirs),
        ratio=_round(ratio),
        unit=unit,
        target=target,
        met=met,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _round(value: Any) -> Any:
    # Four significant digits: more would be noise on a shared 2-core machine.
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


# --- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call (perf_counter), and its return value."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_of(fn: Callable[[], Any], repeats: int) -> float:
    """The median wall time in seconds of `repeats` calls: robust to one noisy neighbour."""
    if repeats < 1:
        raise ValueError(f"`repeats >= 1` must hold, but got {repeats=}")
    return statistics.median(timed(fn)[0] for _ in range(repeats))


# --- the machine and the run ----------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # a broken CUDA install must not stop a CPU benchmark
        return None
    return None


def machine_info() -> dict[str, Any]:
    """What moves the numbers: CPU, usable cores, torch threads, library versions, GPU."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }
    for module in ("torch", "optuna", "mlflow", "sqlalchemy"):
        with contextlib.suppress(ImportError):
            info[module] = __import__(module).__version__
    with contextlib.suppress(ImportError):
        import torch

        info["torch_threads"] = torch.get_num_threads()
    info["gpu"] = gpu_name()
    return info


def command_line() -> str:
    """The command that reproduces this result (run from the repository root)."""
    module = sys.modules["__main__"].__spec__
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    if module is not None and module.name:
        return f".venv/bin/python -m {module.name} {args}".strip()
    return f".venv/bin/python {' '.join(shlex.quote(a) for a in sys.argv)}"


def is_quick(argv: Sequence[str] | None = None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--quick" in args or os.environ.get(QUICK_ENV) == "1"


def write_result(
    name: str,
    rows: Sequence[Row | dict[str, Any]],
    *,
    notes: str | Sequence[str] = "",
    settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    results_dir: Path = RESULTS_DIR,
) -> Path:
    """Write `results_dir/NAME.json` in the shared schema and return its path."""
    if not name or "/" in name or name.startswith(("_", ".")):
        raise ValueError(
            f"`name` must be a plain file stem (no '/', no leading '_' or '.'), but got {name=}"
        )
    payload: dict[str, Any] = {
        "name": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": command_line(),
        "settings": settings or {},
        "rows": list(rows),
        "notes": notes if isinstance(notes, str) else list(notes),
    }
    if extra:
        payload.update(extra)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)  # atomic: the report never reads half a file
    return path


# --- real services --------------------------------------------------------------------------


def _pg_execute(sql: str, admin_url: str = PG_ADMIN_URL) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(_driver_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _driver_url(url: str) -> str:
    # psycopg 3 is the installed driver; a bare postgresql:// would ask SQLAlchemy for psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


@contextlib.contextmanager
def fresh_postgres_database(
    prefix: str = "hpsearch_bench", admin_url: str = PG_ADMIN_URL
) -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration of the block; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _pg_execute(f'CREATE DATABASE "{name}"', admin_url)
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield _driver_url(f"{base}/{name}")
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin_url)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command's name
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # fields: state, ppid, pgrp, ..., utime (11), stime (12)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all the machine's CPUs since boot (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]  # user .. steal; guest is in user
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


class CpuSampler:
    """The machine's busy share of its CPUs, sampled in a thread (`with CpuSampler() as s:`),
    readable afterwards over any interval inside the sampling: whether a rate was bound by
    the cores themselves."""

    def __init__(self, interval_s: float = 0.2) -> None:
        import threading

        self.interval_s = interval_s
        self._samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self._samples.append((time.time(), *_cpu_jiffies()))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy_fraction(self, start: float, end: float) -> float:
        """Busy share of all cores between two `time.time()` stamps (the samples inside)."""
        inside = [s for s in self._samples if start <= s[0] <= end]
        if len(inside) < 2:
            raise ValueError(f"fewer than 2 CPU samples between {start} and {end}")
        (_, busy0, total0), (_, busy1, total1) = inside[0], inside[-1]
        return (busy1 - busy0) / max(total1 - total0, 1)


@dataclass(frozen=True)
class MlflowServerProcess:
    uri: str
    pgid: int  # the server and its worker processes (a session of their own)

    def cpu_s(self) -> float:
        return process_group_cpu_s(self.pgid)


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str, artifacts: Path, workers: int, timeout: float = 120.0
) -> Iterator[str]:
    """A real `mlflow server` on loopback with `workers` server workers; yields its URI."""
    with mlflow_server_process(backend_uri, artifacts, workers, timeout) as server:
        yield server.uri


@contextlib.contextmanager
def mlflow_server_process(
    backend_uri: str, artifacts: Path, workers: int, timeout: float = 120.0
) -> Iterator[MlflowServerProcess]:
    """A real `mlflow server` on loopback with `workers` server workers, as a process group
    whose CPU time can be read."""
    import signal
    import urllib.request

    exe = Path(sys.executable).with_name("mlflow")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = artifacts.parent / f"mlflow-server-{port}.log"
    cmd = [
        str(exe), "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        # MLflow 3's GenAI job runner (5+ helper processes) serves nothing hpsearch uses.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server did not answer /health in {timeout} s: "
                        f"{log_path.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.3)
        yield MlflowServerProcess(uri, proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
