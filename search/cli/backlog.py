"""The study verbs' first step: send the MLflow runs a stopped worker left in this folder.

A worker killed mid-study leaves the write-ahead spool files of the runs it was sending (and a
tracking outage leaves the runs the server did not take); the next `hpsearch` study command in
that folder sends them before its own work, and `hpsearch status` says how many are waiting.
"""

from __future__ import annotations

import argparse
import logging
import os


def replay_backlog(args: argparse.Namespace) -> None:
    """Send the MLflow runs a killed worker (or a tracking outage) left in this folder's
    spool, before the verb's own work; `args.replayed` counts them (`status` prints it)."""
    from search.tracking import replay_backlog as replay
    from search.tracking import spool_dir

    directory = spool_dir()
    if not directory.is_dir():
        return
    own = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    try:
        args.replayed = replay(directory, own)
    except Exception as exc:  # the spool stays on disk for the next command or worker
        from search.redact import redact

        logging.getLogger("search.tracking").warning(
            "could not send the spooled MLflow runs in %s: %s", directory, redact(str(exc))
        )


def print_backlog(replayed: int) -> None:
    from search.tracking import count_backlog, spool_dir

    directory = spool_dir()
    left = count_backlog(directory)
    if replayed:
        print(f"MLflow: sent {replayed} run(s) that a stopped worker left in {directory}")
    line = f"MLflow runs waiting to be sent: {left.total}"
    if left.in_flight:
        line += f" ({left.in_flight} being sent by running workers)"
    if left.waiting:
        line += (
            f"; {left.waiting} in {directory} wait for the tracking server (sent by the next "
            "hpsearch command here once it answers)"
        )
    print(line)
