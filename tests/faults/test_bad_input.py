"""Scenarios 5 and 8: an unreachable PostgreSQL at start, and every kind of bad input.

Each case runs the real `hpsearch` command line and then looks where a half-made study would
be: the SQLite storage file (absent, or holding no study) and the MLflow store (absent, or
holding no experiment of that name). Exit codes: 2 for the user's input, 1 for infrastructure.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from search.cli import main
from tests.conftest import free_port
from tests.faults.support import FAULT_SPACE, REPO, run_hpsearch

NAME = "bad-input"


def _studies(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "studies" not in tables:
            return []
        return [r[0] for r in conn.execute("SELECT study_name FROM studies")]


def _experiments(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "experiments" not in tables:
            return []
        return [r[0] for r in conn.execute("SELECT name FROM experiments") if r[0] != "Default"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _csv(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


# A space that searches the dataset: each choice is loaded before the study exists.
def _dataset_space(*choices: str) -> str:
    listed = ", ".join(f'"{c}"' for c in choices)
    return FAULT_SPACE + (
        f'\n[[param]]\nname = "dataset"\nkind = "categorical"\ntier = 1\n'
        f'choices = [{listed}]\ndefault = "{choices[0]}"\n'
    )


# Validation fraction drawn up to 0.6: fine alone, refused beside the study's test_fraction 0.5.
VAL_FRACTION_SPACE = """
name = "split"

