"""The Python API of the service, for notebooks and for the CLI (each verb calls one function).

Why one module: it is the facade, one short function per verb over the modules that do the
work; a notebook user reads one page to find everything.

```python
from search import api

spec, resumed = api.create_study(api.StudyRequest(name="digits", n_trials=12,
                                                  train={"dataset": "digits", "epochs": 10}))
api.run_study(spec, workers=2)          # worker processes; or api.run_worker(spec.name)
api.trials_table(spec.name)             # one dict per trial
api.best_config(spec.name)              # the best TrainConfig fields, for `hpsearch train`
api.refine_study(spec.name, top=5, new_name="digits-fine")
api.retrain_best(spec.name)             # train+validation -> test, logged to MLflow
```

`storage` defaults to `$HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db` in the working
directory, everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.errors import StudyError
from search.runner import RunOutcome
from search.start_up_gc import start_up_done
from search.storage import (
    absolute_storage_url,
    check_storage_writable,
    count_trials,
    open_storage,
    redact_url,
    resolve_storage_url,
)
from search.study import (
    SPEC_ATTR,
    StudyRequest,
    StudySpec,
    load_spec,
    read_study_file,
    request_from_spec,
    worker_tracking_uri,
)
from search.study import create_study as _create_study
from search.summary import summarize, summarize_later
from search.trial_queue import TrialCounts
from search.worker import WorkerReport
from spaces.toml_text import dump_toml

__all__ = [
    "StudyRequest",
    "StudySpec",
    "best_config",
    "create_study",
    "load_request",
    "refine_study",
    "retrain_best",
    "run_study",
    "run_worker",
    "study_status",
    "trials_dataframe",
    "trials_table",
]

_logger = logging.getLogger("search.api")


def load_request(
    study_file: str | Path | None = None, *, base: StudyRequest | None = None, **overrides: Any
) -> StudyRequest:
    """A `StudyRequest` from a study file (or `base`, or the defaults) with `overrides` (None
    values ignored).

    `train` overrides are merged key by key into the file's [train] table. A `space` override
    replaces an inline space.
    """
    if study_file:
        request = read_study_file(study_file)
    else:
        request = dataclasses.replace(base) if base is not None else StudyRequest()
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "train":
            request.train = {**request.train, **value}
        elif key == "space":
            request.space, request.space_toml = value, None
        elif not hasattr(request, key):
            raise StudyError(f"unknown study option {key!r}")
        else:
            setattr(request, key, value)
    return request


def create_study(
    request: StudyRequest | StudySpec, storage: str | None = None
) -> tuple[StudySpec, bool]:
    """Create the study (validated first; nothing is written on a bad input) or resume it.

    Returns the stored spec and whether it already existed.
    """
    url = absolute_storage_url(resolve_storage_url(storage))
    check_storage_writable(url)  # before the dataset is loaded: a mistake is told at once
    spec = request if isinstance(request, StudySpec) else request.resolve(url)
    return _create_study(spec, url)


@dataclass
class StudyRun:
    spec: StudySpec
    resumed: bool
    outcome: RunOutcome | None  # None: the budget was already met, no worker was started
    top: list[dict[str, Any]]
    mlflow: str | None  # where to look at the runs
    finished: int = 0  # finished trials (complete, pruned, diverged) at the end

    @property
    def ok(self) -> bool:
        return self.outcome is None or self.outcome.ok

    @property
    def already_done(self) -> bool:
        return self.outcome is None


def run_study(
    request: StudyRequest | StudySpec | str,
    storage: str | None = None,
    *,
    workers: int | str = "auto",
    workers_per_gpu: int = 1,
    tracking_uri: str | None = None,
    progress: bool = True,
    out: TextIO | None = None,
    keep_logs: bool = False,
) -> StudyRun:
    """Create or resume a study (a request, a spec, or the name of an existing study), run it
    with local worker processes, and summarize it (MLflow parent run, best trials).

    A study whose budget is already met returns at once (`already_done`), starting no worker.
    A run that met its budget removes its worker logs unless `keep_logs`; one that did not
    keeps them (`outcome.log_dir`)."""
    from search.runner import EarlyStart, start_early
    from search.runner import run_study as _run

    url = _storage_url(storage)
    early: EarlyStart | None = None
    if isinstance(request, str):
        _require_store(url, request)
        spec, resumed = load_spec(url, request), True
    else:
        if isinstance(request, StudyRequest) and request.workers is not None and workers == "auto":
            workers = request.workers
        check_storage_writable(url)  # before the dataset is loaded: a mistake is told at once
        spec = request if isinstance(request, StudySpec) else request.resolve(url)
        if _is_new_study(url, spec.name):
            # Validated, not yet written: the workers import torch (and MLflow) while the study
            # and its MLflow experiment are created, behind a gate that opens once they exist.
            early = start_early(spec, url, workers, workers_per_gpu, tracking_uri)
        try:
            spec, resumed = create_study(spec, url)
        except BaseException:
            if early is not None:
                early.cancel()
            raise
    outcome: RunOutcome | None = None
    finished = _finished(spec.name, url)
    if finished >= spec.n_trials and early is not None:
        early.cancel()  # another command created and finished it meanwhile
    if finished < spec.n_trials:
        start_up_done()  # the study and its MLflow run exist: the heavy imports are in
        outcome = _run(
            spec,
            url,
            workers=workers,
            workers_per_gpu=workers_per_gpu,
            tracking_uri=tracking_uri,
            progress=progress,
            out=out,
            early=early,
        )
        finished = outcome.finished
        if outcome.ok and not keep_logs:
            shutil.rmtree(outcome.log_dir, ignore_errors=True)
        # What a person looks for first now; the table and pictures from a detached process.
        if summarize(spec, url, tracking_uri=tracking_uri, parts=("best",)):
            summarize_later(spec, url, tracking_uri)
    rows = [r for r in trials_table(spec.name, url) if r["value"] is not None]
    rows.sort(key=lambda r: r["value"], reverse=spec.direction == "maximize")
    return StudyRun(spec, resumed, outcome, rows[:5], mlflow_location(spec), finished)


def _is_new_study(url: str, name: str) -> bool:
    """True when no study `name` exists in `url` yet (a missing SQLite file is not created)."""
    if _missing_sqlite_file(url) is not None:
        return True
    rdb = open_storage(url)
    try:
        rdb.get_study_id_from_name(name)
        return False
    except KeyError:
        return True
    finally:
        rdb.engine.dispose()


def _finished(name: str, url: str) -> int:
    rdb = open_storage(url)
    try:
        return count_trials(rdb, rdb.get_study_id_from_name(name)).finished
    finally:
        rdb.engine.dispose()


def mlflow_link(spec: StudySpec, ui_url: str | None = None) -> str | None:
    """The study's runs table in the MLflow UI (Model-training view, best trial first): on
    its tracking server, else on `ui_url` (default: where `hpsearch ui` serves a local store).
    None when the study does not track."""
    from search.mlflow_ui import DEFAULT_UI_URL, runs_table_url, ui_base

    if spec.tracking_uri is None or spec.experiment_id is None:
        return None
    base = ui_base(spec.tracking_uri) or ui_url or DEFAULT_UI_URL
    return runs_table_url(base, spec.experiment_id, spec.metric, spec.direction)


def mlflow_location(spec: StudySpec) -> str | None:
    """`mlflow_link`, and for a local store how to start the UI that serves it."""
    link = mlflow_link(spec)
    if link is None or spec.tracking_uri is None:
        return None
    if spec.tracking_uri.startswith(("http://", "https://")):
        return link
    return f"{link}  (start the UI first: hpsearch ui)"


def run_worker(
    study_name: str,
    storage: str | None = None,
    *,
    tracking_uri: str | None = None,
    max_trials: int | None = None,
) -> WorkerReport:
    """Join `study_name` as one worker (this process) until its budget is met."""
    from search.worker import run_worker as _run_worker

    url = _storage_url(storage)
    _require_store(url, study_name)
    return _run_worker(url, study_name, tracking_uri=tracking_uri, max_trials=max_trials)


# --- reading results ----------------------------------------------------------------------------


def _storage_url(storage: str | None) -> str:
    """The storage URL, absolute (a message names the file wherever the command ran)."""
    return absolute_storage_url(resolve_storage_url(storage))


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names when it does not exist (opening it would create it)."""
    from search.storage import parse_storage_url

    parsed = parse_storage_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(str(parsed.database))
    return None if path.exists() else path


