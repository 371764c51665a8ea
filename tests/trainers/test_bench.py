"""The trainer benchmark runs end to end and writes its JSON (timings are not asserted here:
they depend on the machine and its load; `python -m bench.trainer_bench` reports them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import trainer_bench


@pytest.mark.slow
def test_benchmark_writes_its_result_file(tmp_path: Path) -> None:
    out = tmp_path / "trainer.json"
    trainer_bench.main(["--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["torch_threads"] == 1
    assert set(result["timings_ms"]) == {
        "ours_ms", "dataloader_ms", "randperm_ms", "presliced_ms", "flop_floor_ms",
    }  # fmt: skip
    assert all(v > 0 for v in result["timings_ms"].values())
    assert result["machine"]["cpu_count"] >= 1
    assert {"dataloader_over_ours", "ours_over_presliced"} <= set(result["ratios"])
