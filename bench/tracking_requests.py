"""Requests and time per 20-epoch trial logged through `search.tracking.Tracker`.

Starts a real `mlflow server` (SQLite backend, served artifacts) on loopback, logs N trials
of 20 epochs (6 metrics per epoch and a config.json), counts the API
requests in the server's access log and times `finish()`. Writes
bench/results/tracking_requests.json.

    .venv/bin/python -m bench.tracking_requests --trials 10
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from search.tracking import Tracker, ensure_study_run
from tests.conftest import MlflowServer

API_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) /(api|ajax-api)/')
RESULTS = Path(__file__).parent / "results" / "tracking_requests.json"


def count(server: MlflowServer) -> int:
    return sum(1 for line in server.log.read_text().splitlines() if API_LINE.search(line))


def settled_count(server: MlflowServer) -> int:
    last = -1
    while (now := count(server)) != last:
        last = now
        time.sleep(0.3)
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "artifacts").mkdir()
        server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
        server.start()
        try:
            ref = ensure_study_run(server.uri, "bench", {"trials": args.trials})
            tracker = Tracker(ref, root / "spool", worker="bench")
            requests, finish_ms, log_epoch_us, created_ms = [], [], [], []
            for n in range(args.trials):
                before = settled_count(server)
                started = time.perf_counter()
                run = tracker.start_trial(n, 0, {"alpha": 1e-3 * (n + 1), "hidden_units": 64}, {})
                history = []
                for epoch in range(1, args.epochs + 1):
                    metrics = {
                        "train_loss": 1 / epoch,
                        "val_loss": 1.1 / epoch,
                        "val_accuracy": 1 - 1 / (epoch + 1),
                        "lr": 1e-3,
                        "grad_norm/0": 0.3,
                        "grad_norm/1": 0.2,
                    }
                    t0 = time.perf_counter()
                    run.log_epoch(epoch, metrics)
                    log_epoch_us.append((time.perf_counter() - t0) * 1e6)
                    history.append({"epoch": epoch, **metrics})
                # A real trial trains for longer than the run's creation (sent from a helper
                # thread): wait for it here, so `finish` is timed as it is after training.
                run.wait_created()
                created_ms.append((time.perf_counter() - started) * 1000)
                t0 = time.perf_counter()
                run.finish("FINISHED", {"val_accuracy": 0.95}, {}, {"config.json": "{}"}, history)
                finish_ms.append((time.perf_counter() - t0) * 1000)
                tracker.wait_finished()  # its requests belong to this trial's count
                requests.append(settled_count(server) - before)
            tracker.close()
        finally:
            server.stop()
    result = {
        "trials": args.trials,
        "epochs": args.epochs,
        "metrics_per_epoch": 6,
        "requests_per_trial": requests,
        "finish_ms": [round(x, 1) for x in finish_ms],
        "finish_ms_median_excluding_first": round(statistics.median(finish_ms[1:] or finish_ms), 1),
        "log_epoch_us_median": round(statistics.median(log_epoch_us), 1),
        "created_ms_median": round(statistics.median(created_ms), 1),
        "note": (
            "finish() queues the run's end and returns (no request waited on); "
            "server: mlflow server on SQLite; "
            "created_ms: start_trial() to the run existing on the server (a helper thread "
            "sends it; the trial trains meanwhile)"
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