def _require_store(url: str, name: str) -> None:
    """Asking for a study in a folder that has none creates no file: refuse before opening."""
    missing = _missing_sqlite_file(url)
    if missing is not None:
        raise StudyError(
            f"no study named {name!r}: the storage file {str(missing)!r} does not exist (create "
            "a study with `hpsearch run` or `hpsearch create`, or point `--storage` / "
            "HPSEARCH_STORAGE at an existing one)"
        )


@dataclass(frozen=True)
class StudyStatus:
    name: str
    n_trials: int  # the budget
    counts: TrialCounts
    metric: str
    direction: str
    best_value: float | None
    best_trial: int | None
    outcomes: dict[str, int]  # finished trials by outcome: complete, pruned, diverged
    mlflow: str | None = None  # the study's runs table in the MLflow UI (`mlflow_link`)


def study_status(
    storage: str | None = None, name: str | None = None, *, ui_url: str | None = None
) -> list[StudyStatus]:
    """Each hpsearch study in the storage (or only `name`): counts by state and outcome, best,
    and the link to its runs in the MLflow UI (a local store's on `ui_url`)."""
    url = _storage_url(storage)
    if name is not None:
        _require_store(url, name)
    elif _missing_sqlite_file(url) is not None:
        return []
    rdb = open_storage(url)
    try:
        summaries = rdb.get_all_studies()
        if name is not None and name not in {s.study_name for s in summaries}:
            raise StudyError(
                f"no study named {name!r} in {redact_url(url)!r}; studies there: "
                f"{sorted(s.study_name for s in summaries) or 'none'}"
            )
        out = []
        for summary in summaries:
            if name is not None and summary.study_name != name:
                continue
            if SPEC_ATTR not in summary.user_attrs:
                continue
            spec = StudySpec.from_json(summary.user_attrs[SPEC_ATTR])
            study_id = rdb.get_study_id_from_name(summary.study_name)
            finished = rdb.get_all_trials(
                study_id, deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
            )
            outcomes: dict[str, int] = {}
            for t in finished:
                key = str(t.user_attrs.get("outcome", t.state.name.lower()))
                outcomes[key] = outcomes.get(key, 0) + 1
            try:
                best = rdb.get_best_trial(study_id)
                best_value, best_number = best.value, best.number
            except ValueError:
                best_value = best_number = None
            out.append(
                StudyStatus(
                    spec.name,
                    spec.n_trials,
                    count_trials(rdb, study_id),
                    spec.metric,
                    spec.direction,
                    best_value,
                    best_number,
                    outcomes,
                    mlflow_link(spec, ui_url),
                )
            )
        return out
    finally:
        rdb.engine.dispose()


