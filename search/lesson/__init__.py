"""The lesson's claims as runnable, tracked experiments: `hpsearch lesson NAME`.

Each experiment is one module with `SUMMARY`, `CLAIM`, `DEFAULT` and `QUICK` sizes and
`run(ctx) -> Outcome`; the shared machinery is in `context` (options, storage, the MLflow
parent run), `arms` (a search arm: one study per seed through `search.api`), `verdict`
(spreads, paired comparisons, the verdict) and `report` (table, figure, files).

```python
from search.lesson import LessonOptions, run_lesson
outcome, files = run_lesson("normalization", LessonOptions(quick=True))
print(outcome.verdict.text())
```
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import TextIO

from search.errors import StudyError
from search.lesson.context import LessonContext, LessonOptions, Sizes
from search.lesson.report import Outcome, publish

__all__ = ["EXPERIMENTS", "LessonOptions", "Outcome", "Sizes", "experiment", "run_lesson"]

# In the lesson's order: inputs, signals through depth, initialization, optimizers, decay,
# what to tune first, how to search.
EXPERIMENTS = (
    "normalization",
    "gradients",
    "initialization",
    "optimizers",
    "decay",
    "priorities",
    "random-vs-grid",
)


def experiment(name: str) -> ModuleType:
    """The module of experiment `name` (StudyError naming the choices for anything else)."""
    if name not in EXPERIMENTS:
        raise StudyError(
            f"the lesson experiment must be one of {list(EXPERIMENTS)}, but got {name!r}"
        )
    return importlib.import_module(f"search.lesson.{name.replace('-', '_')}")


def check_dataset(dataset: str) -> None:
    """Load the dataset once on the CPU so a typo fails (DataError) before anything starts."""
    from search.lesson.random_vs_grid import TASK
    from trainers import TrainConfig, prepare_data

    if dataset != TASK:
        prepare_data(TrainConfig(dataset=dataset, device="cpu"))


def run_lesson(
    name: str, options: LessonOptions | None = None, out: TextIO | None = None
) -> tuple[Outcome, list[Path]]:
    """Run experiment `name` end to end; returns its outcome and the files written."""
    module = experiment(name)
    options = options or LessonOptions()
    out = out or sys.stdout
    sizes = options.sizes(name, module.DEFAULT, module.QUICK)
    check_dataset(sizes.dataset)
    if hasattr(module, "check"):
        module.check(sizes)  # before anything is written: no MLflow run for a bad request
    ctx = LessonContext.open(name, sizes, options, sys.stderr)
    ctx.say(f"lesson {name}: {module.SUMMARY}")
    try:
        outcome = module.run(ctx)
        files = publish(ctx, outcome, out)
    except BaseException:
        ctx.fail()
        raise
    ctx.say(f"done; files in {options.out_dir}/, MLflow experiment {ctx.experiment_id!r}")
    return outcome, files
