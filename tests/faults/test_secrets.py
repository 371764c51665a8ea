"""Scenario 11: canary secrets in every URL form the storage and tracking URI accept are never
written anywhere.

PostgreSQL's trust authentication ignores a password, wherever the URL carries it (userinfo,
`?password=`, libpq's `sslpassword`), so `postgresql://postgres:CANARY@127.0.0.1:5432/db`
connects; the `mlflow server` without auth ignores the basic-auth header of
`http://hp:CANARY@127.0.0.1:PORT` (checked below: the study's runs do land there). Each study
runs through real `hpsearch run` processes; then every place a secret could leak is read back:
the CLI's output, every worker log, the worker processes' command lines, the study's and
trials' attributes, a `pg_dump` of the Optuna database and of each MLflow database (the
server's backend, and a tracking URI that is a database itself), the MLflow runs' params,
tags and artifacts, the spool. Canaries are checked in every part: a password cut at a wrong
delimiter would leave its tail behind.

A second test feeds forms that are refused or cannot connect (a raw `@` in a storage password,
an IPv6 host nobody listens on, a MySQL URL, an http tracking URI with `?token=`): the error
lines hide the canary too, and nothing is written.
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

from tests.conftest import MlflowServer, free_port
from tests.faults.support import REPO, mlflow_client

CANARY = f"CANARY-pw-{uuid.uuid4().hex[:10]}"


def _canary(tag: str) -> str:
    """A unique part: a leak is found even when only this part of a password survives."""
    return f"CANARY{tag}x{uuid.uuid4().hex[:8]}"


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


def _env(storage: str, tracking: str, spool: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HPSEARCH_"))}
    env.update(
        MLFLOW_TRACKING_URI=tracking,
        HPSEARCH_STORAGE=storage,
        HPSEARCH_SPOOL_DIR=str(spool),
        HPSEARCH_TORCH_THREADS="1",
        HPSEARCH_CONNECT_TIMEOUT="2",
        PYTHONPATH=str(REPO),
    )
    return env


def _run_study(name: str, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """`hpsearch run` with the URLs in its environment; its output, worker argv and logs."""
    # --keep-logs: a successful run removes its worker logs, which this test reads.
    argv = [sys.executable, "-m", "search", "run", "--name", name, "--dataset", "wine",
            "--epochs", "2", "--trials", "3", "--workers", "2", "--no-progress",
            "--keep-logs"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    cmdlines: list[str] = []
    while proc.poll() is None:  # the workers' argv is readable by every user of the host (ps)
        cmdlines += _cmdlines_of_children(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, output
    assert any("worker" in c for c in cmdlines), "no worker process was seen"
    places = {f"{name}: cli output": output, f"{name}: worker argv": "\n".join(cmdlines)}
    log_dir = re.search(r"logs in (\S+)", output)
    assert log_dir, output
    logs = sorted(Path(log_dir.group(1)).glob("*.log"))
    assert logs
    for log in logs:
        places[f"{name}: log {log.name}"] = log.read_text(errors="replace")
    return places


def _optuna_places(plain_storage: str, name: str) -> dict[str, str]:
    """The study's and every trial's user and system attributes."""
    study = optuna.load_study(study_name=name, storage=plain_storage)
    trials = study.get_trials()
    assert len([t for t in trials if t.state.is_finished()]) >= 3
    rdb = study._storage  # system attrs are only public on the storage in Optuna 5
    study_id = rdb.get_study_id_from_name(name)
    attrs = [rdb.get_study_user_attrs(study_id), rdb.get_study_system_attrs(study_id)]
    stored_uri = attrs[0]["hpsearch_spec"]["tracking_uri"]
    return {
        f"{name}: study attrs": json.dumps(attrs, default=str),
        f"{name}: trial attrs": json.dumps(
            [[t.user_attrs, t.system_attrs, t.params] for t in trials], default=str
        ),
        f"{name}: stored tracking_uri": stored_uri,
    }


def _mlflow_places(uri: str, name: str, tmp_path: Path) -> dict[str, str]:
    """The runs really went through the URL with the canary; then everything in them."""
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len([r for r in runs if r.data.tags.get("hpsearch.role") == "trial"]) >= 3
    places = {}
    for run in runs:
        places[f"{name}: run {run.info.run_name}"] = json.dumps(
            [run.data.params, run.data.tags, run.info.artifact_uri]
        )
        local = client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id))
        for path in Path(local).rglob("*"):
            if path.is_file():
                text = path.read_bytes().decode(errors="replace")
                places[f"{name}: artifact {path.name} of {run.info.run_name}"] = text
    return places


def _pg_dump(url: str, must_hold: str) -> str:
    database = url.split("?", 1)[0].rsplit("/", 1)[1]
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert must_hold in dump.stdout  # the dump really holds the study
    return dump.stdout


def _spool_places(spool: Path) -> dict[str, str]:
    return {
        f"spool {path.name}": path.read_text(errors="replace")
        for path in (spool.rglob("*") if spool.exists() else [])
        if path.is_file()
    }


def _leaks(places: dict[str, str], canaries: list[str]) -> list[tuple[str, str]]:
    return [(where, c) for where, text in places.items() for c in canaries if c in text]


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
    places = _run_study("canary", tmp_path, _env(storage, tracking, spool))
    places |= _optuna_places(plain_storage, "canary")
    places["pg_dump"] = _pg_dump(plain_storage, "hpsearch_spec")
    places |= _mlflow_places(server.uri, "canary", tmp_path)
    places["mlflow store"] = (
        Path(server.backend_uri.removeprefix("sqlite:///")).read_bytes().decode(errors="replace")
    )
    places |= _spool_places(spool)
    leaks = [where for where, text in places.items() if CANARY in text]
    assert leaks == [], f"the password leaked into: {leaks}"


@pytest.mark.slow
def test_canaries_in_every_url_form_the_drivers_accept_never_leave(
    tmp_path: Path,
    postgres_db: Callable[[], str],
    mlflow_server_factory: Callable[..., MlflowServer],
) -> None:
    """Three studies, each with other forms: a query-parameter password and a raw `@` in the
    tracking password; percent-encoded userinfo in both; the psycopg driver with the host and
    `sslpassword` in the query, tracking to a PostgreSQL database with `?password=`."""
    plain, mlflow_db, direct_db = postgres_db(), postgres_db(), postgres_db()
    server = mlflow_server_factory(mlflow_db)  # its backend is PostgreSQL: pg_dump it too
    port = server.uri.rsplit(":", 1)[1]
    database = plain.rsplit("/", 1)[1]
    c = {k: _canary(k) for k in ("q", "at1", "at2", "enc1", "enc2", "ssl", "qpw", "direct")}
    forms = {
        "query-and-raw-at": (
            f"{plain}?password={c['q']}",
            f"http://hp:{c['at1']}@{c['at2']}@127.0.0.1:{port}",
            server.uri,
        ),
        "percent-encoded": (
            _with_password(plain, f"{c['enc1']}%40%2F%3A%20x"),
            f"http://hp:{c['enc2']}%40%3A@127.0.0.1:{port}",
            server.uri,
        ),
        "driver-options": (
            f"postgresql+psycopg://postgres@/{database}?host=127.0.0.1&port=5432"
            f"&sslpassword={c['ssl']}&password={c['qpw']}",
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{direct_db.rsplit('/', 1)[1]}"
            f"?password={c['direct']}",
            direct_db.replace("postgresql://", "postgresql+psycopg://"),
        ),
    }
    spool = tmp_path / "spool"
    places: dict[str, str] = {}
    for name, (storage, tracking, plain_tracking) in forms.items():
        cwd = tmp_path / name
        cwd.mkdir()
        places |= _run_study(name, cwd, _env(storage, tracking, spool))
        places |= _optuna_places(plain, name)
        # Stored: the address (a user name is no secret), nothing else.
        stored = places[f"{name}: stored tracking_uri"].replace("//hp@", "//")
        assert stored == plain_tracking, stored
        places |= _mlflow_places(plain_tracking, name, cwd)
    places["pg_dump optuna"] = _pg_dump(plain, "hpsearch_spec")
    places["pg_dump mlflow server"] = _pg_dump(mlflow_db, "hpsearch.role")
    places["pg_dump mlflow database"] = _pg_dump(direct_db, "hpsearch.role")
    places |= _spool_places(spool)
    assert _leaks(places, list(c.values())) == []


def _refused_forms(tmp_path: Path) -> dict[str, tuple[list[str], str, int]]:
    """(argv after `run`, the canary, the exit code) for URLs that cannot be used."""
    closed = free_port()  # bound and released: nobody listens there
    c = {k: _canary(k) for k in ("at1", "at2", "q", "v6", "my", "tok", "v6t")}
    pg = "postgresql://postgres"
    return {
        "raw-at-in-storage-password": (
            ["--storage", f"{pg}:{c['at1']}@{c['at2']}@127.0.0.1:5432/x"],
            c["at2"],
            2,
        ),
        "query-password-unreachable": (
            ["--storage", f"{pg}@127.0.0.1:{closed}/x?password={c['q']}"],
            c["q"],
            1,
        ),
        "ipv6-unreachable": (["--storage", f"{pg}:{c['v6']}@[::1]:{closed}/x"], c["v6"], 1),
        "mysql-pymysql": (["--storage", f"mysql+pymysql://hp:{c['my']}@127.0.0.1/x"], c["my"], 2),
        "tracking-token-query": (
            ["--tracking-uri", f"http://127.0.0.1:{closed}/?token={c['tok']}"],
            c["tok"],
            1,
        ),
        "tracking-ipv6-userinfo": (
            ["--tracking-uri", f"http://hp:{c['v6t']}@[::1]:{closed}"],
            c["v6t"],
            1,
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "form",
    [
        "raw-at-in-storage-password",
        "query-password-unreachable",
        "ipv6-unreachable",
        "mysql-pymysql",
        "tracking-token-query",
        "tracking-ipv6-userinfo",
    ],
)
def test_a_refused_or_unreachable_url_hides_its_canary_in_the_error(
    tmp_path: Path, form: str
) -> None:
    argv, canary, code = _refused_forms(tmp_path)[form]
    env = _env("", "", tmp_path / "spool")
    for name in ("HPSEARCH_STORAGE", "MLFLOW_TRACKING_URI"):
        env.pop(name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    full = [sys.executable, "-m", "search", "run", "--name", "refused", "--dataset", "wine",
            "--epochs", "1", "--trials", "1", "--no-progress", *argv]  # fmt: skip
    proc = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    assert out.strip().splitlines()[-1].startswith("hpsearch: error: "), out
    assert canary not in out, out
    assert list(cwd.iterdir()) == [], "something was written"
