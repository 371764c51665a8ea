"""`hpsearch proxy`: PgBouncer in front of the study's PostgreSQL (see `search.proxy`)."""

from __future__ import annotations

import argparse
import os
import sys

from search.errors import StudyError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "proxy",
        help="pool PostgreSQL connections for many workers (PgBouncer, transaction mode)",
        description=(
            "Run PgBouncer in front of PostgreSQL so that any number of workers share a few "
            "server connections. Point workers' --storage / HPSEARCH_STORAGE at the URL it "
            "prints. The upstream URL is read from --upstream or $HPSEARCH_PROXY_UPSTREAM."
        ),
    )
    parser.add_argument(
        "--upstream",
        help="the PostgreSQL server: postgresql://USER[:PASSWORD]@HOST:PORT "
        "(default: $HPSEARCH_PROXY_UPSTREAM)",
    )
    parser.add_argument("--listen", default="127.0.0.1:6432", help="HOST:PORT to listen on")
    parser.add_argument(
        "--pool-size", type=int, default=20, help="server connections per database and user"
    )
    parser.add_argument("--max-clients", type=int, default=10000, help="client connections")
    parser.set_defaults(handler=cmd_proxy)


def cmd_proxy(args: argparse.Namespace) -> int:
    from search.proxy import ProxySettings, run_proxy

    upstream = args.upstream or os.environ.get("HPSEARCH_PROXY_UPSTREAM")
    if not upstream:
        raise StudyError("`--upstream` (or $HPSEARCH_PROXY_UPSTREAM) is required")
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise StudyError(f"`--listen` must be HOST:PORT, but got {args.listen!r}")
    settings = ProxySettings(
        upstream,
        listen_host=host or "127.0.0.1",
        listen_port=int(port),
        pool_size=args.pool_size,
        max_clients=args.max_clients,
    )
    print(
        f"hpsearch proxy: PgBouncer on {args.listen}, transaction pooling, "
        f"{settings.pool_size} server connections; workers use "
        f"--storage {settings.client_url('DATABASE')}",
        file=sys.stderr,
        flush=True,
    )
    return run_proxy(settings)
