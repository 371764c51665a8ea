"""Where a worker's MLflow requests happen: never on its training thread, never inside a storage
transaction that holds a lock. A real `mlflow server`, a real SQLite study, real training."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from search.study import create_study
from search.trial_queue import TrialQueue
from search.worker import run_worker
from tests.conftest import MlflowServer, sqlite_mlflow_server
from tests.support.study import request, sqlite_url

pytestmark = [pytest.mark.mlflow_server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from sqlite_mlflow_server(tmp_path_factory, "threads")


def test_no_mlflow_request_on_the_training_thread_or_under_a_storage_lock(
    server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.utils.rest_utils as rest

    in_lock = threading.local()
    requests: list[tuple[str, bool, str]] = []
    real_request = rest.http_request

    def recording_request(host_creds: Any, endpoint: str, method: str, *a: Any, **k: Any) -> Any:
        thread = threading.current_thread().name
        requests.append((thread, bool(getattr(in_lock, "held", False)), endpoint))
        return real_request(host_creds, endpoint, method, *a, **k)

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        # `claim` and `fail` are the operations that take the study row's lock.
        def wrapper(*a: Any, **k: Any) -> Any:
            in_lock.held = True
            try:
                return method(*a, **k)
            finally:
                in_lock.held = False

        return wrapper

    monkeypatch.setattr(rest, "http_request", recording_request)
    monkeypatch.setattr(TrialQueue, "claim", locked(TrialQueue.claim))
    monkeypatch.setattr(TrialQueue, "fail", locked(TrialQueue.fail))
    url = sqlite_url(tmp_path)
    create_study(
        request("threads", n_trials=6, no_tracking=False, tracking_uri=server.uri).resolve(url),
        url,
    )
    before = len(requests)  # creating the study's experiment and parent run happens here
    report = run_worker(url, "threads", tracking_uri=server.uri)
    assert sorted(report.trials) == list(range(6))
    during = requests[before:]
    assert len(during) >= 6 * 3, during  # every trial's run was created, logged and ended
    assert [r for r in during if r[0] == threading.main_thread().name] == []
    assert not any(held for _, held, _ in during), [r for r in during if r[1]]
    trial_threads = {t for t, _, e in during if "runs/create" in e}
    assert trial_threads and all(t.startswith("hpsearch-mlflow") for t in trial_threads)
