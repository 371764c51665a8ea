"""The README's examples work as written: its space file validates, its notebook code runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(section: str, language: str) -> str:
    """The first ```language block under the `## section` heading of the README."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    found = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert found, f"no ```{language} block under ## {section}"
    return found.group(1)


def test_the_space_format_example_validates_and_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "small.toml"
    path.write_text(_block("Search spaces", "toml"))
    assert main(["space", "validate", str(path)]) == 0
    assert "ok: 4 parameters, tiers 1..2" in capsys.readouterr().out
    assert main(["space", "sample", str(path), "-n", "20", "--tiers", "2", "--json"]) == 0
    import json

    configs = [t["config"] for t in json.loads(capsys.readouterr().out)]
    assert {c["optimizer"] for c in configs} == {"momentum", "adam"}
    assert all(c["beta"] == 0.9 for c in configs if c["optimizer"] == "adam")


def test_space_show_toml_prints_a_file_that_loads_as_the_same_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spaces import load_space

    assert main(["space", "show", "lesson", "--toml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# lesson: ") and "spaces/builtin/lesson.toml" in out.splitlines()[0]
    copy = tmp_path / "my_space.toml"
    copy.write_text(out)
    assert load_space(str(copy)) == load_space("lesson")


def test_the_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HPSEARCH_TORCH_THREADS", "1")
    code = _block("From a notebook", "python")
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)  # our own README
    trials, best = namespace["trials"], namespace["best"]
    import pandas as pd

    assert isinstance(trials, pd.DataFrame) and len(trials) == 6
    assert {"number", "value", "params.alpha"} <= set(trials.columns)
    assert isinstance(best, dict) and best["dataset"] == "wine" and best["epochs"] == 10
    assert best["alpha"] == trials.loc[trials["value"].idxmax(), "config.alpha"]
