"""Where MLflow lives (URIs), how its client behaves on a dead server, and which errors pass.

MLflow's HTTP client retries a refused connection 7 times with exponential backoff and waits
120 s for a reply by default: minutes before a worker learns the server is down, while the
trial it just trained waits. `configure_client_env` lowers these defaults (only where the user
has not set them) so a dead server fails in seconds and the payload goes to the spool instead.
It is called by every public entry point of `search.tracking`, never at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from search.redact import redact, remember_url

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_logger = logging.getLogger("search.tracking")

# Names from mlflow/environment_variables.py (MLflow 3.x). setdefault: a user's value wins.
CLIENT_ENV_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # `set_terminated` otherwise GETs the run only to print its URL on stdout: one extra
    # request per trial, and noise in the worker's log.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# MLflow error codes that mean "the request itself is wrong": sending it again cannot help,
# so such an operation is dropped (with a warning) instead of being spooled forever.
PERMANENT_ERROR_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
        "BAD_REQUEST",
        "INVALID_REQUEST",
        "MALFORMED_REQUEST",
        "FEATURE_DISABLED",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "NOT_FOUND",
    }
)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def configure_client_env() -> None:
    for name, value in CLIENT_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def make_client(tracking_uri: str) -> MlflowClient:
    remember_url(tracking_uri)  # its secrets are hidden in whatever this process writes
    configure_client_env()
    from mlflow.tracking import MlflowClient

    from search.tracking._local_store import prepare_local_store

    prepare_local_store(tracking_uri)  # a local store: copied from a migrated template

    return MlflowClient(tracking_uri=tracking_uri)


def holds_run(tracking_uri: str, run_id: str) -> bool:
    """Whether the server at `tracking_uri` has the run `run_id` (False when unreachable)."""
    try:
        make_client(tracking_uri).get_run(run_id)
    except Exception as exc:  # unreachable, refused, no such run: not that server
        _logger.info("%s does not hold run %s: %s", redact(tracking_uri), run_id, describe(exc))
        return False
    return True


def is_permanent(exc: BaseException) -> bool:
    """True when the server understood the request and refused it (retrying cannot help)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in PERMANENT_ERROR_CODES


def describe(exc: BaseException) -> str:
    """One redacted line for a tag or a log: MLflow's messages embed the full request URL."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text)[:500]


def default_tracking_uri(storage_url: str) -> tuple[str, str | None]:
    """The MLflow tracking URI (and artifact location) a study on `storage_url` uses.

    `MLFLOW_TRACKING_URI` wins (artifact location None: the server decides). Otherwise an
    embedded SQLite store `mlflow.db` with artifacts in `mlartifacts/`, beside the Optuna
    SQLite file, or in the working directory for any other storage. A PostgreSQL Optuna
    storage is never reused for MLflow: both keep an `alembic_version` table and would clash.
    """
    from_env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if from_env:
        return from_env, None
    directory = Path.cwd()
    prefix = "sqlite:///"
    if storage_url.startswith(prefix):
        db_path = storage_url[len(prefix) :].split("?", 1)[0]
        if db_path and db_path != ":memory:":
            directory = Path(db_path).expanduser().resolve().parent
    elif storage_url:
        _logger.warning(
            "%s is not set: tracking to a local SQLite store in %s; workers on other hosts "
            "will not share it (storage %s)",
            TRACKING_URI_ENV,
            directory,
            redact(storage_url),
        )
    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    return tracking_uri, (directory / "mlartifacts").as_uri()
