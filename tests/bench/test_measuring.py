"""The benchmarks' own measuring tools: the CPU sampler and the A B C rotation."""

from __future__ import annotations

import os
import time

import pytest

from bench.common import CpuSampler
from bench.throughput_bench import _rotate


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_cpu_sampler_sees_one_busy_core_and_an_idle_stretch() -> None:
    cores = os.cpu_count() or 1
    with CpuSampler(interval_s=0.05) as cpu:
        t0 = time.time()
        _spin(1.0)
        t1 = time.time()
        time.sleep(1.0)
        t2 = time.time()
    busy, idle = cpu.busy_fraction(t0, t1), cpu.busy_fraction(t1, t2)
    # One spinning thread is one core's worth (other processes may add some, never remove it).
    assert busy >= 0.8 / cores, (busy, cores)
    assert idle < busy, (idle, busy)
    with pytest.raises(ValueError, match="fewer than 2 CPU samples"):
        cpu.busy_fraction(t2 + 10, t2 + 20)


def test_rotate_warms_each_command_up_then_interleaves_them() -> None:
    calls: list[str] = []

    def command(name: str, seconds: float) -> float:
        def run() -> float:
            calls.append(name)
            return seconds

        return run

    times = _rotate([command("a", 1.0), command("b", 2.0), command("c", 3.0)], repeats=2)
    assert calls == ["a", "b", "c"] * 3  # one warm-up round, then two measured
    assert times == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
