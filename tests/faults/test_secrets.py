"""Scenario 11: a canary password in the storage and tracking URLs is never written anywhere.

PostgreSQL's trust authentication ignores the password, so
`postgresql://postgres:CANARY@127.0.0.1:5432/db` connects; the `mlflow server` without auth
ignores the basic-auth header of `http://hp:CANARY@127.0.0.1:PORT` (checked below: the study's
runs do land there). Then every place the password could leak is read back: the CLI's output,
every worker log, the worker processes' command lines, the whole Optuna database (`pg_dump`),
the MLflow backend store file, every run's params and tags, every artifact, the spool.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from tests.conftest import MlflowServer
from tests.faults.support import REPO, mlflow_client

CANARY = f"CANARY-pw-{uuid.uuid4().hex[:10]}"


def _with_password(url: str, password: str) -> str:
    return re.sub(r"^(\w+://[^:@/]+)@", rf"\1:{password}@", url)


def _cmdlines_of_children(pid: int) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == pid:  # the parent pid
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.mark.slow
def test_a_canary_password_never_leaves_the_urls(
    tmp_path: Path,
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
) -> None:
    plain_storage, server = postgres_db(), mlflow_server_factory()
    storage = _with_password(plain_storage, CANARY)
    tracking = server.uri.replace("http://", f"http://hp:{CANARY}@")
    assert CANARY in storage and CANARY in tracking  # the canary is really in play
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HPSEARCH_"))}
    env.update(
        MLFLOW_TRACKING_URI=tracking,
        HPSEARCH_STORAGE=storage,
        HPSEARCH_SPOOL_DIR=str(spool),
        HPSEARCH_TORCH_THREADS="1",
        PYTHONPATH=str(REPO),
    )
    # --keep-logs: a successful run removes its worker logs, which this test reads.
    argv = [sys.executable, "-m", "search", "run", "--name", "canary", "--dataset", "wine",
            "--epochs", "2", "--trials", "3", "--workers", "2", "--no-progress",
            "--keep-logs"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    cmdlines: list[str] = []
    while proc.poll() is None:  # the workers' argv is readable by every user of the host (ps)
        cmdlines += _cmdlines_of_children(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, output
    assert any("worker" in c for c in cmdlines), "no worker process was seen"

    places: dict[str, str] = {"cli output": output}
    places["worker argv"] = "\n".join(cmdlines)
    log_dir = re.search(r"logs in (\S+)", output)
    assert log_dir, output
    logs = sorted(Path(log_dir.group(1)).glob("*.log"))
    assert logs
    for log in logs:
        places[f"log {log.name}"] = log.read_text(errors="replace")

    # Optuna: the study's and every trial's user and system attributes, then the raw database.
    study = optuna.load_study(study_name="canary", storage=plain_storage)
    trials = study.get_trials()
    assert len([t for t in trials if t.state.is_finished()]) >= 3
    rdb = study._storage  # system attrs are only public on the storage in Optuna 5
    study_id = rdb.get_study_id_from_name("canary")
    places["study attrs"] = json.dumps(
        [rdb.get_study_user_attrs(study_id), rdb.get_study_system_attrs(study_id)], default=str
    )
    places["trial attrs"] = json.dumps(
        [[t.user_attrs, t.system_attrs, t.params] for t in trials], default=str
    )
    database = plain_storage.rsplit("/", 1)[1]
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "hpsearch_spec" in dump.stdout  # the dump really holds the study
    places["pg_dump"] = dump.stdout

    # MLflow: the runs really went through the URL with the canary; then everything in them.
    client = mlflow_client(server.uri)
    experiment = client.get_experiment_by_name("canary")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len([r for r in runs if r.data.tags.get("hpsearch.role") == "trial"]) >= 3
    for run in runs:
        places[f"run {run.info.run_name}"] = json.dumps(
            [run.data.params, run.data.tags, run.info.artifact_uri]
        )
        local = client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id))
        for path in Path(local).rglob("*"):
            if path.is_file():
                places[f"artifact {path.name} of {run.info.run_name}"] = path.read_bytes().decode(
                    errors="replace"
                )
    places["mlflow store"] = (
        Path(server.backend_uri.removeprefix("sqlite:///")).read_bytes().decode(errors="replace")
    )
    for path in spool.rglob("*") if spool.exists() else []:
        if path.is_file():
            places[f"spool {path.name}"] = path.read_text(errors="replace")

    leaks = [where for where, text in places.items() if CANARY in text]
    assert leaks == [], f"the password leaked into: {leaks}"