[[param]]
name = "val_fraction"
kind = "float"
tier = 1
low = 0.1
high = 0.6
default = 0.2
"""


# Each case: (id, files to write {name: text}, argv after `run`, words the message must hold).
CASES: list[tuple[str, dict[str, str], list[str], tuple[str, ...]]] = [
    ("space-not-toml", {"s.toml": "name = [\n"}, ["--space", "s.toml"], ("s.toml",)),
    (
        "space-low-above-high",
        {"s.toml": FAULT_SPACE.replace("low = 0.001", "low = 5.0")},
        ["--space", "s.toml"],
        ("low", "high"),
    ),
    (
        "space-unknown-kind",
        {"s.toml": FAULT_SPACE.replace('kind = "float"', 'kind = "floaty"')},
        ["--space", "s.toml"],
        ("kind", "floaty"),
    ),
    ("study-not-toml", {"st.toml": "[study\n"}, ["st.toml"], ("st.toml", "TOML")),
    ("study-unknown-table", {"st.toml": "[stduy]\ntrials = 3\n"}, ["st.toml"], ("stduy",)),
    (
        "study-unknown-key",
        {"st.toml": "[study]\ntrails = 3\n[train]\ndataset = 'digits'\n"},
        ["st.toml"],
        ("trails",),
    ),
    (
        "study-missing-space-file",
        {"st.toml": "[space]\npath = 'nowhere.toml'\n[train]\ndataset = 'digits'\n"},
        ["st.toml"],
        ("nowhere.toml",),
    ),
    (
        "csv-missing-target",
        {"d.csv": _csv(["a,b", "1,2", "3,4", "5,6"])},
        ["--dataset", "d.csv", "--target", "y"],
        ("'y'", "d.csv"),
    ),
    ("csv-empty", {"d.csv": ""}, ["--dataset", "d.csv"], ("empty", "d.csv")),
    (
        "csv-text-regression-target",
        {
            "d.csv": _csv(["a,b,y"] + [f"{i},{i * 2},v{i % 3}" for i in range(40)]),
            "st.toml": "[train]\ndataset = 'd.csv'\ntarget = 'y'\ntask = 'regression'\n",
        },
        ["st.toml"],
        ("regression", "numeric", "'y'"),
    ),
    (
        "csv-single-class",
        {"d.csv": _csv(["a,b,y"] + [f"{i},{i * 2},1" for i in range(40)])},
        ["--dataset", "d.csv", "--target", "y"],
        ("2 classes", "'y'"),
    ),
    ("unknown-dataset", {}, ["--dataset", "mnistt"], ("dataset", "mnistt")),
    ("unknown-space", {}, ["--space", "lessen"], ("lessen",)),
    ("zero-trials", {}, ["--trials", "0"], ("trials", "0")),
    ("zero-workers", {}, ["--workers", "0"], ("--workers", "0")),
    ("workers-not-a-number", {}, ["--workers", "two"], ("--workers", "two")),
    ("malformed-storage-url", {}, ["--storage", "postgres//oops"], ("storage", "URL")),
    ("unsupported-storage", {}, ["--storage", "mongodb://h/db"], ("storage", "mongodb")),
    ("zero-epochs", {}, ["--epochs", "0"], ("epochs", "0")),
    # Validated before the first write (issue 15): each used to create the study and its
    # MLflow experiment, then fail trials (or allocate, or accept) later.
    ("device-not-on-this-host", {}, ["--device", "cuda:99"], ("device", "cuda:99")),
    (
        "space-dataset-choice-missing",
        {"s.toml": _dataset_space("digits", "nowhere.csv")},
        ["--space", "s.toml", "--tiers", "1"],
        ("dataset", "nowhere.csv", "does not exist"),
    ),
    (
        "space-dataset-choice-of-another-task",
        {"s.toml": _dataset_space("digits", "diabetes")},
        ["--space", "s.toml", "--tiers", "1"],
        ("dataset", "'diabetes'", "regression", "classification"),
    ),
    (
        "space-draw-refused-beside-train",
        {
            "v.toml": VAL_FRACTION_SPACE,
            "st.toml": "[space]\npath = 'v.toml'\n[study]\ntiers = 1\n"
            "[train]\ntest_fraction = 0.5\n",
        },
        ["st.toml"],
        ("val_fraction", "0.6", "test_fraction=0.5"),
    ),
    ("tiers-beyond-the-space", {}, ["--tiers", "99"], ("tiers", "1..5", "99")),
    (
        "budget-over-the-cap",
        {},
        ["--trials", "1000000000000"],
        ("trials", "100000", "--force-budget", "1000000000000"),
    ),
    (
        "budget-over-the-hard-limit-even-forced",
        {},
        ["--trials", "10000000000", "--force-budget"],
        ("trials", "2147483647", "10000000000"),
    ),
    (
        "synthetic-too-big-for-memory",
        {},
        ["--dataset", "synthetic:10000000000"],
        ("dataset", "synthetic:10000000000", "GiB"),
    ),
]


@pytest.mark.parametrize(
    ("files", "argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    argv: list[str],
    words: tuple[str, ...],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    for name, text in files.items():
        _write(tmp_path / name, text)
    full = ["run", "--name", NAME, "--no-progress", "--epochs", "1", "--trials", "2", *argv]
    if "--storage" not in argv:
        full += ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    try:
        code = main(full)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    for word in words:
        assert word in message, (word, message)
    assert _studies(tmp_path / "study.db") == []
    assert _experiments(tmp_path / "mlflow.db") == []
    assert not (tmp_path / "mlartifacts").exists()


def _hpsearch(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = run_hpsearch(args, cwd, env)
    return proc.returncode, proc.stderr + proc.stdout, time.monotonic() - started


@pytest.mark.slow  # waits out a 3 s connect timeout, in a subprocess
@pytest.mark.parametrize("verb", ["run", "worker"])
def test_unreachable_postgres_at_start_waits_a_bounded_time_then_exits_1(
    tmp_path: Path, verb: str
) -> None:
    port = free_port()  # bound and released: nobody listens there
    url = f"postgresql://postgres:pw-9f3@127.0.0.1:{port}/hpsearch"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HPSEARCH_"))}
    env.update(
        HPSEARCH_CONNECT_TIMEOUT="3",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        PYTHONPATH=str(REPO),
    )
    args = (
        ["run", "--name", NAME, "--dataset", "digits", "--epochs", "1", "--trials", "2"]
        if verb == "run"
        else ["worker", NAME]
    )
    code, out, elapsed = _hpsearch([*args, "--storage", url], env, tmp_path)
    assert code == 1, out
    assert "Traceback" not in out, out
    line = out.strip().splitlines()[-1]
    assert "unreachable for 3 s" in line and f"127.0.0.1:{port}" in line, line
    assert "HPSEARCH_CONNECT_TIMEOUT" in line  # says how to wait longer
    assert "pw-9f3" not in out  # the password is masked
    # Bounded: the 3 s of retries plus the interpreter's start, not minutes.
    assert elapsed < 60, elapsed
    assert _experiments(tmp_path / "mlflow.db") == []  # no half-made study in MLflow


# --- checked before the first write, and what a worker does when it still meets a bad config ---


def test_tpe_takes_a_seed_beyond_32_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """random and sobol take any seed; TPE's NumPy RandomState only 32 bits: it gets the seed
    modulo 2**32 (documented), the study keeps the seed as given, and its trials train."""
    from search.study import load_spec
    from search.worker import run_worker

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    seed = 2**70
    argv = ["create", "--name", NAME, "--storage", url, "--sampler", "tpe", "--seed", str(seed),
            "--dataset", "wine", "--epochs", "1", "--trials", "2", "--no-tracking"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert load_spec(url, NAME).seed == seed
    report = run_worker(url, NAME)
    assert sorted(report.outcomes.elements()) == ["complete", "complete"], report


def test_a_worker_on_a_host_without_the_study_device_exits_2_before_claiming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study created where its GPU exists, joined from a host without it: one line, exit 2,
    and no trial claimed (claimed trials would each fail, then wait out the grace period)."""
    import dataclasses

    from search.study import StudyRequest, create_study

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = StudyRequest(
        name=NAME, space_toml=FAULT_SPACE, n_trials=2, no_tracking=True,
        train={"dataset": "wine", "epochs": 1, "device": "cpu"},
    ).resolve(url)  # fmt: skip
    # As `create` on the GPU host stored it: the resolved spec, on a device this host lacks.
    create_study(dataclasses.replace(spec, base={**spec.base, "device": "cuda:99"}), url)
    code = main(["worker", NAME, "--storage", url])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("hpsearch: error:") and "device" in line and "cuda:99" in line, line
    with sqlite3.connect(tmp_path / "study.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


def test_a_configuration_error_on_the_first_trial_stops_the_worker_and_fails_the_study_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dataset file is removed after the study was created: the worker's first trial
    fails on it, the worker stops at once (not after three tracebacks) saying why, and the
    study's MLflow run ends FAILED with the reason instead of staying RUNNING."""
    from mlflow.tracking import MlflowClient

    from search.study import StudyRequest, create_study

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HPSEARCH_SPOOL_DIR", str(tmp_path / "spool"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = _write(tmp_path / "d.csv", _csv(["a,b,y"] + [f"{i},{i % 7},{i % 2}" for i in range(40)]))
    request = StudyRequest(
        name=NAME, space_toml=FAULT_SPACE, n_trials=4, tracking_uri=uri,
        train={"dataset": str(data), "target": "y", "epochs": 1, "device": "cpu"},
    )  # fmt: skip
    spec, _ = create_study(request.resolve(url), url)
    data.unlink()
    code = main(["worker", NAME, "--storage", url])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "configuration error" in err and "d.csv" in err, err
    with sqlite3.connect(tmp_path / "study.db") as conn:
        states = [r[0] for r in conn.execute("SELECT state FROM trials")]
    assert states == ["FAIL"], states  # one trial, not MAX_CONSECUTIVE_ERRORS of them
    parent = MlflowClient(uri).get_run(str(spec.parent_run_id))
    assert parent.info.status == "FAILED", parent.info.status
    assert "d.csv" in parent.data.tags["hpsearch.reason"], parent.data.tags
