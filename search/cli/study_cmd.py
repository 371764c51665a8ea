"""`hpsearch` study verbs: run, create, worker, status, trials, best, refine, retrain, ui.

Each verb parses its flags and calls one function of `search.api`. The storage URL comes from
`--storage`, else `$HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db` here; MLflow from
`--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else a local store beside the SQLite file.

`hpsearch run` with no study file runs the lesson's space on digits: 12 trials of 10 epochs
with 2 workers, then prints the best trials.

Why one module: the study verbs share one set of flags and the one `StudyRequest` built from
them; split, every flag would be declared and read in several places.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from search.cli.backlog import print_backlog, replay_backlog
from search.errors import StudyError

# `hpsearch run` / `create` with no study file: the README's first command.
# Its name is the default DATASET-SPACE one, `digits-lesson`, like every other study's.
DEFAULT_RUN = {"dataset": "digits", "epochs": 10, "trials": 12}
DEFAULT_RUN_WORKERS = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--storage", help="Optuna storage URL (env HPSEARCH_STORAGE; default sqlite:///hpsearch.db)"
    )
    common.add_argument("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI)")
    # Every study verb first sends the runs a stopped worker left in this folder's spool.
    common.set_defaults(before=replay_backlog)

    study = argparse.ArgumentParser(add_help=False)
    study.add_argument("study_file", nargs="?", type=Path, help="a study TOML file")
    study.add_argument("--name", help="study name (default: DATASET-SPACE)")
    study.add_argument("--space", help="a built-in space name or a space TOML file")
    study.add_argument("--dataset", help="a built-in dataset, synthetic:N, or a .csv/.npz path")
    study.add_argument("--target", help="the target column of a CSV")
    study.add_argument("--drop", help="columns to leave out, comma-separated: --drop name,notes")
    study.add_argument(
        "--missing-target",
        choices=["refuse", "drop"],
        help="rows whose target is missing: refuse (default) or drop them",
    )
    study.add_argument(
        "--trials", type=int, help="the budget of finished trials (at most 100000 unless forced)"
    )
    study.add_argument(
        "--force-budget",
        action="store_true",
        default=None,
        help="allow a budget above the cap of 100000 trials",
    )
    study.add_argument("--epochs", type=int, help="epochs per trial")
    study.add_argument("--seed", type=int, help="the sampler's seed")
    study.add_argument("--tiers", type=int, help="search tiers 1..N of the space")
    study.add_argument("--sampler", help="random (default), sobol or tpe; never a grid")
    study.add_argument("--metric", help="the metric optimized (default: the task's)")
    study.add_argument("--direction", choices=["maximize", "minimize"])
    study.add_argument("--pruner", choices=["none", "median", "hyperband"])
    study.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    study.add_argument(
        "--no-tracking", action="store_true", default=None, help="no MLflow (benchmarks)"
    )
    study.add_argument("--heartbeat-interval", type=int, help="seconds between heartbeats")
    study.add_argument("--grace-period", type=int, help="seconds before a silent trial is failed")

    run = sub.add_parser(
        "run",
        parents=[common, study],
        help="create or resume a study and run it with local workers",
        description="Create (or resume) a study and run it with local worker processes.",
    )
    run.add_argument("--workers", help="worker processes: a number or 'auto' (default: 2)")
    run.add_argument("--workers-per-gpu", type=int, default=1)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the worker logs of a run that met its budget (a failed run always keeps them)",
    )
    run.set_defaults(handler=cmd_run)

    create = sub.add_parser(
        "create", parents=[common, study], help="create (or resume) a study; start no worker"
    )
    create.set_defaults(handler=cmd_create)

    worker = sub.add_parser("worker", parents=[common], help="join a study as one worker")
    worker.add_argument("study", help="the study's name")
    worker.add_argument("--max-trials", type=int, help="stop after this many trials")
    # A worker replays the spool itself (after its first trial that reaches MLflow, and when
    # it stops), and one started by `hpsearch run` must reach its start gate at once.
    worker.set_defaults(handler=cmd_worker, before=None)

    status = sub.add_parser("status", parents=[common], help="studies, trial counts, best")
    status.add_argument("study", nargs="?")
    status.set_defaults(handler=cmd_status)

    trials = sub.add_parser("trials", parents=[common], help="a study's trials")
    trials.add_argument("study")
    trials.add_argument("--format", choices=["table", "csv", "json"], default="table")
    trials.set_defaults(handler=cmd_trials)

    best = sub.add_parser("best", parents=[common], help="the best configuration")
    best.add_argument("study")
    best.add_argument("--format", choices=["toml", "json"], default="toml")
    best.set_defaults(handler=cmd_best)

    refine = sub.add_parser(
        "refine", parents=[common], help="a new study on a space narrowed to the best trials"
    )
    refine.add_argument("study")
    refine.add_argument("--top", type=int, default=5, help="narrow around the best K trials")
    refine.add_argument("--name", required=True, help="the new study's name")
    refine.add_argument("--trials", type=int, help="the new budget (default: the same)")
    refine.add_argument("--seed", type=int)
    refine.set_defaults(handler=cmd_refine)

    retrain = sub.add_parser(
        "retrain", parents=[common], help="train the best config on train+validation; test it"
    )
    retrain.add_argument("study")
    retrain.set_defaults(handler=cmd_retrain)

    ui = sub.add_parser("ui", parents=[common], help="start the MLflow UI on the local store")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(handler=cmd_ui)


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _request(args: argparse.Namespace) -> Any:
    """The request the flags describe: over a study file, over an existing study named by
    `--name` (so `run --name X --trials 50` grows X as it was created), or over the demo's
    defaults. The name defaults to DATASET-SPACE (the demo: `digits-lesson`)."""
    from search import api

    if args.name is not None and not args.name.strip():
        raise StudyError(f"`--name` must be a non-empty study name, but got --name={args.name!r}")
    base = None
    if args.study_file is None and args.name and api.study_exists(args.name, args.storage):
        base = api.request_for(args.name, args.storage)
    defaults = {} if args.study_file or base else DEFAULT_RUN
    train = {
        "dataset": args.dataset or defaults.get("dataset"),
        "target": args.target,
        "drop": _names(args.drop),
        "missing_target": args.missing_target,
        # `is None`, not `or`: `--epochs 0` must reach validation, not become the default.
        "epochs": args.epochs if args.epochs is not None else defaults.get("epochs"),
        "device": args.device,
    }
    return api.load_request(
        args.study_file,
        base=base,
        name=args.name,
        space=args.space,
        tiers=args.tiers,
        n_trials=args.trials if args.trials is not None else defaults.get("trials"),
        force_budget=args.force_budget,
        seed=args.seed,
        sampler=args.sampler,
        metric=args.metric,
        direction=args.direction,
        pruner=args.pruner,
        tracking_uri=args.tracking_uri,
        no_tracking=args.no_tracking,
        heartbeat_interval_s=args.heartbeat_interval,
        grace_period_s=args.grace_period,
        train={k: v for k, v in train.items() if v is not None},
    )


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _workers(text: str | None, request: Any, has_file: bool) -> int | str:
    value: Any = text if text is not None else request.workers
    if value is None:
        return "auto" if has_file else DEFAULT_RUN_WORKERS
    if value == "auto":
        return "auto"
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        raise StudyError(
            f"`--workers` must be an integer >= 1 or 'auto', but got {value!r}"
        ) from None


def cmd_run(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    request: Any = _request(args)
    workers = _workers(args.workers, request, args.study_file is not None)
    if _only_a_name(args) and api.study_exists(args.name, args.storage):
        request = args.name  # `hpsearch run --name NAME`: resume that study as it was created
    if isinstance(workers, int) and workers < 1:
        raise StudyError(f"`--workers` must be an integer >= 1 or 'auto', but got {workers}")
    result = api.run_study(
        request,
        args.storage,
        workers=workers,
        workers_per_gpu=args.workers_per_gpu,
        tracking_uri=args.tracking_uri,
        progress=not args.no_progress,
        keep_logs=args.keep_logs,
    )
    spec = result.spec
    if args.keep_logs and result.outcome is not None:
        print(f"worker logs kept in {result.outcome.log_dir}", file=sys.stderr)
    if result.outcome is None:
        print(
            f"study {spec.name!r} (seed {spec.seed}) already has {result.finished}/"
            f"{spec.n_trials} trials finished: nothing to run (raise its budget with "
            f"`hpsearch run --name {spec.name} --trials N`)"
        )
    else:
        print(
            f"study {spec.name!r} (seed {spec.seed}): {result.finished}/{spec.n_trials} trials "
            f"finished in {result.outcome.wall_time_s:.1f} s with {result.outcome.workers} "
            "worker(s)"
        )
        if not result.outcome.ok:
            print(f"worker logs kept in {result.outcome.log_dir}", file=sys.stderr)
    if result.top:
        print(f"best trials by {spec.metric} ({spec.direction}):")
        _print_table(result.top, _TOP_COLUMNS)
    if result.mlflow:
        print(f"MLflow: {result.mlflow}")
    return 0 if result.ok else 1


_SPEC_FLAGS = ("space", "dataset", "target", "drop", "missing_target", "trials", "epochs",
               "seed", "tiers", "sampler", "metric", "direction", "pruner", "device",
               "no_tracking")  # fmt: skip


def _only_a_name(args: argparse.Namespace) -> bool:
    return (
        bool(args.name)
        and args.study_file is None
        and all(getattr(args, flag) is None for flag in _SPEC_FLAGS)
    )


_TOP_COLUMNS = ("number", "value", "outcome", "config.alpha", "config.optimizer", "config.beta",
                "config.hidden_units", "config.hidden_layers", "config.batch_size")  # fmt: skip


def cmd_create(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    spec, resumed = api.create_study(_request(args), args.storage)
    verb = "exists (same configuration): resume it" if resumed else "created"
    print(
        f"study {spec.name!r} {verb} (budget {spec.n_trials}, seed {spec.seed}); "
        f"join with: hpsearch worker {spec.name}"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    if args.max_trials is not None and args.max_trials < 1:
        raise StudyError(f"`--max-trials` must be >= 1, but got {args.max_trials}")
    _print_trial_lines()
    from search.worker import pass_start_gate

    if not pass_start_gate():  # started by `hpsearch run` for a study it could not create
        return 0
    from search.prefork import lead_or_continue

    leader_code = lead_or_continue()  # `hpsearch run`'s leader forks its workers here
    if leader_code is not None:
        return leader_code
    report = api.run_worker(
        args.study, args.storage, tracking_uri=args.tracking_uri, max_trials=args.max_trials
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())) or "none"
    print(
        f"worker {report.worker}: {len(report.trials)} trial(s) ({counts}); "
        f"{report.discarded} discarded; stopped: {report.stop_reason}",
        file=sys.stderr,
    )
    return 1 if "error" in report.stop_reason else 0


# The worker logs one INFO record per finished trial on this logger; `hpsearch worker` prints
# them as plain lines on stderr (so `hpsearch run`'s worker logs show progress too).
TRIAL_LOGGER = "search.worker.trials"


class _StderrLines(logging.Handler):
    """Each record's message as one line on the current `sys.stderr`."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr, flush=True)


