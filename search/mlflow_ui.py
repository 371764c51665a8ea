"""What a person sees of a study in the MLflow UI: where to click, and what the study run shows.

MLflow 3's UI opens an experiment on its GenAI "Overview" (traces, token usage) unless the
experiment says it is classic machine learning: the tag `mlflow.experimentKind` with the
value `custom_model_development` (the UI's `ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`, shown
as "Machine learning"; see mlflow/server/js, and mlflow/demo/generators/traces.py, which sets
`genai_development` the same way). Every study's experiment is tagged so at creation.

The printed link opens the runs table directly in the Model-training view
(`?workflowType=machine_learning`), sorted by the study's metric, best first: sorted by a
metric the table lists runs flat, so the trials are rows next to the study run rather than
folded under it.

The study run carries what one looks for first (`record_study_summary`): the study's metric
at its best value (so the study run's row has a value in the same column as its trials),
`best_value`, the trial counts by outcome as metrics, and the best trial's parameters as
`best.<name>` tags (tags, not params: a study whose budget grows may find a new best, and an
MLflow param never changes).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

_logger = logging.getLogger("search.mlflow_ui")

# Where `hpsearch ui` serves a local store by default.
DEFAULT_UI_URL = "http://127.0.0.1:5000"


def runs_table_url(base: str, experiment_id: str, metric: str | None, direction: str) -> str:
    """The experiment's runs table in the Model-training view, best trial first."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if metric:
        order = quote(f"metrics.`{metric}`", safe="")
        url += f"&orderByKey={order}&orderByAsc={'true' if direction == 'minimize' else 'false'}"
    return url


def ui_base(tracking_uri: str) -> str | None:
    """The UI's address for a tracking server; None for a local store (`hpsearch ui`)."""
    if tracking_uri.startswith(("http://", "https://")):
        from search.study import storable_tracking_uri

        return storable_tracking_uri(tracking_uri).rstrip("/")  # no password in a link
    return None


def outcome_counts(trials: Any) -> dict[str, int]:
    """Trials by outcome: complete, pruned, diverged (finished) and failed (infrastructure)."""
    counts: Counter[str] = Counter()
    for t in trials:
        state = t.state.name
        if state in ("COMPLETE", "PRUNED"):
            counts[str(t.user_attrs.get("outcome", state.lower()))] += 1
        elif state == "FAIL":
            counts["failed"] += 1
    return {k: counts.get(k, 0) for k in ("complete", "pruned", "diverged", "failed")} | dict(
        counts
    )


def record_study_summary(client: Any, run_id: str, study: Any, metric: str) -> None:
    """Put the study's best value, counts by outcome and best parameters on its run."""
    from mlflow.entities import Metric, RunTag

    from search.tracking._ops import clean_tag

    now = _now_ms()
    trials = study.get_trials(deepcopy=False)
    metrics = [Metric(f"trials_{k}", float(v), now, 0) for k, v in outcome_counts(trials).items()]
    tags = []
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if best is not None and best.value is not None and math.isfinite(best.value):
        step = best.number
        metrics += [
            Metric(metric, best.value, now, step),
            Metric("best_value", best.value, now, step),
        ]
        config: Mapping[str, Any] = best.user_attrs.get("config", {})
        shown = {**{k: config[k] for k in _BEST_FIELDS if k in config}, **best.params}
        tags = [RunTag(f"best.{k}", clean_tag(v)) for k, v in shown.items()]
        tags.append(RunTag("best_trial", str(best.number)))
    try:
        client.log_batch(run_id, metrics=metrics, tags=tags)
    except Exception as exc:
        _logger.warning("could not record the study's summary on its MLflow run: %s", exc)


# The configuration fields a best trial is read by, besides what it drew.
_BEST_FIELDS = ("optimizer", "alpha", "beta", "hidden_units", "hidden_layers", "batch_size",
                "decay")  # fmt: skip


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
