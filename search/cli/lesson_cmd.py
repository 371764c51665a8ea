"""`hpsearch lesson [NAME]`: list the lesson's experiments, or run one (see `search.lesson`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from search.errors import StudyError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "lesson",
        help="the lesson's claims as experiments: list them, or run one",
        description=(
            "With no NAME, list the experiments. With NAME, run it: a controlled comparison "
            "(one study per arm and seed where it is a search), grouped under one MLflow run "
            "with a figure and a table, ending with the lesson's claim and the verdict the "
            "numbers give."
        ),
    )
    parser.add_argument("name", nargs="?", help="the experiment (omit to list them)")
    parser.add_argument("--dataset", help="a built-in dataset, synthetic:N, or a .csv/.npz path")
    parser.add_argument("--trials", type=int, help="trials per arm and seed (search experiments)")
    parser.add_argument("--seeds", type=int, help="seeds (each: its own split, init, sampler)")
    parser.add_argument("--epochs", type=int, help="epochs per trial")
    parser.add_argument("--quick", action="store_true", help="the small form the tests run")
    parser.add_argument("--workers", default="1", help="worker processes per study (or 'auto')")
    parser.add_argument("--parallel", type=int, default=3, help="studies run at once (default 3)")
    parser.add_argument(
        "--out", type=Path, default=Path("hpsearch-lesson"), help="folder for the PNG/CSV/MD"
    )
    parser.add_argument("--storage", help="Optuna storage URL (env HPSEARCH_STORAGE)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI)")
    parser.set_defaults(handler=cmd_lesson)


def cmd_lesson(args: argparse.Namespace) -> int:
    import search.lesson as lesson  # here, not at the top: `hpsearch --help` stays fast

    if args.name is None:
        for name in lesson.EXPERIMENTS:
            module = lesson.experiment(name)
            print(f"{name:<15} {module.SUMMARY}")
            print(f"{'':<15} claim: {module.CLAIM}")
        print("\nrun one: hpsearch lesson NAME [--dataset D] [--trials N] [--seeds K] [--quick]")
        return 0
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = lesson.LessonOptions(
        dataset=args.dataset,
        trials=args.trials,
        seeds=args.seeds,
        epochs=args.epochs,
        quick=args.quick,
        workers=_workers(args.workers),
        parallel=_parallel(args.parallel),
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        out_dir=args.out,
    )
    from search.start_up_gc import start_up_done

    start_up_done()  # an experiment trains for minutes, in this process too: collect
    lesson.run_lesson(args.name, options)
    return 0


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise StudyError(f"`--workers` must be an integer >= 1 or 'auto', but got {text!r}")
    return value


def _parallel(value: int) -> int:
    if value < 1:
        raise StudyError(f"`--parallel` must be an integer >= 1, but got {value}")
    return value
