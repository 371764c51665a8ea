"""How much memory a `synthetic:N:F` dataset needs, checked before it is generated."""

from __future__ import annotations

import os

from trainers.errors import DataError

# make_classification's float64 matrix, our float64 copy, the imputed and the normalized copies
# of `trainers.data` (the float32 tensors come on top of those): about four matrices at once.
SYNTHETIC_COPIES = 4


def synthetic_bytes(n: int, f: int) -> int:
    """About the peak memory of generating and preparing `synthetic:N:F` (N rows, F features)."""
    return SYNTHETIC_COPIES * n * (f + 1) * 8


def host_memory_bytes() -> int | None:
    """This host's physical memory, None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_synthetic_memory(name: str, n: int, f: int) -> None:
    """Refuse, before allocating, a synthetic set that cannot fit in this host's memory (a
    typo's extra zeros would otherwise die in NumPy with a traceback, or swap the host)."""
    need, have = synthetic_bytes(n, f), host_memory_bytes()
    if have is not None and need > have:
        raise DataError(
            f"`dataset` synthetic:N:F must fit in this host's memory ({_gib(have)}), but "
            f"got dataset={name!r}: N={n} rows x F={f} features needs about {_gib(need)} to "
            "generate and prepare; use fewer rows"
        )


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"
