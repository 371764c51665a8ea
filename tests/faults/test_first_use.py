"""First use under concurrency: two `hpsearch run` started at the same moment in a fresh folder.

Both find no `hpsearch.db` and no `mlflow.db`, so both would create them: Optuna's tables and
MLflow's migrated schema, in the same files at once. Each repetition is a fresh folder. The
user cache (`HPSEARCH_CACHE_DIR`, where the migrated MLflow template lives) is cold in the
second repetition (both make the template at once), warm after it, and unusable in the first
(a cache path under a regular file, as with a read-only home: MLflow's migrations then run on
the store itself; on the old code the two chains collided, "duplicate column name: step").
Afterwards: one study, exactly its budget, both commands exit 0 without a traceback, and the
MLflow store is whole (every table, one schema version, one experiment with one FINISHED run
per trial). A store left half-created is refused with how to recover
(`test_permanent_errors.py`).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.faults.support import REPO

REPEATS = 10  # issue 15: no cache, cold cache, then warm; each a fresh folder raced by two
BUDGET = 2
NAME = "first-use"


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HPSEARCH_"))}
    env.update(HPSEARCH_CACHE_DIR=str(cache), HPSEARCH_TORCH_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _run_two_at_once(folder: Path, cache: Path) -> list[tuple[int, str]]:
    argv = [sys.executable, "-m", "search", "run", "--name", NAME, "--dataset", "wine",
            "--epochs", "1", "--trials", str(BUDGET), "--workers", "1",
            "--no-progress"]  # fmt: skip
    procs = [
        subprocess.Popen(
            argv, cwd=folder, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    out = []
    for proc in procs:
        text, _ = proc.communicate(timeout=240)
        out.append((proc.returncode, text.decode(errors="replace")))
    return out


def _mlflow_store_whole(db: Path) -> list[str]:
    """What is wrong with the MLflow store (empty when it is whole)."""
    problems = []
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"experiments", "runs", "metrics", "params", "tags", "alembic_version"} - tables
        if missing:
            problems.append(f"tables missing: {sorted(missing)}")
        if any(t.startswith("_alembic_tmp") for t in tables):
            problems.append(f"a migration's leftover table: {sorted(tables)}")
        if "alembic_version" in tables:
            versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
            if len(versions) != 1:
                problems.append(f"schema versions: {versions}")
    return problems


@pytest.mark.slow
def test_two_runs_started_together_in_a_fresh_folder_make_one_study_and_one_store(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    (tmp_path / "a-file").write_text("not a folder\n")
    for repeat in range(REPEATS):
        folder = tmp_path / f"fresh-{repeat}"
        cache = tmp_path / ("a-file" if repeat == 0 else "cache") / "hpsearch-cache"
        folder.mkdir()
        results = _run_two_at_once(folder, cache)
        for code, text in results:
            assert code == 0, f"repeat {repeat}:\n{text}"
            assert "Traceback" not in text, f"repeat {repeat}:\n{text}"

        storage = f"sqlite:///{folder / 'hpsearch.db'}"
        summaries = optuna.get_all_study_summaries(storage)
        assert [s.study_name for s in summaries] == [NAME], f"repeat {repeat}"
        trials = optuna.load_study(study_name=NAME, storage=storage).get_trials()
        finished = [t for t in trials if t.state.is_finished()]
        assert len(finished) == BUDGET, f"repeat {repeat}: {[t.state for t in trials]}"

        store = folder / "mlflow.db"
        assert _mlflow_store_whole(store) == [], f"repeat {repeat}"
        client = MlflowClient(f"sqlite:///{store}")
        experiment = client.get_experiment_by_name(NAME)
        assert experiment is not None, f"repeat {repeat}"
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        trial_runs = [r for r in runs if r.data.tags.get("hpsearch.role") == "trial"]
        assert sorted(int(r.data.tags["hpsearch.trial_number"]) for r in trial_runs) == list(
            range(BUDGET)
        ), f"repeat {repeat}"
        assert {r.info.status for r in trial_runs} == {"FINISHED"}, f"repeat {repeat}"
