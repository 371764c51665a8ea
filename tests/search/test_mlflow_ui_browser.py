"""The link `hpsearch ui` prints, opened in headless Chromium: the study's runs table in the
Model-training view, with the study run and its trials as rows (issue 13: MLflow 3 opened the
experiment on its GenAI overview, the study one folded row with no metric).

The screenshot lands in test-artifacts/mlflow-ui-runs-table.png (git-ignored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search.cli import main
from tests.deploy.test_mlflow_ui_browser import ARTIFACTS, chromium, visible_text
from tests.search.cli.test_study_cmd import here  # noqa: F401 (a fixture)
from tests.search.test_mlflow_ui import LINK, TRACKED, ui_process  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def tracked_study(here: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    argv = ["run", "--name", "ui", "--trials", "3", "--workers", "1", "--no-progress", *TRACKED]
    assert main(argv) == 0
    capsys.readouterr()


def test_the_printed_link_opens_the_runs_table_with_the_trials(
    tracked_study: None,
    ui_process: tuple,  # noqa: F811
    tmp_path: Path,
) -> None:
    proc, port = ui_process
    printed = ""
    while not LINK.search(printed):  # `hpsearch ui` prints the studies' links at its start
        line = proc.stdout.readline()
        assert line, printed
        printed += line
    link = LINK.search(printed).group(0)
    assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/")

    dom = chromium(tmp_path, link, "--dump-dom")
    text = visible_text(dom)
    assert "4 matching runs" in text, text[:3000]  # the study run and its 3 trials
    for number in range(3):  # each trial is a row, named to read at a glance
        assert re.search(rf"trial-{number}: momentum alpha=\S+ 2x128 batch=32", text), text[:3000]
    assert "val_accuracy" in text
    assert "Traces" not in text or "Model training" in text  # not the GenAI overview
    ARTIFACTS.mkdir(exist_ok=True)
    chromium(tmp_path, link, f"--screenshot={ARTIFACTS / 'mlflow-ui-runs-table.png'}")
    assert (ARTIFACTS / "mlflow-ui-runs-table.png").stat().st_size > 10_000
