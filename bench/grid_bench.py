"""Random against grid (Bergstra & Bengio 2012; the lesson's "don't use a grid").

On a task where one hyperparameter matters a lot and others barely (alpha over five decades;
hidden units, layers and Adam's beta1 matter little), compare the best validation accuracy of
N random trials with that of an N-point grid over the same space, for N = 9 and 16, over
several seeds (each seed: its own data split, weight initialization and sampler seed, shared by
both arms, so the comparison is paired).

- Random: an Optuna study with the project's random sampler (`search.samplers.make_sampler`),
  trials 0..N-1. The first 9 trials of the 16-trial study are the 9-trial study (the keyed
  sampler gives trial n the same configuration either way).
- Grid: built by hand (this benchmark is the one place a grid is allowed, as the comparison).
  Shapes in the lesson's priority order: 9 = 3x3x1x1, 16 = 4x4x1x1 and 2x2x2x2; an axis with
  one point sits at the centre of its range. Two placements: cell centres (the grid's best
  case: k points at the middles of k equal cells on each parameter's scale) and endpoints
  (`np.linspace` from low to high, as grids are usually written).

The data: `make_classification` with 40 features of which 5 are informative, 4 classes, 2
clusters per class and 5% flipped labels (written to a temporary .npz for `trainers`), so the
task is hard enough for the configuration to matter. Trainers are called directly (no MLflow).

    .venv/bin/python -m bench.grid_bench [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import Row, row, write_result
from search.lesson.grid_control import (
    FIXED,
    GRID_SHAPES,
    N_CLASSES,
    N_FEATURES,
    N_INFORMATIVE,
    N_SAMPLES,
    PLACEMENTS,
    grid,
    paired_summary,
    suggest,
    write_dataset,
)

# --- one seed, in a worker process ----------------------------------------------------------

_CACHE: Any = None


def _score(params: dict[str, Any], dataset: str, seed: int, epochs: int) -> float:
    """Validation accuracy of one configuration; a diverged run scores 0 (it gave no model)."""
    global _CACHE
    from trainers import DataCache, TrainConfig, prepare_data, train

    if _CACHE is None:
        _CACHE = DataCache()
    config = TrainConfig(
        dataset=dataset, split_seed=seed, seed=seed, epochs=epochs, **FIXED, **params
    )
    result = train(config, prepare_data(config, cache=_CACHE))
    value = result.metrics.get("val_accuracy", math.nan)
    return 0.0 if result.outcome == "diverged" or not math.isfinite(value) else float(value)


def _random_scores(dataset: str, seed: int, epochs: int, n: int) -> tuple[list[float], str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        from search.samplers import make_sampler

        sampler, name = make_sampler("random", seed), "search.samplers KeyedRandomSampler"
    except ImportError:
        sampler, name = optuna.samplers.RandomSampler(seed=seed), "optuna RandomSampler"
    study = optuna.create_study(direction="maximize", sampler=sampler)
    scores = []
    for _ in range(n):
        trial = study.ask()
        value = _score(suggest(trial), dataset, seed, epochs)
        study.tell(trial, value)
        scores.append(value)
    return scores, name


def run_seed(dataset: str, seed: int, epochs: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # two processes on two cores: one thread each
    started = time.perf_counter()
    n_max = max(GRID_SHAPES)
    random_scores, sampler_name = _random_scores(dataset, seed, epochs, n_max)
    out: dict[str, Any] = {"seed": seed, "sampler": sampler_name}
    for n in GRID_SHAPES:
        out[f"random/{n}"] = max(random_scores[:n])
    for n, shapes in GRID_SHAPES.items():
        for shape in shapes:
            for placement in PLACEMENTS:
                scores = [_score(p, dataset, seed, epochs) for p in grid(shape, placement)]
                out[f"grid/{n}/{_shape_name(shape)}/{placement}"] = max(scores)
    out["seconds"] = time.perf_counter() - started
    return out


def _shape_name(shape: Sequence[int]) -> str:
    return "x".join(str(k) for k in shape)


# --- statistics and rows --------------------------------------------------------------------


def build_rows(per_seed: Sequence[dict[str, Any]]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for n, shapes in GRID_SHAPES.items():
        random_best = [s[f"random/{n}"] for s in per_seed]
        for shape in shapes:
            for placement in PLACEMENTS:
                key = f"grid/{n}/{_shape_name(shape)}/{placement}"
                summary = paired_summary(random_best, [s[key] for s in per_seed])
                r_q, g_q = summary["random"], summary["grid"]
                rows.append(
                    row(
                        f"N={n}: best val accuracy, random vs grid {_shape_name(shape)} "
                        f"({placement}); random wins/ties/losses "
                        f"{summary['wins']}/{summary['ties']}/{summary['losses']}, "
                        f"Wilcoxon p={summary['p_value']:.2g}",
                        r_q[1],
                        g_q[1],
                        target="random >= grid (median)",
                        met=r_q[1] >= g_q[1],
                    )
                )
                notes.append(
                    f"N={n}, grid {_shape_name(shape)} {placement}: random median {r_q[1]:.3f} "
                    f"(IQR {r_q[0]:.3f}-{r_q[2]:.3f}), grid median {g_q[1]:.3f} "
                    f"(IQR {g_q[0]:.3f}-{g_q[2]:.3f}), median paired difference "
                    f"{summary['median_diff']:+.3f}, random wins/ties/losses "
                    f"{summary['wins']}/{summary['ties']}/{summary['losses']} over "
                    f"{len(per_seed)} seeds, two-sided Wilcoxon signed-rank "
                    f"p={summary['p_value']:.3g}"
                )
    return rows, notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10 seeds, 8 epochs (default: 16 seeds, 10 epochs)"
    )
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("HPSEARCH_BENCH_QUICK") == "1"
    seeds = args.seeds or (10 if quick else 16)
    epochs = args.epochs or (8 if quick else 10)
    if seeds < 2:
        raise SystemExit(f"`--seeds` must be >= 2 for a spread, but got {seeds}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpsearch-grid-bench-") as tmp:
        dataset = str(write_dataset(Path(tmp)))
        with ProcessPoolExecutor(args.processes, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_seed, dataset, seed, epochs) for seed in range(seeds)]
            per_seed = []
            for future in futures:
                per_seed.append(future.result())
                print(f"  seed {per_seed[-1]['seed']}: {per_seed[-1]['seconds']:.1f} s", flush=True)
    elapsed = time.perf_counter() - started

    rows, notes = build_rows(per_seed)
    notes = [
        f"task: make_classification, {N_SAMPLES} samples, {N_FEATURES} features "
        f"({N_INFORMATIVE} informative), {N_CLASSES} classes, 2 clusters/class, 5% flipped "
        f"labels; Adam, batch 64, {epochs} epochs; validation = 20% of rows (split_seed = seed)",
        "space: alpha log-uniform 1e-5..1, hidden_units log-int 16..256, hidden_layers 1..3, "
        "beta1 uniform 0.5..0.99; a diverged trial scores 0",
        f"random: {per_seed[0]['sampler']}; grid shapes in priority order (alpha first), "
        "1-point axes at the range's centre",
        *notes,
        f"{seeds} seeds in {elapsed:.0f} s on {args.processes} processes (1 torch thread each)",
    ]
    settings = {
        "seeds": seeds,
        "epochs": epochs,
        "processes": args.processes,
        "torch_threads_per_process": 1,
    }
    path = write_result("grid", rows, notes=notes, settings=settings, extra={"per_seed": per_seed})
    for note in notes:
        print(" ", note)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
