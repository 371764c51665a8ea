#!/usr/bin/env python3
"""Pin this worker container to one GPU of its host, then run the given command.

Usage: hpsearch-gpu-slot COMMAND [ARGS...]   (installed in the image as hpsearch-gpu-slot)

Why: with `docker compose up --scale worker=N`, every replica of a service gets the same
device request. A request of `count: 1` becomes NVIDIA_VISIBLE_DEVICES=0 in each replica (the
engine turns a count into the first N device indexes), so N workers would all share GPU 0 and
the other GPUs would idle. Instead each worker container sees all the host's GPUs and takes one
free *slot*: an exclusive `flock` on `<lock dir>/gpu<i>-slot<k>.lock` in a named volume that all
workers on the host share. The lock is inherited by COMMAND (the file descriptor stays open
across `exec`) and released by the kernel when the container stops, so a restarted worker
takes a free slot again. Slots are filled GPU by GPU first (slot 0 of every GPU, then slot 1).

Environment:
  HPSEARCH_GPU_LOCK_DIR      where the lock files live (default /var/lib/hpsearch/gpu-slots)
  HPSEARCH_WORKERS_PER_GPU   slots per GPU (default 1; 2 runs two workers on each GPU)
  HPSEARCH_GPU_COUNT         the number of GPUs, instead of asking torch (tests, odd drivers)
  CUDA_VISIBLE_DEVICES       when already set, the user chose the GPU: no slot is taken

With no GPU (torch sees none), COMMAND runs as it is: the same service works on a CPU host.
Exit status 2, with one line, when every slot is taken or a setting is invalid.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

LOCK_DIR_ENV = "HPSEARCH_GPU_LOCK_DIR"
PER_GPU_ENV = "HPSEARCH_WORKERS_PER_GPU"
GPU_COUNT_ENV = "HPSEARCH_GPU_COUNT"
DEFAULT_LOCK_DIR = "/var/lib/hpsearch/gpu-slots"


class SlotError(Exception):
    """A setting is invalid or no slot is free: the worker must not start."""


def _positive_int(name: str, default: int, *, allow_zero: bool = False) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SlotError(f"`{name}` must be an integer, but got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else ">= 1"
        raise SlotError(f"`{name}` must be {rule}, but got {value}")
    return value


def gpu_count() -> int:
    """GPUs this container can use: HPSEARCH_GPU_COUNT, else what torch sees."""
    if os.environ.get(GPU_COUNT_ENV, "").strip():
        return _positive_int(GPU_COUNT_ENV, 0, allow_zero=True)
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def take_slot(lock_dir: Path, gpus: int, per_gpu: int) -> tuple[int, int, int]:
    """Lock the first free slot; returns (gpu, slot, fd). The fd must stay open to keep it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(per_gpu):
        for gpu in range(gpus):
            path = lock_dir / f"gpu{gpu}-slot{slot}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # For a person looking at the volume: who holds this slot.
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.uname().nodename} pid {os.getpid()}\n".encode())
            return gpu, slot, fd
    raise SlotError(
        f"all {gpus * per_gpu} GPU slots in {lock_dir} are taken ({gpus} GPUs x "
        f"{PER_GPU_ENV}={per_gpu}): scale the workers to at most {gpus * per_gpu} "
        f"or raise {PER_GPU_ENV}"
    )


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: hpsearch-gpu-slot COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        if os.environ.get("CUDA_VISIBLE_DEVICES") is None:
            gpus = gpu_count()
            if gpus > 0:
                per_gpu = _positive_int(PER_GPU_ENV, 1)
                lock_dir = Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)
                gpu, slot, fd = take_slot(lock_dir, gpus, per_gpu)
                os.set_inheritable(fd, True)  # the lock lives as long as COMMAND does
                os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
                print(f"hpsearch-gpu-slot: GPU {gpu} (slot {slot})", file=sys.stderr, flush=True)
    except SlotError as exc:
        print(f"hpsearch-gpu-slot: error: {exc}", file=sys.stderr)
        return 2
    os.execvp(argv[0], argv)
    return 127  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
