"""`python -m bench`: run every benchmark module in its own process, then write BENCHMARKS.md.

    python -m bench                    # every bench/*_bench.py module, full size
    python -m bench --quick            # smaller variants (each module reads HPSEARCH_BENCH_QUICK)
    python -m bench --only storage     # one module (repeatable); `storage` or `storage_bench`
    python -m bench --report-only      # re-render BENCHMARKS.md from the results already there

A subprocess per module keeps one benchmark's threads, imports and servers out of the next
one's timings, and lets a crash or a timeout in one leave the others' results standing. The
exit status, time and error tail of each module go to bench/results/_runs.json, which the
report uses to say why a result is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import QUICK_ENV, REPO_ROOT, RESULTS_DIR
from bench.report import RUN_LOG_NAME, write_report

BENCH_DIR = REPO_ROOT / "bench"
# Benchmark modules that do not follow the *_bench.py naming, and the result they write.
EXTRA_MODULES = {"tracking_requests": "tracking_requests"}
DEFAULT_TIMEOUT_S = 900


def discover(bench_dir: Path = BENCH_DIR) -> dict[str, str]:
    """Module name -> result name: `storage_bench` -> `storage`, plus EXTRA_MODULES present."""
    modules = {p.stem: p.stem.removesuffix("_bench") for p in sorted(bench_dir.glob("*_bench.py"))}
    for module, result in EXTRA_MODULES.items():
        if (bench_dir / f"{module}.py").exists():
            modules[module] = result
    return modules


def select(modules: dict[str, str], only: Sequence[str]) -> dict[str, str]:
    if not only:
        return modules
    chosen: dict[str, str] = {}
    for name in only:
        matches = {m: r for m, r in modules.items() if name in (m, r)}
        if not matches:
            known = sorted(modules.values())
            raise SystemExit(f"`--only` must name a benchmark in {known}, but got {name!r}")
        chosen.update(matches)
    return chosen


def _accepts_quick(module: str) -> bool:
    # Modules written by others may not parse `--quick`; pass it only where the source has it.
    source = (BENCH_DIR / f"{module}.py").read_text()
    return "--quick" in source


def run_module(module: str, quick: bool, timeout_s: float) -> dict[str, object]:
    cmd = [sys.executable, "-m", f"bench.{module}"]
    if quick and _accepts_quick(module):
        cmd.append("--quick")
    env = {**os.environ, QUICK_ENV: "1" if quick else "0"}
    print(f"[bench] {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    timed_out = False
    try:
        # stdout streams through (progress); stderr is kept for the reason of a failure.
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True, timeout=timeout_s
        )
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        timed_out, rc = True, -9
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = round(time.perf_counter() - start, 1)
    if err:
        sys.stderr.write(err[-4000:])
    status = "timed out" if timed_out else ("ok" if rc == 0 else f"failed (exit {rc})")
    print(f"[bench] {module}: {status} in {seconds} s", flush=True)
    return {
        "module": f"bench/{module}.py",
        "rc": rc,
        "timed_out": timed_out,
        "seconds": seconds,
        "quick": quick,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "error": err[-2000:] if rc != 0 else "",
    }


def update_run_log(entries: dict[str, dict[str, object]], results_dir: Path = RESULTS_DIR) -> None:
    """Merge this invocation's entries into the log: `--only` keeps the others' last status."""
    path = results_dir / RUN_LOG_NAME
    try:
        log = json.loads(path.read_text())
    except (OSError, ValueError):
        log = {}
    log.update(entries)
    results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--quick", action="store_true", help="smaller variants of each module")
    parser.add_argument("--report-only", action="store_true", help="only re-render the report")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds allowed per module"
    )
    args = parser.parse_args(argv)
    failed = []
    if not args.report_only:
        chosen = select(discover(), args.only)
        entries = {}
        for module, result in chosen.items():
            entries[result] = run_module(module, args.quick, args.timeout)
            if entries[result]["rc"] != 0:
                failed.append(module)
            update_run_log({result: entries[result]})  # after each: a crash keeps the rest
    out = write_report()
    print(f"[bench] wrote {out.relative_to(REPO_ROOT)}", flush=True)
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
