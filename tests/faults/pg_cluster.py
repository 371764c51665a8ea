"""A PostgreSQL cluster of a test's own (initdb on a free port): for settings the shared server
must not get (a tiny `max_connections`) and for restarts that must not cut other tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import free_port


class Cluster:
    def __init__(self, bin_dir: Path, data: Path, options: str, log: Path) -> None:
        self.bin_dir, self.data, self.options, self.log = bin_dir, data, options, log

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args),
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        self.pg_ctl("-o", self.options, "-l", str(self.log), "-w", "start")

    def restart(self) -> None:
        """Every connection cut at once, as a crash or a failover cuts them."""
        self.pg_ctl("-m", "immediate", "-o", self.options, "-l", str(self.log), "-w", "restart")

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "stop")


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        if os.environ.get("HPSEARCH_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL's initdb is required but not installed")
        pytest.skip("no initdb: PostgreSQL server binaries are not installed")
    return found[-1].parent


def _as_postgres(*cmd: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@contextmanager
def cluster(max_connections: int = 100) -> Iterator[str]:
    """A fresh cluster with a database `hp`; yields its URL (the `Cluster` is `url.cluster`)."""
    bin_dir = _binaries()
    root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-", dir="/tmp"))
    data = root / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--no-sync"),
        check=True, capture_output=True,
    )  # fmt: skip
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
               f"-c max_connections={max_connections} -c superuser_reserved_connections=0 "
               "-c fsync=off")  # fmt: skip
    handle = Cluster(bin_dir, data, options, root / "log")
    handle.start()
    try:
        admin = sa.create_engine(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE hp"))
        admin.dispose()
        url = ClusterURL(f"postgresql://postgres@127.0.0.1:{port}/hp")
        url.cluster = handle
        yield url
    finally:
        with suppress(subprocess.CalledProcessError):
            handle.stop()
        shutil.rmtree(root, ignore_errors=True)


class ClusterURL(str):
    """A database URL that also knows its cluster (to restart it)."""

    cluster: Cluster
