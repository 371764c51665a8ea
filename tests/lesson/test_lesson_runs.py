"""The `--quick` form of every experiment, end to end: real studies (SQLite storage, worker
processes), a real MLflow store (a local SQLite store, and an `mlflow server` for one), real
training. Checks the files, the MLflow parent run and its arms, and the links to the studies.

The search experiments start a worker process per study, which costs seconds each on a busy
2-core machine: those are `slow`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.lesson import LessonOptions, Outcome, run_lesson
from search.lesson.context import LESSON_EXPERIMENT
from tests.conftest import MlflowServer, sqlite_mlflow_server


@pytest.fixture
def where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # workers' spool folders land here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.setenv("HPSEARCH_TORCH_THREADS", "1")
    return {
        "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "out": str(tmp_path / "out"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from sqlite_mlflow_server(tmp_path_factory, "lesson-mlflow")


def _run(name: str, where: dict[str, str], **options: object) -> tuple[Outcome, list[Path]]:
    opts = LessonOptions(
        quick=True,
        storage=where["storage"],
        tracking_uri=where["tracking_uri"],
        out_dir=Path(where["out"]),
        **options,
    )
    return run_lesson(name, opts)


def _check_published(
    name: str, outcome: Outcome, files: list[Path], where: dict[str, str], arms: int
) -> list[object]:
    """The four files, and the MLflow parent run with them, the verdict and one child per arm.
    Returns the arm runs."""
    assert sorted(p.name for p in files) == sorted(
        f"{name}.{e}" for e in ("png", "csv", "md", "json")
    )
    png = Path(where["out"]) / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    md = (Path(where["out"]) / f"{name}.md").read_text()
    assert f"**Verdict: {outcome.verdict.word}.**" in md and outcome.verdict.claim in md
    saved = json.loads((Path(where["out"]) / f"{name}.json").read_text())
    assert saved["verdict"]["supported"] is outcome.verdict.supported

    client = MlflowClient(where["tracking_uri"])
    experiment = client.get_experiment_by_name(LESSON_EXPERIMENT)
    parents = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`hpsearch.lesson` = '{name}' and tags.`hpsearch.role` = 'lesson'",
    )
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["verdict"] == outcome.verdict.word
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {f"{name}.png", f"{name}.csv", f"{name}.md", "verdict.json"} <= artifacts
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert len(children) == arms and all(c.info.status == "FINISHED" for c in children)
    return children


def _check_studies(arm_runs: list[object], where: dict[str, str], trials: int) -> None:
    """Each arm's studies exist with their budget met, and point back at the lesson run."""
    client = MlflowClient(where["tracking_uri"])
    for run in arm_runs:
        lesson_run = run.data.tags["mlflow.parentRunId"]
        for study_name in run.data.tags["studies"].split(","):
            study = optuna.load_study(study_name=study_name, storage=where["storage"])
            finished = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
            assert len(finished) == trials
            spec = study.user_attrs["hpsearch_spec"]
            assert (
                client.get_run(spec["parent_run_id"]).data.tags["hpsearch.lesson_run"] == lesson_run
            )


def test_gradients_quick(where: dict[str, str]) -> None:
    outcome, files = _run("gradients", where)
    _check_published("gradients", outcome, files, where, arms=3)
    assert outcome.verdict.supported  # 1.3^19 and 0.7^19: far past both thresholds
    assert [row[-1] for row in outcome.table.rows] == ["exploding", "neither", "vanishing"]


def test_initialization_quick(where: dict[str, str]) -> None:
    outcome, files = _run("initialization", where)
    _check_published("initialization", outcome, files, where, arms=4)
    health = {row[0]: row[3] for row in outcome.table.rows}
    assert health["N(0, 1)"] == "exploding" and health["N(0, 0.01^2)"] == "vanishing"
    assert health["he (2/n)"] == "healthy"


def _features(tmp_path: Path, scales: np.ndarray, name: str) -> str:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=500, n_features=len(scales), n_informative=4, n_redundant=0, n_classes=3,
        class_sep=1.5, random_state=0,
    )  # fmt: skip
    path = tmp_path / name
    np.savez(path, X=x * scales + 3 * scales, target=y)
    return str(path)


@pytest.mark.slow
def test_normalization_verdict_flips_when_the_features_already_share_one_scale(
    where: dict[str, str], tmp_path: Path
) -> None:
    """Features spread over six decades: normalizing wins. The same features on one scale
    (make_classification's own, about unit variance): nothing to win, not supported."""
    mixed = _features(tmp_path, 10.0 ** np.arange(-2, 4, dtype=float), "mixed.npz")
    outcome, files = _run("normalization", where, dataset=mixed, trials=4, epochs=8)
    arms = _check_published("normalization", outcome, files, where, arms=3)
    _check_studies(arms, where, trials=4)
    assert outcome.verdict.supported, outcome.verdict.text()

    shared = _features(tmp_path, np.ones(6), "shared.npz")
    where = {**where, "out": str(tmp_path / "out-shared")}
    outcome, _ = _run("normalization", where, dataset=shared, trials=4, epochs=8)
    assert not outcome.verdict.supported, outcome.verdict.text()


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_optimizers_quick_on_an_mlflow_server_reproduces_on_a_second_run(
    where: dict[str, str], server: MlflowServer
) -> None:
    where = {**where, "tracking_uri": server.uri}
    outcome, files = _run("optimizers", where)
    arms = _check_published("optimizers", outcome, files, where, arms=4)
    _check_studies(arms, where, trials=2)
    # Fixed seeds: the same command resumes the same (finished) studies and says the same.
    again, _ = _run("optimizers", {**where, "out": where["out"] + "-again"})
    assert again.table == outcome.table and again.verdict == outcome.verdict


@pytest.mark.slow
@pytest.mark.parametrize("name, arms", [("decay", 5), ("priorities", 4), ("random-vs-grid", 2)])
def test_search_experiments_quick(name: str, arms: int, where: dict[str, str]) -> None:
    outcome, files = _run(name, where)
    arm_runs = _check_published(name, outcome, files, where, arms=arms)
    searches = [r for r in arm_runs if "studies" in r.data.tags]
    assert len(searches) == (1 if name == "random-vs-grid" else arms)
    _check_studies(
        searches,
        where,
        trials=4 if name == "random-vs-grid" else (3 if name == "priorities" else 2),
    )
