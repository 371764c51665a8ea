"""The study summary: best config TOML that reads back, pictures, and the parent run's files."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from search.tracking import ensure_study_run, summarize_study
from search.tracking._study_report import study_report_files
from spaces.toml_text import dump_toml, toml_value
from trainers.config import TrainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)


def small_study(n_trials: int = 8) -> optuna.Study:
    study = optuna.create_study(
        study_name="report", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3)
    )

    def objective(trial: optuna.Trial) -> float:
        alpha = trial.suggest_float("alpha", 1e-4, 1e-1, log=True)
        units = trial.suggest_int("hidden_units", 16, 256, log=True)
        optimizer = trial.suggest_categorical("optimizer", ["adam", "momentum"])
        return -abs(math.log10(alpha) + 2.5) + units / 1000 + (optimizer == "adam") * 0.1

    study.optimize(objective, n_trials=n_trials)
    return study


def test_best_config_toml_reads_back_into_a_train_config() -> None:
    config = TrainConfig(alpha=3.2e-3, decay="step", decay_milestones=(5, 10), hidden_units=64)
    text = dump_toml(config.to_dict(), header="best trial 3\nline two")
    assert text.startswith("# best trial 3\n# line two\n")
    assert TrainConfig.from_dict(tomllib.loads(text)) == config


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (3, "3"),
        (1e-8, "1e-08"),
        (math.inf, "inf"),
        ('a "quoted"\\ line\n', '"a \\"quoted\\"\\\\ line\\n"'),
        ([1, 2], "[1, 2]"),
    ],
)
def test_toml_values(value: object, expected: str) -> None:
    assert toml_value(value) == expected
    assert tomllib.loads(f"x = {expected}")["x"] == (
        list(value) if isinstance(value, list) else value
    )


def test_toml_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError, match=r"`extra` must be a string, number, boolean, list or"):
        dump_toml({"extra": object()})


def test_report_skips_pictures_it_cannot_draw() -> None:
    study = small_study(n_trials=1)  # importances need >= 2 complete trials
    files, skipped = study_report_files(study, "val_accuracy", "maximize", {"alpha": 0.01})
    assert "plots/param_importances.png" in skipped
    assert {"trials.csv", "best_config.toml", "plots/optimization_history.png"} <= set(files)


def test_summarize_study_stores_the_report_on_the_parent_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ref = ensure_study_run(uri, "report", {}, artifact_location=(tmp_path / "art").as_uri())
    study = small_study()
    best = TrainConfig(**study.best_params).to_dict()
    stored = summarize_study(ref, study, "val_accuracy", "maximize", best)
    expected = {
        "trials.csv",
        "best_config.toml",
        "plots/optimization_history.png",
        "plots/param_importances.png",
        "plots/parallel_coordinates.png",
        "plots/alpha_vs_val_accuracy.png",
    }
    assert set(stored) == expected
    client = MlflowClient(uri)
    listed = {a.path for a in client.list_artifacts(ref.parent_run_id)}
    listed |= {a.path for a in client.list_artifacts(ref.parent_run_id, "plots")}
    assert expected <= listed
    local = Path(client.download_artifacts(ref.parent_run_id, "best_config.toml", str(tmp_path)))
    assert (
        TrainConfig.from_dict(tomllib.loads(local.read_text())).alpha == study.best_params["alpha"]
    )
    csv = Path(client.download_artifacts(ref.parent_run_id, "trials.csv", str(tmp_path)))
    assert len(csv.read_text().strip().splitlines()) == 1 + len(study.trials)
    assert client.get_run(ref.parent_run_id).data.tags["best_trial"] == str(study.best_trial.number)
