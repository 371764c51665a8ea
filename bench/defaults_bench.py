"""Random search with the defaults against not searching (issue 13).

For each of digits, wine and breast_cancer: the best validation accuracy of a default study
(what `hpsearch run --dataset NAME` creates: the `lesson` space at the default tiers, 12
trials of 10 epochs, the name `NAME-lesson` and the seed derived from it) against an untuned
`hpsearch train --dataset NAME --epochs 10` (TrainConfig's defaults, which are the space's
default point). Same epochs, same data split, same weight seed. The digits row is `make run`'s
own study.

The study is real (a SQLite storage in a temporary folder, one in-process worker, tracking
off: MLflow changes no value); the untuned run calls the trainer as `hpsearch train` does.

    .venv/bin/python -m bench.defaults_bench [--trials N] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Row, row, write_result

DATASETS = ("digits", "wine", "breast_cancer")
# `hpsearch run`'s defaults without a study file (search/cli/study_cmd.py DEFAULT_RUN).
TRIALS = 12
EPOCHS = 10


def untuned(dataset: str, epochs: int) -> tuple[float, float]:
    """`hpsearch train --dataset DATASET --epochs EPOCHS`: its validation accuracy, seconds."""
    from trainers import TrainConfig, prepare_data, train

    config = TrainConfig(dataset=dataset, epochs=epochs, device="cpu")
    start = time.perf_counter()
    result = train(config, prepare_data(config))
    return float(result.metrics["val_accuracy"]), time.perf_counter() - start


def default_study(dataset: str, trials: int, epochs: int, folder: Path) -> dict[str, Any]:
    """The study `hpsearch run --dataset DATASET` runs, to its end: best, median, seed."""
    from search import api

    storage = f"sqlite:///{folder / f'{dataset}.db'}"
    request = api.StudyRequest(
        n_trials=trials, train={"dataset": dataset, "epochs": epochs, "device": "cpu"},
        no_tracking=True,
    )  # fmt: skip
    spec, _ = api.create_study(request, storage)
    start = time.perf_counter()
    api.run_worker(spec.name, storage)
    wall = time.perf_counter() - start
    values = [r["value"] for r in api.trials_table(spec.name, storage) if r["value"] is not None]
    return {
        "name": spec.name, "seed": spec.seed, "best": max(values),
        "median": statistics.median(values), "complete": len(values), "wall_s": wall,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--quick", action="store_true", help="the same (it is already small)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HPSEARCH_TORCH_THREADS", "1")
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # both arms alike, and the 2-core machine's neighbours spared

    rows: list[Row] = []
    details = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-defaults-bench-") as tmp:
        for dataset in DATASETS:
            plain, plain_s = untuned(dataset, args.epochs)
            study = default_study(dataset, args.trials, args.epochs, Path(tmp))
            rows.append(
                row(
                    f"{dataset}: best val_accuracy, default {args.trials}-trial study "
                    f"({study['name']}, seed {study['seed']}) vs untuned train, "
                    f"{args.epochs} epochs",
                    study["best"],
                    plain,
                    unit="val_accuracy",
                    target=">= untuned",
                    met=study["best"] >= plain,
                )
            )
            details.append({"dataset": dataset, "untuned": plain, "untuned_s": plain_s, **study})
            print(f"{dataset}: study {study['best']:.4f} vs untuned {plain:.4f}", file=sys.stderr)
    write_result(
        "defaults",
        rows,
        settings={"trials": args.trials, "epochs": args.epochs, "tiers": 3, "space": "lesson"},
        notes=[
            "theirs = untuned `hpsearch train --dataset D --epochs E` (TrainConfig's defaults, "
            "the lesson space's default point); ours = the best trial of the study "
            "`hpsearch run --dataset D` creates, same epochs, split and weight seed",
            "the digits study is `make run`'s (digits-lesson)",
        ],
        extra={"details": details},
    )
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