def study_exists(name: str, storage: str | None = None) -> bool:
    url = _storage_url(storage)
    if _missing_sqlite_file(url) is not None:
        return False
    rdb = open_storage(url)
    try:
        return name in {s.study_name for s in rdb.get_all_studies()}
    finally:
        rdb.engine.dispose()


def _load(name: str, storage: str | None) -> tuple[StudySpec, optuna.Study]:
    url = _storage_url(storage)
    _require_store(url, name)
    spec = load_spec(url, name)
    return spec, optuna.load_study(study_name=name, storage=url)


def _row(t: FrozenTrial) -> dict[str, Any]:
    config = t.user_attrs.get("config", {})
    return {
        "number": t.number,
        "state": t.state.name,
        "outcome": t.user_attrs.get("outcome", t.state.name.lower()),
        "value": t.value if t.state == TrialState.COMPLETE else None,
        **{f"params.{k}": v for k, v in t.params.items()},
        **{f"config.{k}": config[k] for k in _KEY_FIELDS if k in config},
        "epochs_run": t.user_attrs.get("epochs_run"),
        "duration_s": t.duration.total_seconds() if t.duration else None,
        "reason": t.user_attrs.get("reason") or t.user_attrs.get("retry_reason"),
        "retry_of": t.user_attrs.get("retry_of"),
        "worker": t.user_attrs.get("worker"),
        "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
    }