def _print_trial_lines() -> None:
    log = logging.getLogger(TRIAL_LOGGER)
    log.setLevel(logging.INFO)
    log.propagate = False
    if not any(isinstance(h, _StderrLines) for h in log.handlers):
        log.addHandler(_StderrLines())


def cmd_status(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    rows = []
    statuses = api.study_status(args.storage, args.study)
    for s in statuses:
        rows.append(
            {
                "study": s.name,
                "finished": f"{s.counts.finished}/{s.n_trials}",
                "complete": s.outcomes.get("complete", 0),
                "pruned": s.outcomes.get("pruned", 0),
                "diverged": s.outcomes.get("diverged", 0),
                "running": s.counts.running,
                "waiting": s.counts.waiting,
                "failed": s.counts.failed,
                "best": "-" if s.best_value is None else f"{s.best_value:.4g} (#{s.best_trial})",
                "metric": f"{s.metric} ({s.direction[:3]})",
            }
        )
    if not rows:
        from search.storage import absolute_storage_url, redact_url, resolve_storage_url

        where = redact_url(absolute_storage_url(resolve_storage_url(args.storage)))
        print(f"no studies in {where}")
        return 0
    _print_table(rows, tuple(rows[0]))
    print_backlog(getattr(args, "replayed", 0))
    links = [(s.name, s.mlflow) for s in statuses if s.mlflow]
    if links:
        print("\nMLflow (a local store: start the UI first with `hpsearch ui`):")
        for name, link in links:
            print(f"  {name}: {link}")
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    rows = api.trials_table(args.study, args.storage)
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    if args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return 0
    shown = [c for c in columns if c not in ("worker", "mlflow_run_id", "duration_s")]
    _print_table(rows, tuple(shown))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    sys.stdout.write(api.best_config_text(args.study, args.storage, args.format))
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    if args.top < 1:
        raise StudyError(f"`--top` must be >= 1, but got {args.top}")
    print(f"ranges narrowed around the best {args.top} trials of {args.study!r}:")
    spec, resumed = api.refine_study(
        args.study,
        args.top,
        args.name,
        args.storage,
        n_trials=args.trials,
        seed=args.seed,
        out=sys.stdout,
    )
    verb = "exists: resume it" if resumed else "created"
    print(
        f"study {spec.name!r} (seed {spec.seed}) {verb}; run it with: "
        f"hpsearch run --name {spec.name}  (or hpsearch worker)"
    )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from search import api

    _quiet()
    result = api.retrain_best(args.study, args.storage, tracking_uri=args.tracking_uri)
    summary = {
        "test": result.test_metrics,
        "outcome": result.outcome,
        "mlflow_run_id": result.run_id,
        "model_logged": result.model_logged,
    }
    print(json.dumps(summary))
    return 0 if result.outcome == "complete" else 3


def cmd_ui(args: argparse.Namespace) -> int:
    from search import api
    from search.storage import absolute_storage_url, resolve_storage_url
    from search.tracking import default_tracking_uri

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = None
    if not uri:
        uri, artifacts = default_tracking_uri(
            absolute_storage_url(resolve_storage_url(args.storage))
        )
    served = f"http://{args.host}:{args.port}"
    statuses = api.study_status(args.storage, ui_url=served)
    if uri.startswith(("http://", "https://")):
        print(f"MLflow is served at {uri}")
        _print_links(statuses)
        return 0
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port)]  # fmt: skip
    if artifacts:
        cmd += ["--artifacts-destination", artifacts]
    print(f"MLflow UI: {served}  (Ctrl-C to stop)", flush=True)
    _print_links(statuses)
    return run_until_stopped(cmd)


def _print_links(statuses: list[Any]) -> None:
    for s in statuses:
        if s.mlflow:
            print(f"  {s.name}: {s.mlflow}", flush=True)


def run_until_stopped(cmd: list[str], stop_timeout_s: float = 10.0) -> int:
    """Run a server until it exits or this process is stopped, however it is stopped
    (Ctrl-C, SIGTERM from `kill`, SIGHUP from a closed terminal): then stop the server's
    whole process group (`mlflow server` runs its own workers) and wait for it, so no
    process is left holding the port."""
    import signal

    proc = subprocess.Popen(cmd, start_new_session=True)  # its own group, to stop as one

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_group(proc, stop_timeout_s)


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import signal
    import time

    def signal_group(sig: int) -> bool:
        try:
            os.killpg(proc.pid, sig)
            return True
        except ProcessLookupError:
            return False  # the group is gone

    if not signal_group(signal.SIGTERM):
        proc.poll()
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or the group never empties
        if not signal_group(0):
            return
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    proc.wait()


def _print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    table = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for index, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
