"""The MLflow UI of the compose deployment, in headless Chromium: the study's runs, nested.

The UI is a React app: `chromium --headless --dump-dom` runs it (with a virtual-time budget
for its API calls) and prints the DOM it rendered, so the assertions are on what a person
sees. The runs table folds child runs under their parent until clicked, so the nesting is read
where MLflow states it: the study run's page lists its "Child runs", each a link to a trial
run. Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.deploy.compose_model import REPO
from tests.deploy.conftest import TRIALS, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("HPSEARCH_REQUIRE_BROWSER") == "1":
        pytest.fail("headless Chromium is required (apt-get install -y chromium)")
    pytest.skip("no chromium")


def chromium(tmp_path: Path, url: str, *mode: str) -> str:
    argv = [
        chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=15000", "--hide-scrollbars", "--window-size=1400,900",
        *mode, url,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def visible_text(dom: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def links(dom: str) -> dict[str, str]:
    """href -> link text, for every link the page shows."""
    return {
        html.unescape(href): visible_text(inner).strip()
        for href, inner in re.findall(r'<a\b[^>]*href="([^"]+)"[^>]*>(.*?)</a>', dom, flags=re.S)
    }


def test_ui_shows_the_study_run_with_its_trial_runs(deployment: Deployment, tmp_path: Path) -> None:
    base = deployment.tracking_uri
    ARTIFACTS.mkdir(exist_ok=True)

    # 1. The experiments list shows the study's experiment; its link is how we go on.
    listing = chromium(tmp_path, f"{base}/#/experiments", "--dump-dom")
    experiment_links = [h for h, text in links(listing).items() if text == deployment.study_name]
    assert len(experiment_links) == 1, visible_text(listing)[:2000]
    experiment_href = experiment_links[0]
    assert re.fullmatch(r"#/experiments/\d+", experiment_href)

    # 2. Its runs table shows the study's parent run (trial runs folded under it), and counts
    # all the runs.
    runs_page = chromium(tmp_path, f"{base}/{experiment_href}/runs", "--dump-dom")
    text = visible_text(runs_page)
    assert f"{TRIALS + 1} matching runs" in text, text[:2000]
    chromium(
        tmp_path, f"{base}/{experiment_href}/runs",
        f"--screenshot={ARTIFACTS / 'mlflow-ui-study-runs.png'}",
    )  # fmt: skip
    parent_links = [h for h in links(runs_page) if h.startswith(f"{experiment_href}/runs/")]
    assert len(parent_links) == 1, parent_links

    # 3. The study run's page lists every trial run as its child, each a link to that run.
    parent_page = chromium(tmp_path, f"{base}/{parent_links[0]}", "--dump-dom")
    match = re.search(
        r'data-testid="key-value-Child runs"(.*?)data-testid="key-value-', parent_page, re.S
    )
    assert match, "the study run's page shows no 'Child runs'"
    shown_children = {
        href.rsplit("/", 1)[1]: name
        for href, name in links(match.group(1)).items()
        if href.startswith(f"{experiment_href}/runs/")
    }
    chromium(
        tmp_path, f"{base}/{parent_links[0]}",
        f"--screenshot={ARTIFACTS / 'mlflow-ui-study-run-children.png'}",
    )  # fmt: skip

    # What the page shows is what MLflow holds: the study's parent run and its trial runs.
    client = MlflowClient(base)
    experiment_id = experiment_href.rsplit("/", 1)[1]
    runs = client.search_runs([experiment_id], max_results=1000)
    parent_id = parent_links[0].rsplit("/", 1)[1]
    assert client.get_run(parent_id).info.run_name == deployment.study_name
    children = {
        r.info.run_id: r.info.run_name
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent_id
    }
    assert len(children) == TRIALS
    assert shown_children == children