# The config fields a table shows besides the drawn params: what the lesson's tiers change.
_KEY_FIELDS = ("alpha", "optimizer", "beta", "hidden_units", "hidden_layers", "batch_size")


def trials_table(name: str, storage: str | None = None) -> list[dict[str, Any]]:
    """One flat dict per trial: number, state, outcome, value, drawn params, key config fields,
    reason, retry_of, worker, MLflow run id."""
    _, study = _load(name, storage)
    return [_row(t) for t in study.get_trials(deepcopy=False)]


def trials_dataframe(name: str, storage: str | None = None) -> Any:
    """`trials_table` as a pandas DataFrame, one row per trial (for a notebook)."""
    import pandas as pd

    return pd.DataFrame(trials_table(name, storage))


def best_trial(name: str, storage: str | None = None) -> FrozenTrial:
    _, study = _load(name, storage)
    try:
        return study.best_trial
    except ValueError:
        raise StudyError(
            f"study {name!r} has no complete trial yet, so it has no best configuration"
        ) from None


def best_config(name: str, storage: str | None = None) -> dict[str, Any]:
    """The best trial's full TrainConfig as a flat dict (what `hpsearch train --config` reads)."""
    trial = best_trial(name, storage)
    config = trial.user_attrs.get("config")
    if not isinstance(config, Mapping):
        raise StudyError(f"the best trial {trial.number} of {name!r} has no stored config")
    return dict(config)


def best_config_text(name: str, storage: str | None = None, fmt: str = "toml") -> str:
    config = best_config(name, storage)
    trial = best_trial(name, storage)
    if fmt == "json":
        return json.dumps(config, indent=2) + "\n"
    if fmt != "toml":
        raise StudyError(f"`format` must be 'toml' or 'json', but got {fmt!r}")
    spec = load_spec(_storage_url(storage), name)
    header = (
        f"# best trial {trial.number} of study {name!r}: {spec.metric} = {trial.value}\n"
        "# train it again with: hpsearch train --config THIS_FILE\n"
    )
    return header + dump_toml(config)


def refine_study(
    name: str,
    top: int,
    new_name: str,
    storage: str | None = None,
    *,
    n_trials: int | None = None,
    seed: int | None = None,
    out: TextIO | None = None,
) -> tuple[StudySpec, bool]:
    """Create `new_name`: the same study on a space narrowed around the best `top` trials.

    Its seed (unless given) is the new name's own, so it draws new points; with `out`, each
    searched parameter's range is printed there, old -> new.
    """
    from spaces import Space, narrow

    spec, study = _load(name, storage)
    space = Space.from_toml(spec.space_toml, source=f"study {name}")
    narrowed = narrow(space, study.get_trials(deepcopy=False), top, spec.direction)
    narrowed = dataclasses.replace(narrowed, name=f"{narrowed.name}-refined")
    if out is not None:
        for line in narrowed_ranges(space, narrowed, spec.tiers):
            print(line, file=out)
    request = request_from_spec(
        spec,
        name=new_name,
        space_toml=narrowed.to_toml(),
        seed=seed,  # None: the new name's own seed, so the narrowed space gets new points
        n_trials=spec.n_trials if n_trials is None else n_trials,
    )
    return create_study(request, storage)


def narrowed_ranges(before: Any, after: Any, tiers: int) -> list[str]:
    """One line per searched parameter: `name: old -> new`, or why it was kept."""
    lines = []
    for old in before.searched(tiers):
        new = after.param(old.name)
        was, now = old.describe_range(), new.describe_range()
        if was == now:
            lines.append(f"  {old.name}: {was} (kept: the top trials spread over it)")
        else:
            lines.append(f"  {old.name}: {was} -> {now}")
    return lines


