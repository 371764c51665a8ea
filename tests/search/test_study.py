"""Studies: validation before any write, create/resume/refuse, study files, storage URLs."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from search.errors import InfrastructureError, StudyError
from search.storage import (
    Heartbeat,
    absolute_storage_url,
    count_trials,
    open_storage,
    parse_storage_url,
    redact_url,
)
from search.study import (
    SPEC_ATTR,
    StudySpec,
    create_study,
    dump_toml,
    load_spec,
    read_study_file,
    storable_tracking_uri,
    worker_tracking_uri,
)
from spaces import SpaceError
from tests.support.study import TINY_SPACE, request, sqlite_url
from trainers import ConfigError, DataError


def _studies(url: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(url)]


# --- validation happens before anything is written ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"n_trials": 0}, StudyError, "`trials` must be >= 1"),
        ({"n_trials": 2.5}, StudyError, "`trials` must be an integer"),
        ({"tiers": 0}, StudyError, "`tiers`"),
        ({"pruner": "asha"}, StudyError, "`pruner` must be one of"),
        ({"sampler": "grid"}, SpaceError, "grid"),
        ({"sampler": "bayes"}, SpaceError, "bayes"),
        ({"metric": "val_rmse"}, StudyError, "`metric` must be one of"),
        ({"direction": "up"}, StudyError, "`direction` must be one of"),
        ({"name": "has space"}, StudyError, "study name"),
        ({"train": {"dataset": "no-such-dataset"}}, DataError, "no-such-dataset"),
        ({"train": {"alpha": -1.0}}, ConfigError, "alpha"),
        ({"train": {"alpah": 0.1}}, ConfigError, "alpah"),
        ({"space_toml": None, "space": "no-such-space"}, SpaceError, "no-such-space"),
        ({"heartbeat_interval_s": 5, "grace_period_s": 5}, StudyError, "grace_period"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tmp_path: Path, changes: dict, error: type[Exception], words: str
) -> None:
    url = sqlite_url(tmp_path)
    name = changes.pop("name", "bad")
    with pytest.raises(error, match=words):
        spec = request(name, **changes).resolve(url)
        create_study(spec, url)
    assert not (tmp_path / "study.db").exists()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", "must be a SQLAlchemy URL"),
        ("mongodb://localhost/x", "must be one of"),
        ("sqlite://", "in-memory"),
        ("sqlite:////no/such/dir/x.db", "directory must exist"),
    ],
)
def test_malformed_storage_urls_are_user_errors(url: str, words: str) -> None:
    with pytest.raises(StudyError, match=words):
        parse_storage_url(url)


def test_passwords_never_reach_messages() -> None:
    url = "postgresql://hp:s3cret@127.0.0.1:1/db"
    assert "s3cret" not in redact_url(url)
    assert "s3cret" not in redact_url("garbage://hp:s3cret@x")


def test_unreachable_database_waits_then_raises_infrastructure_error() -> None:
    # Port 1 refuses at once; the bounded retry gives up after the timeout, naming no password.
    started = time.monotonic()
    with pytest.raises(InfrastructureError) as info:
        open_storage("postgresql://hp:s3cret@127.0.0.1:1/db", timeout_s=1.0)
    assert 0.5 < time.monotonic() - started < 10
    assert "s3cret" not in str(info.value)
    assert "unreachable" in str(info.value)


def test_heartbeat_rules() -> None:
    assert Heartbeat(1, 3).grace_s == 3
    with pytest.raises(StudyError, match="heartbeat_interval"):
        Heartbeat(0, 3)


# --- create, resume, refuse ----------------------------------------------------------------------


def test_creating_twice_resumes_and_a_different_config_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    spec, resumed = create_study(request("s").resolve(url), url)
    assert not resumed
    again, resumed = create_study(request("s").resolve(url), url)
    assert resumed and again == spec

    other = request("s", n_trials=9, train={"epochs": 4, "batch_size": 32}).resolve(url)
    with pytest.raises(StudyError) as info:
        create_study(other, url)
    message = str(info.value)
    assert "train.epochs: 3 -> 4" in message and "train.batch_size: 64 -> 32" in message
    assert "n_trials" not in message  # a budget may grow (tests/search/test_study_growth.py)
    assert load_spec(url, "s") == spec  # untouched


def test_spec_is_stored_as_json_user_attribute_and_round_trips(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    spec, _ = create_study(request("s").resolve(url), url)
    stored = optuna.load_study(study_name="s", storage=url).user_attrs[SPEC_ATTR]
    assert StudySpec.from_json(stored) == spec
    assert spec.metric == "val_accuracy" and spec.direction == "maximize"  # the task's default


def test_a_study_not_created_by_hpsearch_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    optuna.create_study(study_name="foreign", storage=url)
    with pytest.raises(StudyError, match="not created by hpsearch"):
        create_study(request("foreign").resolve(url), url)


def test_load_spec_of_a_missing_study_lists_the_studies_there(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    create_study(request("present").resolve(url), url)
    with pytest.raises(StudyError, match=r"no study named 'absent'.*present"):
        load_spec(url, "absent")


# --- study files ---------------------------------------------------------------------------------


def test_study_file_with_space_path_and_train_table(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY_SPACE)
    study_file = tmp_path / "study.toml"
    study_file.write_text(
        '[study]\nname = "f"\ntrials = 5\nseed = 3\ntiers = 1\npruner = "median"\n'
        '[space]\npath = "tiny.toml"\n'
        '[train]\ndataset = "digits"\nepochs = 2\ndecay_milestones = [1]\n'
    )
    req = read_study_file(study_file)
    assert (req.name, req.n_trials, req.seed, req.pruner) == ("f", 5, 3, "median")
    assert req.space == str(tmp_path / "tiny.toml")
    spec = req.resolve(sqlite_url(tmp_path))
    assert spec.base == {"dataset": "digits", "epochs": 2, "decay_milestones": [1]}


def test_study_file_with_inline_space(tmp_path: Path) -> None:
    import tomllib

    inline = tomllib.loads(TINY_SPACE)
    study_file = tmp_path / "study.toml"
    study_file.write_text('[study]\nname = "inline"\n\n' + dump_toml({"space": inline}))
    spec = read_study_file(study_file).resolve(sqlite_url(tmp_path))
    assert spec.space_name == "inline"
    assert "alpha" in spec.space_toml


def test_study_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[study]\ntrails = 5\n")
    with pytest.raises(StudyError, match=r"\[study\] key must be one of.*'trails'"):
        read_study_file(bad)
    bad.write_text("[study\n")
    with pytest.raises(StudyError, match="not valid TOML"):
        read_study_file(bad)
    with pytest.raises(StudyError, match="cannot be read"):
        read_study_file(tmp_path / "missing.toml")


def test_dump_toml_round_trips_plain_data() -> None:
    import tomllib

    data = {"a": 1, "b": 0.5, "c": 'x"y', "d": [1, 2], "e": True, "t": {"k": [{"q": 1}]}}
    assert tomllib.loads(dump_toml(data)) == data


# --- tracking URIs -------------------------------------------------------------------------------


def test_stored_tracking_uri_has_no_password_and_workers_use_their_own_credentials() -> None:
    assert storable_tracking_uri("http://u:pw@mlflow:5000/") == "http://u@mlflow:5000/"
    stored = storable_tracking_uri("postgresql://u:pw@db:5432/ml")
    assert "pw" not in stored
    assert worker_tracking_uri(stored, "postgresql://u:pw@db:5432/ml").endswith("u:pw@db:5432/ml")
    with pytest.warns(UserWarning, match="not the study's"):
        assert worker_tracking_uri(stored, "http://elsewhere:5000") == stored


def test_relative_sqlite_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_storage_url("sqlite:///x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert storable_tracking_uri("sqlite:///m.db") == f"sqlite:///{tmp_path / 'm.db'}"


# --- storage mechanics ---------------------------------------------------------------------------


def test_sqlite_storage_uses_wal_and_counts_by_state(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    storage = open_storage(url)
    with storage.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    study = optuna.create_study(storage=storage, study_name="c")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.enqueue_trial({})
    counts = count_trials(storage, study._study_id)
    assert (counts.complete, counts.waiting, counts.finished, counts.live) == (1, 1, 1, 2)


def test_a_worker_reaching_the_study_server_by_another_address_logs_there(
    mlflow_server_factory,
) -> None:
    """A worker host reaches host 1's MLflow by a published port or a tunnel, while the study
    stores the address its creator used (a container name): the same server, by what it holds."""
    from mlflow import MlflowClient

    server = mlflow_server_factory()
    experiment = MlflowClient(server.uri).create_experiment("same-server")
    parent = MlflowClient(server.uri).create_run(experiment).info.run_id
    stored = "http://mlflow:5000"  # unresolvable here, as on a worker host
    other_address = f"http://localhost:{server.port}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert worker_tracking_uri(stored, other_address, parent) == other_address
    # A server that does not hold the parent run is another server: the study's URI wins.
    with pytest.warns(UserWarning, match="not the study's"):
        assert worker_tracking_uri(stored, other_address, "0" * 32) == stored
    with pytest.warns(UserWarning, match="not the study's"):
        assert worker_tracking_uri(stored, other_address, None) == stored
