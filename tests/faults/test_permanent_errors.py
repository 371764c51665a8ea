"""Mistakes that waiting cannot fix are told at once, and an unreachable MLflow writes nothing.

A storage that can never be written (`sqlite:////proc/x.db`, a folder, a file that is not a
database) or that the driver refuses as written (an unknown libpq option, a port out of range,
a raw `@` in the password) is exit 2 in well under the 30 s of retries an outage gets, with one
line naming the rule and the value. An unreachable tracking server at `create` or `run` is one
line, exit 1, and leaves neither the storage file nor an MLflow store behind. A local MLflow
store left half-created is refused with one line saying how to recover.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.cli import main
from tests.conftest import free_port
from tests.support.postgres import PG_HOST, PG_PORT, PG_USER

NAME = "permanent"


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.err + captured.out, time.monotonic() - started


def _storage_cases(tmp: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    pg = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
    (tmp / "a-folder").mkdir()
    (tmp / "not-a-db").write_bytes(b"these bytes are not a SQLite database\n" * 200)
    return [
        ("sqlite:////proc/x.db", "/proc/x.db", ("SQLite", "create and write")),
        (f"sqlite:///{tmp / 'a-folder'}", "a-folder", ("SQLite", "regular file")),
        (f"sqlite:///{tmp / 'not-a-db'}", "not-a-db", ("SQLite", "not a database")),
        (f"{pg}?foo=bar", "foo", ("options", "driver accepts")),
        (pg.replace(f":{PG_PORT}/", ":99999/"), "99999", ("port", "1..65535")),
        (pg.replace(f"{PG_USER}@", f"{PG_USER}:p@ss@"), "%40", ("password", "`@`")),
    ]


STORAGE_IDS = ["proc", "a-folder", "not-a-database", "unknown-option", "port", "raw-at"]


@pytest.mark.parametrize("case", range(len(STORAGE_IDS)), ids=STORAGE_IDS)
def test_a_storage_that_can_never_work_is_exit_2_at_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: int,
) -> None:
    url, value, words = _storage_cases(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.delenv("HPSEARCH_CONNECT_TIMEOUT", raising=False)  # an outage would wait 30 s
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    before = (tmp_path / "not-a-db").read_bytes()
    argv = ["run", "--name", NAME, "--dataset", "wine", "--epochs", "1", "--trials", "1",
            "--no-progress", "--storage", url]  # fmt: skip
    code, out, elapsed = _run_cli(argv, capsys)
    assert code == 2, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpsearch: error: "), out
    for word in (value, *words):
        assert word in lines[0], (word, lines[0])
    assert elapsed < 2.0, f"{elapsed:.1f} s: retried as if the database were down"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert (tmp_path / "not-a-db").read_bytes() == before  # a user's file is never touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder", "not-a-db"]


@pytest.mark.parametrize("verb", ["create", "run"])
def test_an_unreachable_tracking_server_is_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HPSEARCH_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    uri = f"http://127.0.0.1:{free_port()}"  # bound and released: nobody listens there
    argv = [verb, "--name", NAME, "--dataset", "wine", "--epochs", "1", "--trials", "1",
            "--tracking-uri", uri]  # fmt: skip
    if verb == "run":
        argv.append("--no-progress")
    code, out, _ = _run_cli(argv, capsys)
    assert code == 1, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("hpsearch: error: the tracking server"), lines[0]
    assert uri in lines[0] and "unreachable" in lines[0] and "--no-tracking" in lines[0]
    assert list(tmp_path.iterdir()) == [], "something was written"


def _half_created_store(path: Path) -> None:
    """What an interrupted alembic chain leaves: some tables, a migration's temporary copy,
    no schema version."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE _alembic_tmp_tags (key TEXT, value TEXT)")
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")


def test_a_half_created_mlflow_store_is_refused_with_how_to_recover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HPSEARCH_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    store = tmp_path / "mlflow.db"
    _half_created_store(store)
    argv = ["run", "--name", NAME, "--dataset", "wine", "--epochs", "1", "--trials", "1",
            "--no-progress"]  # fmt: skip
    code, out, _ = _run_cli(argv, capsys)
    assert code == 1, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "half-created" in lines[0] and str(store) in lines[0], lines[0]
    assert f"mv {store} {store}.broken" in lines[0], lines[0]  # how to recover
    assert not (tmp_path / "hpsearch.db").exists()  # no study was made beside a broken store


_KILLED_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 1")  # spill to the file: the journal holds the old pages
conn.execute("BEGIN")
for _ in range(500):
    conn.execute(
        "INSERT INTO experiments (name, lifecycle_stage) VALUES (hex(randomblob(200)), 'active')"
    )
os._exit(9)  # killed mid-transaction, as a SIGKILLed worker is: the journal is left hot
"""


def test_a_whole_store_whose_writer_was_killed_mid_write_is_not_half_created(
    tmp_path: Path,
) -> None:
    """The journal a killed writer leaves can only be rolled back by a writable connection:
    looked at read-only, SQLite says "attempt to write a readonly database", and the next
    command called a whole store half-created (seen as a flake of the backlog fault test)."""
    from search.tracking import _local_store

    store = tmp_path / "mlflow.db"
    _local_store.prepare_local_store(f"sqlite:///{store}")
    with sqlite3.connect(store) as conn:
        before = conn.execute("SELECT count(*) FROM experiments").fetchone()[0]
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(store)], check=False)
    assert Path(f"{store}-journal").stat().st_size > 0  # the writer really left its journal

    _local_store._checked.discard(store.resolve())  # as a new process: nothing checked yet
    _local_store.prepare_local_store(f"sqlite:///{store}")  # no InfrastructureError
    with sqlite3.connect(store) as conn:  # rolled back: the killed transaction left nothing
        assert conn.execute("SELECT count(*) FROM experiments").fetchone()[0] == before