def request_for(name: str, storage: str | None = None) -> StudyRequest:
    """The request of the existing study `name`, to change (e.g. its budget) and create again."""
    url = _storage_url(storage)
    _require_store(url, name)
    return request_from_spec(load_spec(url, name))


@dataclass
class RetrainResult:
    config: dict[str, Any]
    test_metrics: dict[str, float]
    outcome: str
    run_id: str | None
    model_logged: bool


def retrain_best(
    name: str,
    storage: str | None = None,
    *,
    tracking_uri: str | None = None,
    out: TextIO | None = None,
) -> RetrainResult:
    """Train the best configuration on train+validation and evaluate it once on the test split.

    Logged to MLflow (when the study tracks) as a child run `retrain-best` of the study run:
    the config, the per-epoch history, `test_*` metrics, and the model when the trainer
    exposes it.
    """
    from trainers import TrainConfig, prepare_data, train

    out = out or sys.stderr
    spec, _ = _load(name, storage)
    trial = best_trial(name, storage)
    config = TrainConfig.from_dict(best_config(name, storage))
    data = prepare_data(config).merged_train_val()  # its "validation" split is the test split
    result = train(config, data)
    test = {
        f"test_{k.removeprefix('val_')}": float(v)
        for k, v in result.metrics.items()
        if k.startswith("val_") and math.isfinite(v)
    }
    run_id, model_logged = None, False
    if spec.tracking_uri is not None and spec.parent_run_id is not None:
        run_id, model_logged = _log_retrain(spec, tracking_uri, trial.number, config, result, test)
    print(f"retrained trial {trial.number}'s config on train+validation: {test}", file=out)
    return RetrainResult(config.to_dict(), test, result.outcome, run_id, model_logged)


def _log_retrain(
    spec: StudySpec,
    tracking_uri: str | None,
    number: int,
    config: Any,
    result: Any,
    test: dict[str, float],
) -> tuple[str | None, bool]:
    """One child run `retrain-best` (role `retrain`, so it is never counted as a trial)."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    from search.tracking import configure_client_env

    assert spec.tracking_uri is not None and spec.parent_run_id is not None
    configure_client_env()
    from mlflow.tracking import MlflowClient

    own = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    client = MlflowClient(worker_tracking_uri(spec.tracking_uri, own, spec.parent_run_id))
    tags = {
        "mlflow.parentRunId": spec.parent_run_id,
        "mlflow.runName": "retrain-best",
        "hpsearch.study": spec.name,
        "hpsearch.role": "retrain",
        "hpsearch.retrain_of": str(number),
        "outcome": result.outcome,
    }
    run = client.create_run(str(spec.experiment_id), tags=tags, run_name="retrain-best")
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, int(h.get("epoch", i + 1)))
        for i, h in enumerate(result.history)
        for k, v in h.items()
        if k != "epoch" and math.isfinite(v)
    ] + [Metric(k, v, now, result.epochs_run) for k, v in test.items()]
    params = [Param(k, str(v)[:6000]) for k, v in config.to_dict().items()]
    for start in range(0, max(len(metrics), 1), 1000):  # MLflow's log_batch limit
        client.log_batch(
            run_id,
            metrics=metrics[start : start + 1000],
            params=params if start == 0 else [],
            tags=[RunTag("split", "train+validation -> test")] if start == 0 else [],
        )
    client.log_dict(run_id, config.to_dict(), "config.json")
    logged = False
    if result.model is not None:
        import tempfile

        import torch

        # A plain `torch.nn.Sequential`: `torch.load(path, weights_only=False)` gives a model
        # anyone can call, with no hpsearch installed; the state dict is there for safe loading.
        module = result.model.to_module()
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(module, Path(tmp) / "model.pt")
            torch.save(module.state_dict(), Path(tmp) / "state_dict.pt")
            client.log_artifacts(run_id, tmp, "model")
        logged = True
    client.set_terminated(run_id, "FINISHED" if result.outcome == "complete" else "FAILED")
    return run_id, logged
