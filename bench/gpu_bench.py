"""GPU: trials per minute with 1, 2 and 4 worker processes sharing one GPU, and its utilization.

Each worker process loads the data onto the GPU once (outside the timing), waits at a common
start, then trains trials (a fresh configuration each: alpha varies) until the phase's time is
up; a trial started before the deadline is finished and counted. Trials per minute = trials
finished / wall time from the start until the last worker's last trial ends. Meanwhile
`nvidia-smi --query-gpu=utilization.gpu` is sampled twice a second.

Without CUDA the result is `{"status": "not run: no GPU"}`. `--allow-cpu` runs the same
machinery on the CPU and prints the rows without writing a result (a check of the benchmark
itself; CPU figures mean nothing for GPUs).

    .venv/bin/python -m bench.gpu_bench [--quick] [--allow-cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing import get_context
from typing import Any

from bench.common import Row, row, write_result

WORKER_COUNTS = (1, 2, 4)
DATASET = "synthetic:200000:64:10"  # 200k rows x 64 features, 10 classes: large for an MLP
TRIAL = {"epochs": 2, "batch_size": 512, "hidden_units": 512, "hidden_layers": 3}
# The --allow-cpu check: small, so that it finishes in seconds.
CPU_CHECK_DATASET = "synthetic:2000:16:3"
CPU_CHECK_TRIAL = {"epochs": 1, "batch_size": 64, "hidden_units": 32, "hidden_layers": 1}


def _worker(
    device: str, dataset: str, trial: dict[str, Any], index: int, barrier: Any, duration_s: float,
    results: Any,
) -> None:  # fmt: skip
    import torch

    from trainers import DataCache, TrainConfig, prepare_data, train

    if device == "cpu":
        torch.set_num_threads(1)
    cache = DataCache()
    base = TrainConfig(dataset=dataset, device=device, optimizer="adam", **trial)
    prepare_data(base, cache=cache)  # on the device before the clock starts
    barrier.wait()
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < duration_s:
        alpha = 10 ** (-4 + 3 * ((index * 7919 + done * 104729) % 1000) / 1000)  # 1e-4 .. 1e-1
        config = base.replace(alpha=alpha, seed=done)
        train(config, prepare_data(config, cache=cache))
        done += 1
    results.put((index, done, time.perf_counter()))


class UtilizationSampler:
    """Samples `nvidia-smi` GPU utilization (percent) in a thread until stopped."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                     "-i", "0"],
                    capture_output=True, text=True, timeout=5, check=True,
                ).stdout  # fmt: skip
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass  # no nvidia-smi (the CPU check run): no samples
            self._stop.wait(self.period_s)

    def __enter__(self) -> UtilizationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def run_phase(device: str, workers: int, duration_s: float) -> dict[str, Any]:
    dataset, trial = (DATASET, TRIAL) if device != "cpu" else (CPU_CHECK_DATASET, CPU_CHECK_TRIAL)
    ctx = get_context("spawn")  # CUDA cannot be used in forked children
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(device, dataset, trial, i, barrier, duration_s, results))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=600)  # every worker has its data on the device
    start = time.perf_counter()
    with UtilizationSampler() as sampler:
        finished = [results.get(timeout=duration_s + 900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} GPU bench workers failed: {failed}")
    trials = sum(done for _, done, _ in finished)
    # perf_counter is system-wide on Linux (CLOCK_MONOTONIC), so the workers' end times compare.
    wall = max(end for _, _, end in finished) - start
    util = sampler.samples
    return {
        "workers": workers,
        "trials": trials,
        "wall_s": wall,
        "trials_per_min": trials / wall * 60,
        "util_median": statistics.median(util) if util else None,
        "util_mean": statistics.fmean(util) if util else None,
        "util_samples": len(util),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 s per phase instead of 60 s")
    parser.add_argument("--allow-cpu", action="store_true", help="check the machinery on CPU")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("HPSEARCH_BENCH_QUICK") == "1"

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        path = write_result("gpu", [], extra={"status": "not run: no GPU"})
        print(f"no GPU (torch.cuda.is_available() is False); wrote {path}")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    duration = 20.0 if quick else 60.0
    if device == "cpu":
        duration = 5.0
    phases = []
    for workers in WORKER_COUNTS:
        print(f"{workers} worker(s) on {device} for {duration:g} s", flush=True)
        phases.append(run_phase(device, workers, duration))
        print(f"  {phases[-1]}", flush=True)

    one = phases[0]["trials_per_min"]
    rows: list[Row] = []
    for phase in phases:
        w = phase["workers"]
        rows.append(
            row(
                f"{device}: trials per minute, {w} worker(s) on one device (ratio: vs 1 worker)",
                phase["trials_per_min"],
                None,
                unit="trials/min",
                ratio=phase["trials_per_min"] / one,
                target="more than 1 worker's" if w > 1 else None,
                met=phase["trials_per_min"] > one if w > 1 else None,
            )
        )
        rows.append(
            row(
                f"{device}: GPU utilization (median of {phase['util_samples']} samples), "
                f"{w} worker(s)",
                phase["util_median"],
                None,
                unit="%",
            )
        )
    notes = [
        f"dataset {DATASET}; each trial: MLP {TRIAL['hidden_layers']}x{TRIAL['hidden_units']}, "
        f"batch {TRIAL['batch_size']}, {TRIAL['epochs']} epochs, Adam, alpha varies",
        f"{duration:g} s per phase; a trial started before the deadline is finished and counted",
    ]
    settings = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "phase_s": duration,
        "worker_counts": list(WORKER_COUNTS),
    }
    if device == "cpu":  # a check of the benchmark itself: never a result in the report
        for r in rows:
            print(f"  {r['what']}: {r['ours']} {r['unit']} (ratio {r['ratio']})")
        return 0
    path = write_result("gpu", rows, notes=notes, settings=settings, extra={"phases": phases})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
