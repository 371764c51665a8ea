"""`hpsearch run` starts its workers while it creates their study: they import behind a start
gate that opens once the study exists. A study that cannot be created leaves no worker and no
file behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from search import api
from search.errors import StudyError
from search.worker import START_GATE_ENV
from tests.support.study import ObservedStart, request, sqlite_url, worker_env


def test_the_workers_are_running_while_the_study_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    observed = ObservedStart(monkeypatch)
    seen: list[int] = []
    real = api.create_study

    def create_study(*args: Any, **kwargs: Any) -> Any:
        seen.extend(observed.alive())
        assert not Path(tmp_path / "study.db").exists()  # the workers wrote nothing yet
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "create_study", create_study)
    monkeypatch.setenv("HPSEARCH_TORCH_THREADS", "1")
    run = api.run_study(
        request("early", n_trials=4), sqlite_url(tmp_path), workers=2, progress=False
    )
    assert len(seen) == 2
    assert run.ok and run.finished == 4
    assert run.outcome is not None and run.outcome.exit_codes == [0, 0]
    assert not observed.alive()


def test_a_study_that_cannot_be_created_stops_its_waiting_workers_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    observed = ObservedStart(monkeypatch)
    seen: list[int] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        seen.extend(observed.alive())
        raise StudyError("refused for the test")

    monkeypatch.setattr(api, "create_study", refuse)
    with pytest.raises(StudyError, match="refused for the test"):
        api.run_study(request("refused"), sqlite_url(tmp_path), workers=2, progress=False)
    assert len(seen) == 2
    assert not observed.alive()
    assert not list(tmp_path.iterdir())
    assert not observed.early[0].log_dir.exists()


def test_a_worker_whose_gate_closes_without_opening_exits_0_and_creates_no_storage(
    tmp_path: Path,
) -> None:
    env = worker_env(**{START_GATE_ENV: "untracked", "HPSEARCH_STORAGE": sqlite_url(tmp_path)})
    proc = subprocess.run(
        [sys.executable, "-m", "search", "worker", "never-created"],
        input=b"", env=env, cwd=tmp_path, capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert not list(tmp_path.iterdir())
