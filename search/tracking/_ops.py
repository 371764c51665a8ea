"""Tracking operations as plain JSON-able dicts, and the one function that sends them.

A trial's logging is a short list of operations: create the run, log a batch (or two), upload
artifacts, terminate. The same dicts are sent live and, when the server is down, written to
the spool and sent later; keeping them plain data makes both paths one code path. An op is
only dropped from a list after the server acknowledged it, so a replay never resends a batch
that was known to arrive (a batch whose reply was lost in a timeout can still arrive twice).
"""

from __future__ import annotations

import base64
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from search.redact import redact
from search.tracking._env import describe

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_logger = logging.getLogger("search.tracking")

Op = dict[str, Any]
MetricPoint = tuple[str, float, int, int]  # (key, value, timestamp in ms, step)

# MLflow's limits per log_batch request (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250

ARTIFACT_ERROR_TAG = "hpsearch.artifact_error"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


def now_ms() -> int:
    return int(time.time() * 1000)


def check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"`status` must be one of {list(RUN_STATUSES)}, but got {status=}")


def clean_param(value: Any) -> str:
    return redact(str(value))[:MAX_PARAM_VALUE_LENGTH]


def clean_tag(value: Any) -> str:
    return redact(str(value))[:MAX_TAG_VALUE_LENGTH]


def clean_key(key: Any) -> str:
    return redact(str(key))[:MAX_KEY_LENGTH]


def create_op(start_time: int, tags: dict[str, str]) -> Op:
    return {"op": "create_run", "start_time": start_time, "tags": tags}


def terminate_op(status: str, end_time: int) -> Op:
    return {"op": "terminate", "status": status, "end_time": end_time}


def artifact_op(path: str, data: bytes | str) -> Op:
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        raise ValueError(f"an artifact path must be relative without `..`, but got {path=}")
    if isinstance(data, str):
        payload = redact(data).encode()
    else:
        # Text given as bytes (a JSON dump) is redacted too; binary (a PNG) cannot hold a URL.
        try:
            payload = redact(data.decode("utf-8")).encode()
        except UnicodeDecodeError:
            payload = bytes(data)
    return {"op": "artifact", "path": path, "data": base64.b64encode(payload).decode("ascii")}


def batch_ops(params: dict[str, str], metrics: list[MetricPoint], tags: dict[str, str]) -> list[Op]:
    """Split one payload into log_batch ops within MLflow's per-request limits."""
    param_items = list(params.items())
    tag_items = list(tags.items())
    ops: list[Op] = []
    m = 0
    while param_items or tag_items or m < len(metrics) or not ops:
        chunk_params = dict(param_items[:MAX_PARAMS_PER_BATCH])
        del param_items[:MAX_PARAMS_PER_BATCH]
        chunk_tags = dict(tag_items[:MAX_TAGS_PER_BATCH])
        del tag_items[:MAX_TAGS_PER_BATCH]
        room = min(
            MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(chunk_params) - len(chunk_tags)
        )
        chunk_metrics = [list(p) for p in metrics[m : m + room]]
        m += room
        if chunk_params or chunk_tags or chunk_metrics:
            ops.append(
                {
                    "op": "log_batch",
                    "params": chunk_params,
                    "metrics": chunk_metrics,
                    "tags": chunk_tags,
                }
            )
        elif not ops:
            break
    return ops


def nonfinite_keys(metrics: list[MetricPoint]) -> list[str]:
    return sorted({key for key, value, _, _ in metrics if not math.isfinite(value)})


@dataclass
class RunTarget:
    """The run that ops apply to; `run_id` is None until a `create_run` op succeeded."""

    experiment_id: str
    run_id: str | None = None
    artifact_uri: str | None = None
    artifact_errors: list[str] = field(default_factory=list)


def execute(client: MlflowClient, target: RunTarget, op: Op) -> None:
    """Send one op. Raises what MLflow raises; the caller decides between spool and drop."""
    from mlflow.entities import Metric, Param, RunTag

    kind = op["op"]
    if kind == "create_run":
        run = client.create_run(
            target.experiment_id,
            start_time=op["start_time"],
            tags=op["tags"],
            run_name=op["tags"].get("mlflow.runName"),
        )
        target.run_id = run.info.run_id
        target.artifact_uri = run.info.artifact_uri
        return
    if target.run_id is None:
        raise RuntimeError(f"op {kind!r} needs a run, but the run was never created")
    if kind == "log_batch":
        client.log_batch(
            target.run_id,
            metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in op["metrics"]],
            params=[Param(k, v) for k, v in op["params"].items()],
            tags=[RunTag(k, v) for k, v in op["tags"].items()],
            synchronous=True,
        )
    elif kind == "artifact":
        _upload_artifact(client, target, op)
    elif kind == "terminate":
        client.set_terminated(target.run_id, status=op["status"], end_time=op["end_time"])
    else:
        raise ValueError(f"unknown tracking op {kind!r}")


def _upload_artifact(client: MlflowClient, target: RunTarget, op: Op) -> None:
    """Upload; if the store refuses but the server answers, skip it with a warning tag.

    An artifact store can fail on its own (a full or read-only volume) while the tracking
    server works: then metrics and params must be kept and the trial must not fail. Whether
    the server is up is decided by the next request: the warning tag itself. If that fails
    too, the server is down and the error propagates, so the artifact stays spooled.
    """
    from mlflow.entities import RunTag

    try:
        _put_artifact(client, target, op["path"], base64.b64decode(op["data"]))
    except Exception as exc:
        target.artifact_errors.append(f"{op['path']}: {describe(exc)}")
        value = clean_tag(" | ".join(target.artifact_errors))
        assert target.run_id is not None
        tag = [RunTag(ARTIFACT_ERROR_TAG, value)]
        try:
            client.log_batch(target.run_id, tags=tag, synchronous=True)
        except Exception:
            # A server that refused an upload often closes that connection: the first
            # request after it can meet a reset socket. One more try tells down from rude.
            client.log_batch(target.run_id, tags=tag, synchronous=True)
        _logger.warning("artifact %s skipped for run %s: %s", op["path"], target.run_id, value)


def _put_artifact(client: MlflowClient, target: RunTarget, path: str, data: bytes) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if target.artifact_uri is None:
        assert target.run_id is not None
        target.artifact_uri = client.get_run(target.run_id).info.artifact_uri
    repo = get_artifact_repository(target.artifact_uri, tracking_uri=client.tracking_uri)
    relative = PurePosixPath(path)
    with tempfile.TemporaryDirectory(prefix="hpsearch-artifact-") as tmp:
        local = Path(tmp) / relative.name
        local.write_bytes(data)
        parent = str(relative.parent)
        # cast: mlflow leaves ArtifactRepository.log_artifact unannotated
        cast(Any, repo).log_artifact(str(local), artifact_path=None if parent == "." else parent)
