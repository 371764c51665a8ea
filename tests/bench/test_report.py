"""BENCHMARKS.md is rendered from bench/results/*.json: our schema, others' schemas, and gaps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as harness
from bench.common import REPO_ROOT, median_of, quartiles, row, write_result
from bench.report import COLUMNS, RUN_LOG_NAME, load_results, render


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def _row_for(text: str, benchmark: str) -> list[list[str]]:
    """The cells of each table line of `benchmark` (escaped pipes kept inside their cell)."""
    out = []
    for line in _table_lines(text):
        cells = [c.strip() for c in line.strip("|").replace("\\|", "\0").split("|")]
        if cells[0].startswith(f"[{benchmark}]"):
            out.append([c.replace("\0", "|") for c in cells])
    return out


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    return d


def test_our_schema_renders_one_table_line_per_row(results_dir: Path) -> None:
    rows = [
        row("ask+tell at trial 100", 8.0, 16.0, unit="ms", target="<= 15 ms", met=True),
        row("growth", 1.7, None, unit="x", target="<= 1.5x", met=False),
    ]
    write_result(
        "storage", rows, notes=["a note"], settings={"workers": 1}, results_dir=results_dir
    )

    text = render(load_results(results_dir, expected=("storage",)))

    header = _table_lines(text)[0]
    assert [c.strip() for c in header.strip("|").split("|")] == list(COLUMNS)
    lines = _row_for(text, "storage")
    assert lines[0][1:] == ["ask+tell at trial 100", "8 ms", "16 ms", "0.5x", "<= 15 ms", "yes"]
    assert lines[1][1:] == ["growth", "1.7 x", "—", "—", "<= 1.5x", "**no**"]
    # The details name what produced the rows: command, date, machine, settings, notes.
    details = text.split("### storage", 1)[1]
    assert "- command: `" in details and "-m " in details
    assert "cores:" in details and "torch_threads:" in details
    assert "workers=1" in details and "- a note" in details


def test_missing_results_are_marked_not_run_with_the_reason(results_dir: Path) -> None:
    (results_dir / RUN_LOG_NAME).write_text(
        json.dumps(
            {
                "grid": {"module": "bench/grid_bench.py", "rc": 1, "error": "x\nValueError: boom"},
                "peer_tracking": {"module": "bench/peer_tracking_bench.py", "rc": 0},
                "study": {"module": "bench/study_bench.py", "rc": -9, "timed_out": True,
                          "seconds": 900},
            }
        )
    )  # fmt: skip
    write_result("gpu", [], extra={"status": "not run: no GPU"}, results_dir=results_dir)

    text = render(
        load_results(results_dir, expected=("storage", "grid", "peer_tracking", "study", "gpu"))
    )

    reasons = {name: _row_for(text, name)[0][1] for name in ("storage", "grid", "gpu")}
    assert reasons["storage"].startswith("not run: no bench/results/storage.json")
    assert reasons["grid"] == "not run: bench/grid_bench.py failed (exit 1): ValueError: boom"
    assert reasons["gpu"] == "not run: no GPU"
    assert (
        "ran but wrote no bench/results/peer_tracking.json" in _row_for(text, "peer_tracking")[0][1]
    )
    assert "timed out after 900 s" in _row_for(text, "study")[0][1]
    assert all(cell == "—" for cell in _row_for(text, "gpu")[0][2:])


def test_a_stale_result_after_a_failed_run_keeps_its_figures_and_says_so(
    results_dir: Path,
) -> None:
    write_result("grid", [row("best", 0.9, 0.8)], results_dir=results_dir)
    (results_dir / RUN_LOG_NAME).write_text(
        json.dumps({"grid": {"module": "bench/grid_bench.py", "rc": 2, "error": "Killed"}})
    )
    text = render(load_results(results_dir, expected=("grid",)))
    assert _row_for(text, "grid")[0][2] == "0.9"
    assert "the latest run failed (bench/grid_bench.py failed (exit 2): Killed)" in text


def test_an_unknown_schema_renders_generically_with_targets_attached(results_dir: Path) -> None:
    # The shape trainers' benchmark writes: no rows, nested figures, targets as "NAME OP VALUE".
    trainer = {
        "benchmark": "trainer epoch, digits",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu_count": 2},
        "torch_threads": 1,
        "timings_ms": {"ours_ms": 18.37, "dataloader_ms": 68.2},
        "ratios": {"dataloader_over_ours": 3.71},
        "targets": {"dataloader_over_ours >= 1.25": True, "unknown_name <= 2": False},
        "runs": [{"workers": 1, "tpm": 10}, {"workers": 2, "tpm": 19}],
        "finish_ms": [30.0, 10.0, 20.0, 40.0],
        "note": "first run imports matplotlib",
    }
    (results_dir / "trainer.json").write_text(json.dumps(trainer))

    text = render(load_results(results_dir, expected=("trainer",)))

    lines = {cells[1]: cells for cells in _row_for(text, "trainer")}
    assert lines["timings_ms.ours_ms"][2] == "18.37"
    assert lines["ratios.dataloader_over_ours"][5:] == [">= 1.25", "yes"]
    assert lines["unknown_name"][5:] == ["<= 2", "**no**"]  # kept, not lost
    assert lines["runs[1].tpm"][2] == "19"
    assert lines["finish_ms"][2] == "median 25 (n=4, 10..40)"
    assert "torch_threads" not in lines  # a setting, shown with the run, not as a figure
    details = text.split("### trainer", 1)[1]
    assert "torch_threads=1" in details and "benchmark: trainer epoch, digits" in details
    assert "note: first run imports matplotlib" in details


def test_odd_files_and_cells_never_break_the_table(results_dir: Path) -> None:
    (results_dir / "study.json").write_text("{not json")
    (results_dir / "scalar.json").write_text("42")
    rows = [{"name": "a | b\nc", "value": [1, 2], "extra_key": "shown"}]
    (results_dir / "other.json").write_text(json.dumps({"rows": rows}))

    text = render(load_results(results_dir, expected=("study",)))

    assert _row_for(text, "study")[0][1].startswith("not run: unreadable result file study.json")
    assert _row_for(text, "scalar")[0][1:3] == ["value", "42"]
    assert _row_for(text, "other")[0][1:3] == ["a | b c (extra_key=shown)", "[1, 2]"]
    widths = {len(line.replace("\\|", "").split("|")) for line in _table_lines(text)}
    assert widths == {len(COLUMNS) + 2}  # every line has exactly the table's columns


def test_write_result_refuses_a_name_that_is_not_a_file_stem(results_dir: Path) -> None:
    with pytest.raises(ValueError, match="`name` must be a plain file stem"):
        write_result("../escape", [], results_dir=results_dir)
    with pytest.raises(ValueError, match="`name` must be a plain file stem"):
        write_result(RUN_LOG_NAME.removesuffix(".json"), [], results_dir=results_dir)


def test_timing_helpers() -> None:
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)
    assert median_of(lambda: None, 3) >= 0
    with pytest.raises(ValueError, match="`repeats >= 1` must hold"):
        median_of(lambda: None, 0)
    assert row("r", 3.0, 4.0)["ratio"] == 0.75
    assert row("g", 1.2, 1.1, auto_ratio=False)["ratio"] is None


def test_harness_discovers_modules_and_refuses_an_unknown_name(tmp_path: Path) -> None:
    for name in ("storage_bench.py", "grid_bench.py", "common.py", "tracking_requests.py"):
        (tmp_path / name).write_text("")
    modules = harness.discover(tmp_path)
    assert modules == {
        "grid_bench": "grid",
        "storage_bench": "storage",
        "tracking_requests": "tracking_requests",
    }
    assert harness.select(modules, ["storage"]) == {"storage_bench": "storage"}
    assert harness.select(modules, ["grid_bench"]) == {"grid_bench": "grid"}
    with pytest.raises(SystemExit, match="`--only` must name a benchmark in"):
        harness.select(modules, ["nope"])


def test_report_only_run_writes_benchmarks_md_from_the_repository_results(
    tmp_path: Path,
) -> None:
    # The real entry point, in a subprocess, rendering into a temporary copy of the results.
    code = (
        "import sys; from pathlib import Path; from bench import report;"
        f"print(report.write_report(Path({str(tmp_path)!r}), Path({str(tmp_path / 'B.md')!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "B.md").read_text()
    expected: Any = ("storage", "study", "trainer", "tracking_requests", "peer_tracking", "grid")
    for name in expected:  # an empty results directory: every benchmark marked "not run"
        assert _row_for(text, name)[0][1].startswith("not run:")
