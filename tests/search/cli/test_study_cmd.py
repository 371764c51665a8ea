"""`hpsearch` study verbs: exit codes for bad input (2, nothing written), and the read verbs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from search.cli import main
from tests.support.study import TINY_SPACE


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HPSEARCH_TORCH_THREADS", "1")
    (tmp_path / "tiny.toml").write_text(TINY_SPACE)
    return tmp_path


FAST = ["--space", "tiny.toml", "--tiers", "1", "--epochs", "2", "--no-tracking"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "--trials", "0"], "`trials` must be >= 1"),
        (["run", "--workers", "0"], "`--workers` must be an integer >= 1"),
        (["run", "--storage", "not a url"], "must be a SQLAlchemy URL"),
        (["run", "--storage", "postgresql://u:s3cret@h:x/db"], "SQLAlchemy URL"),
        (["run", "--dataset", "no-such-data"], "no-such-data"),
        (["run", "--space", "no-such-space"], "no-such-space"),
        (["run", "--sampler", "grid"], "grid"),
        (["create", "--metric", "val_rmse"], "`metric` must be one of"),
        (["run", "missing-study.toml"], "cannot be read"),
        (["worker", "absent"], "no study named 'absent'"),
        (["best", "absent"], "no study named 'absent'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    here: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "s3cret" not in err
    if argv[0] != "worker" and argv[0] != "best":
        assert not (here / "hpsearch.db").exists()


def test_create_twice_resumes_and_a_different_config_is_refused(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["create", "--name", "c", "--trials", "3", *FAST]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["create", "--name", "c", "--trials", "3", *FAST]) == 0
    assert "exists (same configuration)" in capsys.readouterr().out
    assert main(["create", "--name", "c", "--trials", "2", *FAST]) == 2
    assert "can only grow" in capsys.readouterr().err
    assert main(["create", "--name", "c", "--trials", "3", *FAST[:-2], "3", "--no-tracking"]) == 2
    assert "train.epochs: 2 -> 3" in capsys.readouterr().err


def test_worker_then_read_verbs(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "--name", "r", "--trials", "3", *FAST]) == 0
    assert main(["worker", "r"]) == 0
    assert "3 trial(s) (complete 3)" in capsys.readouterr().err

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "r" in out and "3/3" in out

    assert main(["trials", "r", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in rows] == [0, 1, 2] and all(r["value"] for r in rows)
    assert main(["trials", "r", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("number,state,outcome,value")
    assert main(["trials", "r"]) == 0
    assert "params.alpha" in capsys.readouterr().out

    assert main(["best", "r"]) == 0
    printed = capsys.readouterr().out
    best = tomllib.loads(printed)
    best_row = max(rows, key=lambda r: r["value"])
    assert best["alpha"] == best_row["params.alpha"] and best["epochs"] == 2
    # `hpsearch best r > best.toml && hpsearch train --config best.toml` trains that trial
    # again: the same configuration and seeds on the CPU give the same value, to the bit.
    (here / "best.toml").write_text(printed)
    assert main(["train", "--config", "best.toml", "--json"]) == 0
    retrained = json.loads(capsys.readouterr().out)["result"]["metrics"]
    assert retrained["val_accuracy"] == best_row["value"]
    assert main(["best", "r", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["alpha"] == best["alpha"]


def test_refine_creates_a_narrowed_study_and_retrain_tests_the_best(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["create", "--name", "wide", "--trials", "4", *FAST]) == 0
    assert main(["worker", "wide"]) == 0
    assert main(["refine", "wide", "--top", "2", "--name", "narrow", "--trials", "2"]) == 0
    assert "narrowed around the best 2" in capsys.readouterr().out
    from search.api import load_spec, trials_table
    from spaces import Space

    rows = [r for r in trials_table("wide", "sqlite:///hpsearch.db") if r["value"] is not None]
    top = sorted(rows, key=lambda r: r["value"], reverse=True)[:2]
    alpha = Space.from_toml(load_spec("sqlite:///hpsearch.db", "narrow").space_toml).param("alpha")
    assert alpha.low <= min(r["params.alpha"] for r in top) <= max(r["params.alpha"] for r in top)
    assert alpha.high <= 0.1 and (alpha.low > 0.001 or alpha.high < 0.1)  # really narrower

    assert main(["retrain", "wide"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["test"]["test_accuracy"] <= 1.0


def test_retrain_logs_a_model_that_plain_torch_loads_and_runs(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from mlflow.tracking import MlflowClient

    from search.tracking import default_tracking_uri

    tracked = [a for a in FAST if a != "--no-tracking"]
    assert main(["create", "--name", "m", "--trials", "2", "--dataset", "wine", *tracked]) == 0
    assert main(["worker", "m"]) == 0
    capsys.readouterr()
    assert main(["retrain", "m"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_logged"] is True and summary["mlflow_run_id"]

    uri, _ = default_tracking_uri(f"sqlite:///{here / 'hpsearch.db'}")
    client = MlflowClient(uri)
    path = client.download_artifacts(summary["mlflow_run_id"], "model/model.pt", str(here))
    module = torch.load(path, weights_only=False)
    assert isinstance(module, torch.nn.Sequential)
    assert module(torch.zeros(3, 13)).shape == (3, 3)  # wine: 13 features, 3 classes
