"""`hpsearch lesson`: the list, a run through the CLI, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main
from search.lesson import EXPERIMENTS


def test_lesson_lists_the_seven_experiments_with_their_claims(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lesson"]) == 0
    out = capsys.readouterr().out
    assert EXPERIMENTS == (
        "normalization", "gradients", "initialization", "optimizers", "decay", "priorities",
        "random-vs-grid",
    )  # fmt: skip
    for name in EXPERIMENTS:
        assert f"\n{name} " in f"\n{out}"
    assert out.count("claim: ") == 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lesson", "nope"], "the lesson experiment must be one of ["),
        (["lesson", "gradients", "--trials", "3"], "`--trials` applies to the experiments"),
        (["lesson", "random-vs-grid", "--trials", "5"], "must be a square k*k >= 4"),
        (["lesson", "decay", "--seeds", "0"], "`--seeds` must be an integer >= 1, but got 0"),
        (["lesson", "decay", "--workers", "two"], "`--workers` must be an integer >= 1 or 'auto'"),
        (["lesson", "decay", "--parallel", "0"], "`--parallel` must be an integer >= 1"),
        (["lesson", "normalization", "--dataset", "nope.csv"], "does not exist"),
        (["lesson", "random-vs-grid", "--dataset", "diabetes"], "must be a classification"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    assert main([*argv, "--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hpsearch: error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_a_run_through_the_cli_prints_the_table_and_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    assert main(["lesson", "gradients", "--quick", "--out", "figs"]) == 0
    out = capsys.readouterr().out
    assert "activation growth over 20 layers" in out and "exploding" in out
    assert "claim: In a deep network with w = 1.3 I" in out and "verdict: SUPPORTED" in out
    assert (tmp_path / "figs" / "gradients.png").exists()
    assert (tmp_path / "mlflow.db").exists()  # beside the default storage, as for studies


def test_help_stays_light() -> None:
    """`hpsearch --help` imports neither the experiments nor matplotlib or MLflow (torch is
    `hpsearch train`'s, imported for its flags already)."""
    code = (
        "import sys; from search.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('search.lesson', 'matplotlib', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
