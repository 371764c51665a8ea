"""Peer tracking: what a user writes instead of hpsearch, and what it costs.

A plain Optuna script (in-memory study, `RandomSampler`) trains the same trials three ways:

- untracked: `study.optimize(objective)`;
- callback: optuna-integration's `MLflowCallback` (one MLflow run per trial: params, value,
  tags);
- callback + per-epoch: the same, with `@callback.track_in_mlflow()` on the objective and
  `mlflow.log_metric` for train_loss, val_loss and val_accuracy every epoch (what a user who
  wants learning curves writes).

Against a real `mlflow server` on a fresh PostgreSQL database, with `--workers 1` and with the
default 4. The figure is the wall time of 10 trials x 20 epochs on digits, tracked over
untracked, from the same repeat (the variants are interleaved in each repeat so that a noisy
neighbour hits all of them); the median over repeats. HTTP requests per trial are counted in a
separate, untimed run through a counting reverse proxy on loopback.

If optuna-integration is not installed, the same peer code is written by hand here (a callback
that opens one MLflow run per trial and logs the value and params; a decorator that opens the
run before the objective so that per-epoch `log_metric` calls land in it).

    .venv/bin/pip install optuna-integration   # for this benchmark only
    .venv/bin/python -m bench.peer_tracking_bench [--quick]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import http.client
import http.server
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import Row, fresh_postgres_database, mlflow_server, row, write_result

VARIANTS = ("untracked", "callback", "callback+per-epoch")
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy")
# Seen on this machine before (same setup): for the notes, next to today's figures.
PEER_SEEN = {
    ("callback", 1): 1.12,
    ("callback", 4): 1.90,
    ("callback+per-epoch", 1): 2.3,
    ("callback+per-epoch", 4): 10.5,
}


# --- a counting reverse proxy ---------------------------------------------------------------


class CountingProxy:
    """Forwards HTTP/1.1 on loopback to `upstream` and counts requests by (method, path)."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the MLflow client's session uses

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.counts[f"{self.command} {self.path.split('?')[0]}"] += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "keep-alive", "proxy-connection")
                }
                conn = proxy._upstream()
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request would drown the benchmark's output

        self._local = threading.local()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _upstream(self) -> http.client.HTTPConnection:
        # One upstream connection per proxy thread (a thread serves one client connection).
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
            self._local.conn = conn
        return conn

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the peer code ----------------------------------------------------------------------------


def _hand_written_callback(tracking_uri: str) -> Any:
    """What optuna-integration's MLflowCallback does, for when it is not installed."""
    import mlflow

    class PeerMLflowCallback:
        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._run_ids: dict[int, str] = {}

        def _init(self, study: Any) -> None:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_experiment(study.study_name)

        def __call__(self, study: Any, trial: Any) -> None:
            with self._lock:
                self._init(study)
                with mlflow.start_run(
                    run_id=self._run_ids.get(trial.number), run_name=str(trial.number)
                ):
                    mlflow.log_metrics({"value": trial.value} if trial.value is not None else {})
                    mlflow.log_params(trial.params)
                    mlflow.set_tags({"number": str(trial.number), "state": str(trial.state)})

        def track_in_mlflow(self) -> Callable[[Callable[..., float]], Callable[..., float]]:
            def decorator(func: Callable[..., float]) -> Callable[..., float]:
                @functools.wraps(func)
                def wrapper(trial: Any) -> float:
                    with self._lock:
                        self._init(trial.study)
                        with mlflow.start_run(run_name=str(trial.number)) as run:
                            self._run_ids[trial.number] = run.info.run_id
                            return func(trial)

                return wrapper

            return decorator

    return PeerMLflowCallback()


def make_callback(tracking_uri: str) -> tuple[Any, str]:
    try:
        from optuna_integration.mlflow import MLflowCallback
    except ImportError:
        return _hand_written_callback(
            tracking_uri
        ), "hand-written equivalent (no optuna-integration)"
    import optuna_integration

    callback = MLflowCallback(tracking_uri=tracking_uri, metric_name="val_accuracy")
    return callback, f"optuna-integration {optuna_integration.__version__} MLflowCallback"


def run_variant(variant: str, tracking_uri: str, n_trials: int, epochs: int, seed: int) -> float:
    """Wall seconds of one plain-Optuna study of `n_trials` trials, tracked as `variant` says."""
    import mlflow
    import optuna

    from trainers import DataCache, TrainConfig, prepare_data, train

    cache = DataCache()
    base = TrainConfig(dataset="digits", epochs=epochs, device="cpu", optimizer="adam")
    prepare_data(base, cache=cache)  # load once, outside the timing, for every variant alike

    def suggest(trial: Any) -> TrainConfig:
        return base.replace(
            alpha=trial.suggest_float("alpha", 1e-4, 1e-1, log=True),
            hidden_units=trial.suggest_int("hidden_units", 16, 256, log=True),
            batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
        )

    def objective(trial: Any, per_epoch: bool = False) -> float:
        config = suggest(trial)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            if per_epoch:
                for name in EPOCH_METRICS:
                    mlflow.log_metric(name, metrics[name], step=epoch)

        result = train(config, prepare_data(config, cache=cache), report)
        return float(result.metrics.get("val_accuracy", 0.0))

    study = optuna.create_study(
        study_name=f"peer-{variant}-{uuid.uuid4().hex[:8]}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),  # the same trials for every variant
    )
    callbacks: list[Any] = []
    func: Callable[[Any], float] = objective
    if variant != "untracked":
        callback, _ = make_callback(tracking_uri)
        callbacks.append(callback)
        if variant == "callback+per-epoch":
            func = callback.track_in_mlflow()(functools.partial(objective, per_epoch=True))
    started = time.perf_counter()
    study.optimize(func, n_trials=n_trials, callbacks=callbacks)
    return time.perf_counter() - started


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import mlflow  # noqa: F401 (imported first: its import configures the "mlflow" logger)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # MLflow prints a "View run at" line per run; thousands of them would bury the figures.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API warnings of track_in_mlflow
        yield


