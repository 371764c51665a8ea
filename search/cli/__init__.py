"""`hpsearch`: a thin command line over the Python API in `search`, `spaces` and `trainers`.

Each verb lives in its own module with a `register(subparsers)` function; a verb only parses
its arguments and calls the API. Errors a user can fix exit 2 with one line, never a traceback.

Everything the process writes on stdout and stderr (results, log records, warnings, errors, a
traceback) passes through `search.redact`: the URLs of the arguments and the environment are
remembered first, so their secrets are hidden whatever the line around them looks like.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn, TextIO, cast

from search.errors import InfrastructureError, WorkerStopped, user_errors


def build_parser() -> argparse.ArgumentParser:
    # Imported here so that `hpsearch --help` stays fast and each verb owns its module.
    from search.cli import lesson_cmd, proxy_cmd, space_cmd, study_cmd, train_cmd

    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description="Random search for neural-network hyperparameters, tracked in MLflow.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (study_cmd, train_cmd, space_cmd, lesson_cmd, proxy_cmd):
        module.register(sub)
    return parser


def entry() -> NoReturn:
    """The `hpsearch` command and `python -m search`: `main`, with the garbage collector
    paused through start-up (`search.start_up_gc`) and a quick exit.

    A process that imported torch, Optuna and MLflow holds a heap of long-lived objects, and
    the interpreter's final collections walk them all: measured 3.6 s of a `hpsearch run`
    exiting on the 2-core CI machine, 0.2 s with them frozen, and paid by each worker too (the
    command waits for its workers to exit). Frozen objects are left to the process's end;
    nothing relies on their collection: storages are disposed, spool files are written whole,
    and `logging.shutdown` (atexit, still run) flushes the logs.
    """
    from search.start_up_gc import pause_for_start_up

    pause_for_start_up()
    code = main()
    gc.freeze()
    from search.prefork import exit_if_forked

    exit_if_forked(code)  # a forked worker skips the teardown of its leader's heap
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    from search.redact import RedactingStream, remember_environment, remember_url

    remember_environment()
    for arg in sys.argv[1:] if argv is None else argv:
        remember_url(arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg)
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, RedactingStream(out))
    sys.stderr = cast(TextIO, RedactingStream(err))
    try:
        return _main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with argparse's message on a usage error
    try:
        before = getattr(args, "before", None)
        if before is not None:
            before(args)  # e.g. the study verbs send a stopped worker's spooled runs first
        return int(args.handler(args) or 0)
    except WorkerStopped as exc:
        print(f"hpsearch: {exc}; its running trial was re-queued", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a process ended by it
    except InfrastructureError as exc:
        print(f"hpsearch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hpsearch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            # A bug: the traceback is for a report, printed through the redacting stream.
            traceback.print_exc()
            return 1
        print(f"hpsearch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
