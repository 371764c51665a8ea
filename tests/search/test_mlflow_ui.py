"""The study in the MLflow UI (issue 13): the link `run`/`status`/`ui` print, the experiment's
kind, what the study run carries, trial run names, Optuna's metric name, and `hpsearch ui`
stopped by SIGTERM. A real local MLflow store and real `hpsearch ui` processes; the browser
test (Chromium on the printed link) is tests/search/test_mlflow_ui_browser.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from search.study import load_spec
from tests.conftest import free_port
from tests.search.cli.test_study_cmd import here  # noqa: F401 (a fixture)

TRACKED = ["--space", "tiny.toml", "--tiers", "1", "--epochs", "2"]
LINK = re.compile(
    r"http://127\.0\.0\.1:\d+/#/experiments/(\d+)/runs\?workflowType=machine_learning\S*"
)


@pytest.fixture
def finished_study(here: Path, capsys: pytest.CaptureFixture[str]) -> str:  # noqa: F811
    """A tracked 3-trial study, run by `hpsearch run`; returns what `run` printed."""
    argv = ["run", "--name", "ui", "--trials", "3", "--workers", "1", "--no-progress", *TRACKED]
    assert main(argv) == 0
    return capsys.readouterr().out


def test_run_and_status_print_the_runs_table_link(
    here: Path,  # noqa: F811
    finished_study: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = load_spec(f"sqlite:///{here / 'hpsearch.db'}", "ui")
    found = LINK.search(finished_study)
    assert found and found.group(1) == spec.experiment_id, finished_study
    assert "orderByKey=metrics.%60val_accuracy%60&orderByAsc=false" in found.group(0)
    assert main(["status"]) == 0
    assert found.group(0) in capsys.readouterr().out


def test_the_experiment_and_the_study_run_read_at_a_glance(
    here: Path,  # noqa: F811
    finished_study: str,
) -> None:
    url = f"sqlite:///{here / 'hpsearch.db'}"
    spec = load_spec(url, "ui")
    assert spec.tracking_uri is not None and spec.parent_run_id is not None
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment(spec.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    study = optuna.load_study(study_name="ui", storage=url)
    assert study.metric_names == ["val_accuracy"]  # not "Objective 0" in optuna-dashboard
    parent = client.get_run(spec.parent_run_id)
    metrics, tags = parent.data.metrics, parent.data.tags
    assert metrics["val_accuracy"] == metrics["best_value"] == pytest.approx(study.best_value)
    assert (metrics["trials_complete"], metrics["trials_failed"]) == (3, 0)
    assert metrics["trials_pruned"] == metrics["trials_diverged"] == 0
    assert float(tags["best.alpha"]) == pytest.approx(study.best_trial.params["alpha"])
    assert tags["best_trial"] == str(study.best_trial.number)

    children = client.search_runs(
        [spec.experiment_id], filter_string="tags.`hpsearch.role` = 'trial'"
    )
    names = sorted(r.info.run_name for r in children)
    assert len(names) == 3
    for number, name in enumerate(names):
        assert re.fullmatch(rf"trial-{number}: momentum alpha=\S+ 2x128 batch=32", name), name


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc), while they are alive."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def ui_process(here: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:  # noqa: F811
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "ui", "--port", str(port)],
        cwd=here,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            time.sleep(0.5)
    else:
        proc.kill()
        raise AssertionError("hpsearch ui did not serve in 120 s")
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_ui_stopped_with_sigterm_leaves_no_process_and_frees_its_port(
    ui_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = ui_process
    below = _descendants(proc.pid)
    assert below, "hpsearch ui started no server process"
    proc.send_signal(signal.SIGTERM)  # what `kill PID` sends
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in below):
        time.sleep(0.2)
    assert not [p for p in below if _alive(p)], "server processes outlived hpsearch ui"
    with socket.socket() as s:  # the port is free again: a new server can listen on it
        # SO_REUSEADDR as every server sets it: our own health check's connection may sit in
        # TIME_WAIT, which blocks a plain bind but not a server; a listener still there would.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