def measure_server(
    workers: int, repeats: int, n_trials: int, epochs: int, tmp: Path, count: bool
) -> dict[str, Any]:
    with fresh_postgres_database("hpsearch_bench_peer") as backend:
        print(f"mlflow server --workers {workers} (PostgreSQL backend)", flush=True)
        with mlflow_server(backend, tmp / f"artifacts-{workers}", workers) as uri, _quiet():
            # Counted runs go first and double as the warm-up (the first requests of a server
            # fill its caches); without counting, one small study warms it up.
            requests: dict[str, float] = {}
            endpoints: dict[str, dict[str, int]] = {}
            if count:
                for variant in VARIANTS[1:]:
                    with CountingProxy(uri) as proxy:
                        run_variant(variant, proxy.uri, n_trials, epochs, seed=0)
                        requests[variant] = proxy.total() / n_trials
                        endpoints[variant] = dict(proxy.counts.most_common())
            else:
                run_variant("callback+per-epoch", uri, 2, 2, seed=999)
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            ratios: dict[str, list[float]] = {v: [] for v in VARIANTS[1:]}
            for r in range(repeats):
                for variant in VARIANTS:
                    times[variant].append(run_variant(variant, uri, n_trials, epochs, seed=r))
                for variant in VARIANTS[1:]:
                    ratios[variant].append(times[variant][-1] / times["untracked"][-1])
                print(
                    f"  repeat {r}: " + ", ".join(f"{v} {times[v][-1]:.2f} s" for v in VARIANTS),
                    flush=True,
                )
    return {"times": times, "ratios": ratios, "requests": requests, "endpoints": endpoints}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 repeats of 10 epochs (default: 3 of 20)"
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("HPSEARCH_BENCH_QUICK") == "1"
    repeats = args.repeats or (2 if quick else 3)
    args.epochs = args.epochs or (10 if quick else 20)

    import torch

    # One thread: two threads on a 2-core machine shared with a server spin against it.
    torch.set_num_threads(args.torch_threads)
    _, callback_name = make_callback("http://127.0.0.1:1")
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hpsearch-peer-bench-") as tmp:
        for workers in (1, 4):
            results[workers] = measure_server(
                workers, repeats, args.trials, args.epochs, Path(tmp), count=workers == 1
            )

    rows: list[Row] = []
    for variant in VARIANTS[1:]:
        for workers in (1, 4):
            ratio = statistics.median(results[workers]["ratios"][variant])
            rows.append(
                row(
                    f"peer {variant}: wall time tracked / untracked, mlflow server "
                    f"--workers {workers}",
                    None,
                    ratio,
                    unit="x",
                    target="reference (ours: see study / tracking_requests)",
                )
            )
        rows.append(
            row(
                f"peer {variant}: HTTP requests per trial",
                None,
                results[1]["requests"][variant],
                unit="requests",
                target="reference (ours: see tracking_requests)",
            )
        )
    untracked = {w: statistics.median(results[w]["times"]["untracked"]) for w in (1, 4)}
    notes = [
        f"peer code: plain Optuna (in-memory, RandomSampler) + {callback_name}; per-epoch: "
        f"track_in_mlflow + mlflow.log_metric of {', '.join(EPOCH_METRICS)} each epoch",
        f"{args.trials} trials x {args.epochs} epochs on digits (Adam; alpha, hidden units, "
        f"batch size sampled), torch threads {args.torch_threads}; median over {repeats} "
        "interleaved repeats of the per-repeat ratio",
        "untracked wall time per study (median): "
        + ", ".join(f"{untracked[w]:.2f} s next to a {w}-worker server" for w in (1, 4)),
        "per-repeat ratios: "
        + "; ".join(
            f"workers={w} {v}: " + ", ".join(f"{x:.2f}" for x in results[w]["ratios"][v])
            for w in (1, 4)
            for v in VARIANTS[1:]
        ),
        f"requests by endpoint ({args.trials} trials, callback + per-epoch): "
        + ", ".join(f"{k}: {n}" for k, n in results[1]["endpoints"]["callback+per-epoch"].items()),
        "seen before on this machine: "
        + ", ".join(f"{v} workers={w}: {x}x" for (v, w), x in PEER_SEEN.items())
        + "; about 7 requests per trial (callback), 73 with per-epoch metrics",
    ]
    settings = {
        "mlflow_server_workers": "1 and 4",
        "mlflow_backend": "postgresql (fresh database per server)",
        "torch_threads": args.torch_threads,
        "trials": args.trials,
        "epochs": args.epochs,
        "repeats": repeats,
    }
    path = write_result("peer_tracking", rows, notes=notes, settings=settings)
    for r in rows:
        print(f"  {r['what']}: {r['theirs']} {r['unit']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
