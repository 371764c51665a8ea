"""The spool: operations a down tracking server could not take, kept on disk for later.

One JSON-lines file per run: a header line (which server, experiment, run, trial) and one line
per pending op, in order. Files are written whole (temp file + rename), so a reader never sees
half a file. A replaying process claims a file by renaming it (atomic, so two workers sharing
a spool directory never replay the same file), sends its ops in order and rewrites the file
after each acknowledged op, so a crash mid-replay resends at most the op in flight.

The header keeps the tracking URI with its secrets *removed* (`search.redact.strip_secrets`: no
password or token on disk); a file is replayed by a client whose URI has the same address.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.redact import strip_secrets
from search.tracking._env import describe, is_permanent
from search.tracking._ops import Op, RunTarget, execute

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_logger = logging.getLogger("search.tracking")

FORMAT = "hpsearch-spool/1"
SUFFIX = ".jsonl"
_CLAIM = ".claimed-"


@dataclass(frozen=True)
class ReplayedRun:
    """A spooled run that was (re)sent: store `run_id` on the Optuna trial if it was None."""

    study: str
    trial_number: int | None
    attempt: int | None
    run_id: str | None
    created: bool  # the run itself was created by this replay (the server was down at start)
    complete: bool  # every spooled op of this run is now on the server


OnRunCreated = Callable[[ReplayedRun], None]


def spool_header(
    tracking_uri: str,
    target: RunTarget,
    study: str = "",
    trial_number: int | None = None,
    attempt: int | None = None,
    supersedes: bool = False,
) -> dict[str, Any]:
    """`supersedes`: the file ends a run on someone else's behalf (a dead attempt marked
    KILLED), so it overwrites whatever status and tags the run has when it is replayed."""
    return {
        "format": FORMAT,
        "tracking_uri": strip_secrets(tracking_uri),
        "experiment_id": target.experiment_id,
        "run_id": target.run_id,
        "artifact_uri": target.artifact_uri,
        "study": study,
        "trial_number": trial_number,
        "attempt": attempt,
        "supersedes": supersedes,
    }


def write_spool_file(directory: Path, header: dict[str, Any], ops: list[Op]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{header.get('study') or 'run'}-{uuid.uuid4().hex}{SUFFIX}"
    _write(path, header, ops)
    return path


def write_claimed_spool_file(directory: Path, header: dict[str, Any], ops: list[Op]) -> Path:
    """A spool file already claimed by this process: replayed by others only once it is dead."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{header.get('study') or 'run'}-{uuid.uuid4().hex}{SUFFIX}{_claim_suffix()}"
    path = directory / name
    _write(path, header, ops)
    return path


def _write(path: Path, header: dict[str, Any], ops: list[Op]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in [header, *ops]:
            f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> tuple[dict[str, Any], list[Op]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"spool file {path} is empty")
    header = json.loads(lines[0])
    if header.get("format") != FORMAT:
        raise ValueError(f"spool file {path} has format {header.get('format')!r}, not {FORMAT}")
    return header, [json.loads(line) for line in lines[1:]]


def _claim_suffix() -> str:
    return f"{_CLAIM}{socket.gethostname()}-{os.getpid()}"


def release_stale_claims(directory: Path) -> None:
    """Give back files claimed by a process of this host that no longer exists, and remove
    the half-written temp file it may have left (killed inside `_write`: nothing relied on
    that version, the claimed file or the worker's memory held the ops)."""
    host = socket.gethostname()
    for path in directory.glob(f"*{SUFFIX}{_CLAIM}*"):
        temp = path.name.startswith(".") and path.name.endswith(".tmp")
        owner = path.name.rsplit(_CLAIM, 1)[1]
        if temp:
            owner = owner.rsplit(".", 2)[0]  # HOST-PID.RANDOM.tmp
        owner_host, _, pid = owner.rpartition("-")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        if temp:
            path.unlink(missing_ok=True)
            continue
        original = path.with_name(path.name.rsplit(_CLAIM, 1)[0])
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, original)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def pending_files(directory: Path, tracking_uri: str) -> list[Path]:
    """Unclaimed spool files for this tracking server, oldest first."""
    if not directory.is_dir():
        return []
    release_stale_claims(directory)
    wanted = strip_secrets(tracking_uri)
    found: list[tuple[float, Path]] = []
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            with open(path, encoding="utf-8") as f:
                header = json.loads(f.readline())
            # An older header holds the URI redacted (`hp:***@`): the same address.
            if strip_secrets(str(header.get("tracking_uri"))) == wanted:
                found.append((path.stat().st_mtime, path))
        except (OSError, ValueError):
            continue  # vanished (claimed meanwhile) or not ours
    return [path for _, path in sorted(found)]


