"""Dataset options (issue 13): `drop` columns and `missing_target`, on a CSV like the ones users
bring: tests/fixtures/cars.csv has a free-text `name` column (160 distinct car names) and a
regression target `mpg` with 8 missing values (and a few missing horsepower figures, which are
imputed as usual). Each refusal names the option that fixes it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from search.cli import main
from trainers import DataError, TrainConfig, prepare_data

CARS = Path(__file__).resolve().parents[1] / "fixtures" / "cars.csv"
ROWS, MISSING = 160, 8


def _cars(**fields: object) -> TrainConfig:
    return TrainConfig(dataset=str(CARS), target="mpg", device="cpu", epochs=2, **fields)


def test_a_missing_target_is_refused_naming_the_option_that_drops_those_rows() -> None:
    with pytest.raises(DataError) as info:
        prepare_data(_cars(drop=("name",)))
    message = str(info.value)
    assert f"has {MISSING} missing value(s)" in message
    assert 'missing_target = "drop"' in message and "--missing-target drop" in message


def test_a_free_text_column_is_refused_naming_drop() -> None:
    with pytest.raises(DataError) as info:
        prepare_data(_cars(missing_target="drop"))
    message = str(info.value)
    assert "['name']" in message and "`drop` (--drop name)" in message


def test_drop_and_missing_target_drop_train_and_count_the_rows() -> None:
    data = prepare_data(_cars(drop=("name",), missing_target="drop"))
    assert data.dropped_rows == MISSING
    assert data.n_train + len(data.val_indices) + len(data.test_indices) == ROWS - MISSING
    assert data.task == "regression"
    assert not any(n.startswith("name") for n in data.feature_names)
    assert any(n.startswith("origin") for n in data.feature_names)  # one-hot, kept


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"drop": ("colour",)}, r"`drop` names column\(s\) \['colour'\] that are not in"),
        ({"drop": ("mpg",)}, r"`drop` must not name the target column 'mpg'"),
        ({"missing_target": "fill"}, r"`missing_target` must be one of \['refuse', 'drop'\]"),
    ],
)
def test_bad_options_name_the_field(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        prepare_data(_cars(**fields))


def test_drop_works_on_a_builtin_dataset_too() -> None:
    data = prepare_data(TrainConfig(dataset="digits", drop=("pixel_0_0", "pixel_0_1")))
    assert data.n_features == 62
    with pytest.raises(DataError, match="`drop` names column"):
        prepare_data(TrainConfig(dataset="digits", drop=("nope",)))


def test_train_takes_the_options_as_flags_and_says_what_it_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["train", "--dataset", str(CARS), "--target", "mpg", "--epochs", "2"]
    assert main([*base, "--device", "cpu"]) == 2
    assert "--missing-target drop" in capsys.readouterr().err
    argv = [*base, "--drop", "name", "--missing-target", "drop", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"dropped {MISSING} row(s) whose target is missing" in out
    assert "drop=['name'] missing_target=drop" in out
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"] == {"dropped_rows": MISSING} and printed["config"]["drop"] == ["name"]


def test_a_study_file_drops_and_the_study_run_records_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from search.study import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = tmp_path / "cars.toml"
    study.write_text(
        f'[study]\ntrials = 2\n\n[space]\nname = "lesson"\n\n[train]\ndataset = "{CARS}"\n'
        'target = "mpg"\nepochs = 2\ndrop = ["name"]\nmissing_target = "drop"\n'
    )
    assert main(["create", str(study)]) == 0
    assert "study 'cars-lesson' created" in capsys.readouterr().out
    spec = load_spec(f"sqlite:///{tmp_path / 'hpsearch.db'}", "cars-lesson")
    assert spec.data_notes == {"rows": ROWS - MISSING, "dropped_rows": MISSING}
    assert spec.tracking_uri is not None and spec.parent_run_id is not None
    params = MlflowClient(spec.tracking_uri).get_run(spec.parent_run_id).data.params
    assert params["data.dropped_rows"] == str(MISSING)
    assert params["train.missing_target"] == "drop"
    # The flags do the same for `hpsearch create` / `run`.
    argv = ["create", "--name", "flags", "--dataset", str(CARS), "--target", "mpg"]
    assert main([*argv, "--no-tracking"]) == 2
    assert re.search(r"--missing-target drop", capsys.readouterr().err)
    assert main([*argv, "--drop", "name", "--missing-target", "drop", "--no-tracking"]) == 0
