"""Benchmarks, each runnable alone: `python -m bench.trainer_bench`. Results: bench/results/."""
