"""`hpsearch proxy`: PgBouncer in front of the study's PostgreSQL, for more workers than it has
connections.

A PostgreSQL server admits `max_connections` clients (100 by default), and an MLflow server's
pool takes its share; a rack of workers, each holding at least one connection, runs into "too
many clients already". PgBouncer (an existing, widely deployed pooler, Debian's `pgbouncer`)
multiplexes any number of client connections over a few server connections.

Transaction pooling keeps every guarantee hpsearch relies on, because every statement the
worker path sends lives inside one transaction: the claim (`FOR UPDATE SKIP LOCKED`), the study
row lock that serializes trial creation, heartbeats and results. No session state is used (no
session advisory lock, no `SET`, no prepared statement: hpsearch turns off psycopg's automatic
server-side prepare, which transaction pooling before PgBouncer 1.21 does not support).
Optuna's gRPC storage proxy was the other candidate; it serves only Optuna's storage API, one
call per parameter and attribute, which is exactly the per-trial cost the job-queue path removes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from search.errors import StudyError
from search.redact import remember_url, strip_secrets
from search.storage import redact_url

PGBOUNCER_ENV = "HPSEARCH_PGBOUNCER"  # the pgbouncer binary, if not on PATH
DEFAULT_LISTEN = "127.0.0.1:6432"


@dataclass(frozen=True)
class ProxySettings:
    upstream: str  # postgresql://user[:password]@host:port[/db]
    listen_host: str = "127.0.0.1"
    listen_port: int = 6432
    pool_size: int = 20  # server connections per (database, user)
    max_clients: int = 10000

    def __post_init__(self) -> None:
        remember_url(self.upstream)
        url = self.upstream_url
        if url.get_backend_name() != "postgresql":
            raise StudyError(
                f"`--upstream` must be a postgresql:// URL, but got {redact_url(self.upstream)!r}"
            )
        if not url.username:
            raise StudyError(
                "`--upstream` must name the database user (postgresql://USER@host:port), "
                f"but got {redact_url(self.upstream)!r}"
            )
        for name in ("listen_port", "pool_size", "max_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StudyError(f"`{name}` must be an integer >= 1, but got {value!r}")

    @property
    def upstream_url(self) -> URL:
        try:
            return make_url(self.upstream)
        except Exception:
            raise StudyError(
                "`--upstream` must be a URL such as postgresql://user@host:5432, but got "
                f"{redact_url(self.upstream)!r}"
            ) from None

    def client_url(self, database: str | None = None) -> str:
        """What workers use as their storage: the same user and database, through the pooler.
        The password (if any) stays out of it: give it to workers by their environment."""
        url = self.upstream_url
        db = database or url.database or "postgres"
        client = url.set(host=self.listen_host, port=self.listen_port, database=db)
        return strip_secrets(client.render_as_string(hide_password=False))


def pgbouncer_binary() -> str:
    found = os.environ.get(PGBOUNCER_ENV) or shutil.which("pgbouncer")
    for candidate in (found, "/usr/sbin/pgbouncer"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise StudyError(
        "PgBouncer is not installed: install it (Debian/Ubuntu: `apt-get install pgbouncer`) "
        f"or set {PGBOUNCER_ENV} to its path"
    )


def write_config(settings: ProxySettings, directory: Path) -> Path:
    """pgbouncer.ini and its user list in `directory` (mode 0700: the list holds a password)."""
    url = settings.upstream_url
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    users = directory / "userlist.txt"
    password = url.password or ""
    users.write_text(f'"{_quote(url.username or "")}" "{_quote(str(password))}"\n')
    users.chmod(0o600)
    # The client sends the password PgBouncer also logs in with (plain text in the 0600 file).
    auth = "md5" if password else "trust"
    host, port = url.host or "127.0.0.1", url.port or 5432
    lines = [
        "[databases]",
        # Any database name a client asks for, on the upstream server.
        f"* = host={host} port={port}",
        "",
        "[pgbouncer]",
        f"listen_addr = {settings.listen_host}",
        f"listen_port = {settings.listen_port}",
        f"unix_socket_dir = {directory}",
        f"auth_type = {auth}",
        f"auth_file = {users}",
        # Transaction pooling: a server connection serves a client for one transaction.
        "pool_mode = transaction",
        f"default_pool_size = {settings.pool_size}",
        f"max_client_conn = {settings.max_clients}",
        "server_reset_query =",
        # SQLAlchemy and psycopg send these at connect; PgBouncer must not refuse them.
        "ignore_startup_parameters = extra_float_digits,options,application_name",
        f"pidfile = {directory / 'pgbouncer.pid'}",
        f"logfile = {directory / 'pgbouncer.log'}",
        "log_connections = 0",
        "log_disconnections = 0",
    ]
    config = directory / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    return config


def _quote(text: str) -> str:
    return text.replace('"', '""')


def command(config: Path) -> list[str]:
    cmd = [pgbouncer_binary(), str(config)]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: drop to the `postgres` user (it then needs to read
        # the config directory, which is handed over to it).
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise StudyError(
                "PgBouncer refuses to run as root and there is no `postgres` user to run it "
                "as: start `hpsearch proxy` as an ordinary user"
            ) from None
        for path in [config.parent, *config.parent.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        cmd += ["-u", "postgres"]
    return cmd


@contextmanager
def running_proxy(settings: ProxySettings) -> Iterator[subprocess.Popen[bytes]]:
    """PgBouncer as a child process for the block's duration (tests, `hpsearch run`)."""
    import socket
    import time

    directory = Path(tempfile.mkdtemp(prefix="hpsearch-pgbouncer-"))
    proc = subprocess.Popen(
        command(write_config(settings, directory)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                log = directory / "pgbouncer.log"
                tail = log.read_text()[-1500:] if log.exists() else ""
                raise StudyError(f"PgBouncer exited at start: {err.strip()} {tail.strip()}")
            try:
                with socket.create_connection((settings.listen_host, settings.listen_port), 1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise StudyError(
                        f"PgBouncer did not listen on {settings.listen_host}:"
                        f"{settings.listen_port} within 15 s"
                    ) from None
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # PgBouncer's "safe shutdown"
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def run_proxy(settings: ProxySettings) -> int:
    """`hpsearch proxy`: PgBouncer in the foreground until it is stopped; its exit code."""
    directory = Path(tempfile.mkdtemp(prefix="hpsearch-pgbouncer-"))
    try:
        proc = subprocess.Popen(command(write_config(settings, directory)))
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