def replay_files(
    client: MlflowClient,
    tracking_uri: str,
    directory: Path,
    on_run_created: OnRunCreated | None = None,
) -> list[ReplayedRun]:
    """Send every spooled file for this server; stop at the first sign the server is down."""
    results: list[ReplayedRun] = []
    for path in pending_files(directory, tracking_uri):
        claimed = path.with_name(path.name + _claim_suffix())
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            continue  # another worker claimed it first
        result, server_down = _replay_one(client, claimed, path)
        if result is not None:
            results.append(result)
            if result.created and on_run_created is not None:
                try:
                    on_run_created(result)
                except Exception:
                    _logger.exception("on_run_created callback failed for %s", result)
        if server_down:
            break
    return results


def _replay_one(
    client: MlflowClient, claimed: Path, original: Path
) -> tuple[ReplayedRun | None, bool]:
    try:
        header, ops = _read(claimed)
    except (OSError, ValueError) as exc:
        _logger.warning("unreadable spool file %s left aside: %s", claimed, describe(exc))
        os.rename(claimed, claimed.with_name(claimed.name + ".bad"))
        return None, False
    target = RunTarget(
        experiment_id=str(header["experiment_id"]),
        run_id=header.get("run_id"),
        artifact_uri=header.get("artifact_uri"),
    )
    created = False
    server_down = False
    if target.run_id is not None and not header.get("supersedes"):
        try:
            ops = _without_overwrites(client, target.run_id, ops)
        except Exception as exc:
            if not is_permanent(exc):
                _logger.warning(
                    "run %s could not be read from the tracking server, its spool file waits: %s",
                    target.run_id,
                    describe(exc),
                )
                os.rename(claimed, original)
                return None, True
            # a deleted or unknown run: the ops below are refused and dropped one by one
    while ops:
        op = ops[0]
        try:
            execute(client, target, op)
        except Exception as exc:
            if not is_permanent(exc):
                _logger.warning(
                    "spooled %s for run %s not taken, its spool file waits: %s",
                    op["op"],
                    target.run_id,
                    describe(exc),
                )
                server_down = True
                break
            _logger.warning(
                "spooled %s for run %s refused by the server, dropped: %s",
                op["op"],
                target.run_id,
                describe(exc),
            )
            if op["op"] == "create_run":
                ops = []  # nothing else can be sent without a run
                break
        else:
            if op["op"] == "create_run":
                created = True
                header["run_id"] = target.run_id
                header["artifact_uri"] = target.artifact_uri
        ops.pop(0)
        if ops:
            _write(claimed, header, ops)
    if ops:
        _write(claimed, header, ops)
        os.rename(claimed, original)
    else:
        claimed.unlink(missing_ok=True)
    result = ReplayedRun(
        study=str(header.get("study") or ""),
        trial_number=header.get("trial_number"),
        attempt=header.get("attempt"),
        run_id=target.run_id,
        created=created,
        complete=not ops,
    )
    return result, server_down


def _without_overwrites(client: MlflowClient, run_id: str, ops: list[Op]) -> list[Op]:
    """A run someone else already ended keeps its status and tags.

    The case: a worker dies between spooling its trial's end (FINISHED) and telling Optuna;
    another worker fails the trial as stale and marks the run KILLED; the dead worker's file
    is replayed later. Its metrics and artifacts are real and still go in, but its status and
    its `outcome` tag would contradict Optuna, where the attempt failed and was retried.
    """
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        return ops
    existing = set(run.data.tags)
    kept: list[Op] = []
    for op in ops:
        if op["op"] == "terminate":
            continue
        if op["op"] == "log_batch" and existing & set(op["tags"]):
            tags = {k: v for k, v in op["tags"].items() if k not in existing}
            op = {**op, "tags": tags}
        kept.append(op)
    _logger.info(
        "run %s was ended meanwhile (%s): its status and tags are kept", run_id, run.info.status
    )
    return kept
