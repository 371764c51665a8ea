"""How fast is one epoch of our trainer, against a textbook loop and two floors?

digits, MLP 64-128-128-10 (ReLU, He init), Adam, batch 32, one torch thread:

(a) ours:          `trainers.train`, wall time / epochs; this *includes* what the textbook
                   loops below skip: a validation pass, gradient norms and one host sync per
                   epoch.
(b) dataloader:    textbook `DataLoader(TensorDataset)` + `nn.Sequential` + `torch.optim.Adam`.
(b2) randperm:     the same steps on index slices of a per-epoch `randperm` (no DataLoader).
(c) presliced:     the same steps on fixed, pre-sliced batches: the floor of autograd +
                   torch.optim eager steps (no data handling at all).
(d) flop floor:    6 * weights * samples FLOPs (forward + backward) at the measured one-thread
                   rate of a large float32 matmul: what the arithmetic alone costs.

Each figure is the median of `--repeats` timed runs after a warm-up. Writes
bench/results/trainer.json. Run: `python -m bench.trainer_bench`.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from trainers import TrainConfig, prepare_data, train

RESULTS = Path(__file__).parent / "results" / "trainer.json"
EPOCHS_PER_RUN = 5  # ours: one train() call of this many epochs per timed repeat


def median_ms(run: Callable[[], float | None], repeats: int, warmup: int = 2) -> float:
    """Median over `repeats` of `run()`'s duration in ms (or the ms it returns itself)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        own = run()
        times.append(own if own is not None else (time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def textbook_model(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    config = TrainConfig(
        dataset="digits", hidden_layers=2, hidden_units=128, batch_size=32, optimizer="adam",
        alpha=1e-3, epochs=EPOCHS_PER_RUN, device="cpu",
    )  # fmt: skip
    data = prepare_data(config)
    x, y = data.x_train, data.y_train
    sizes = [data.n_features, 128, 128, data.n_outputs]

    def ours() -> float:
        return train(config, data).wall_time_s * 1e3 / EPOCHS_PER_RUN

    model = textbook_model(sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.functional.cross_entropy

    def steps(batches: object) -> None:
        for xb, yb in batches:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            optimizer.step()

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True
    )
    presliced = [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32)]

    def randperm_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x))
        return [(x[order[i : i + 32]], y[order[i : i + 32]]) for i in range(0, len(x), 32)]

    def randperm_epoch() -> None:
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            rows = order[i : i + 32]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[rows]), y[rows]).backward()
            optimizer.step()

    timings = {
        "ours_ms": median_ms(ours, args.repeats),
        "dataloader_ms": median_ms(lambda: steps(loader), args.repeats),
        "randperm_ms": median_ms(randperm_epoch, args.repeats),
        "presliced_ms": median_ms(lambda: steps(presliced), args.repeats),
    }
    weights = sum(a * b for a, b in itertools.pairwise(sizes))
    flops = 6 * weights * len(x)
    gflops = matmul_gflops()
    timings["flop_floor_ms"] = flops / (gflops * 1e9) * 1e3
    ours_ms = timings["ours_ms"]
    result: dict[str, object] = {
        "benchmark": "trainer epoch, digits, MLP 64-128-128-10, Adam, batch 32",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "train_rows": len(x),
        "batches_per_epoch": len(presliced),
        "weights": weights,
        "epoch_gflop": flops / 1e9,
        "matmul_gflops_1thread": gflops,
        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
        "ratios": {
            "dataloader_over_ours": timings["dataloader_ms"] / ours_ms,
            "randperm_over_ours": timings["randperm_ms"] / ours_ms,
            "ours_over_presliced": ours_ms / timings["presliced_ms"],
            "ours_over_flop_floor": ours_ms / timings["flop_floor_ms"],
        },
        "targets": {
            "dataloader_over_ours >= 1.25": timings["dataloader_ms"] / ours_ms >= 1.25,
            "ours_over_presliced <= 1.1": ours_ms / timings["presliced_ms"] <= 1.1,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
