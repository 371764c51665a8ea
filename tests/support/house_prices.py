"""A regression CSV whose inputs and target are in the hundreds of thousands (house prices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_house_prices(path: Path, rows: int = 300) -> Path:
    rng = np.random.default_rng(0)
    area = rng.uniform(500, 5000, rows)  # square feet
    lot = rng.uniform(2_000, 200_000, rows)
    year = rng.integers(1900, 2024, rows)
    price = 150 * area + 0.5 * lot + 200 * (year - 1900) + rng.normal(0, 10_000, rows)
    lines = ["area,lot,year,price"] + [
        f"{a:.1f},{lt:.1f},{y},{p:.2f}" for a, lt, y, p in zip(area, lot, year, price, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
