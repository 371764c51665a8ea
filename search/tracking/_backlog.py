"""The runs waiting to be sent to MLflow, as the spool directory of a folder holds them.

A live worker keeps at most `MAX_RUNS_BEHIND` finished runs in memory (see `_tracker`); what
reaches the disk is its spool: the write-ahead file of each run being sent (claimed by its
worker), files a killed worker left behind (claimed by a process that no longer exists), and
files of runs the server did not take while it was down. Every study command of the CLI
replays what nobody is sending (`replay_backlog`) before it does its own work, so a backlog
left by a kill is sent by the next `hpsearch` command in that folder; `hpsearch status` says
how many runs are still waiting.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from search.redact import strip_secrets
from search.tracking._spool import SUFFIX, release_stale_claims, replay_files
from search.tracking._tracker import DEFAULT_SPOOL_DIR

SPOOL_ENV = "HPSEARCH_SPOOL_DIR"


def spool_dir() -> Path:
    """The spool directory workers started here use: `$HPSEARCH_SPOOL_DIR`, else
    `./hpsearch-spool`."""
    return Path(os.environ.get(SPOOL_ENV) or DEFAULT_SPOOL_DIR)


@dataclass(frozen=True)
class Backlog:
    """Runs in the spool: `waiting` for a sender (the next command or worker replays them),
    `in_flight` claimed by a live process (being sent now)."""

    waiting: int = 0
    in_flight: int = 0

    @property
    def total(self) -> int:
        return self.waiting + self.in_flight


def count_backlog(directory: Path) -> Backlog:
    """The spool's runs; a claim whose process is gone counts as waiting (it is released)."""
    if not directory.is_dir():
        return Backlog()
    release_stale_claims(directory)  # a dead process's claim: waiting again
    waiting = in_flight = 0
    for path in directory.iterdir():
        if path.name.startswith(".") or path.name.endswith(".bad"):
            continue  # a file being written, or one set aside as unreadable
        if path.name.endswith(SUFFIX):
            waiting += 1
        elif SUFFIX + ".claimed-" in path.name:
            in_flight += 1
    return Backlog(waiting, in_flight)


def _spooled_uris(directory: Path) -> set[str]:
    uris = set()
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            with open(path, encoding="utf-8") as f:
                uris.add(str(json.loads(f.readline()).get("tracking_uri") or ""))
        except (OSError, ValueError):
            continue  # claimed meanwhile, or not a spool file
    uris.discard("")
    return uris


def replay_backlog(directory: Path, own_uri: str | None = None) -> int:
    """Send the runs nobody is sending; returns how many were sent whole.

    A file names its server without its secrets: it is sent with `own_uri` (this command's
    `--tracking-uri` or `$MLFLOW_TRACKING_URI`) when that is the same server, else with the
    stored address when it carries no user (a local store, an open server). Files for a server
    that needs credentials this command lacks wait for one that has them (sent with none, their
    ops would be refused and dropped).
    """
    from search.tracking._env import make_client

    if not directory.is_dir():
        return 0
    release_stale_claims(directory)  # a killed worker's files: claimed by a dead process
    sent = 0
    for stored in sorted(_spooled_uris(directory)):
        if own_uri and strip_secrets(own_uri) == strip_secrets(stored):
            uri = own_uri
        elif not _names_a_user(stored):
            uri = stored
        else:
            continue
        results = replay_files(make_client(uri), uri, directory)
        sent += sum(1 for r in results if r.complete)
    return sent


def _names_a_user(uri: str) -> bool:
    """Whether an address names a user (whose password was stripped) or holds a masked part."""
    authority = uri.split("://", 1)[-1].split("/", 1)[0]
    return "@" in authority or "***" in uri
