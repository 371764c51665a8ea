"""A study: what is searched, on what data, for how many trials, stored with the Optuna study.

Why one module: the request, its validation, the stored spec and the rule of when two specs are
the same study change together; split, each change would touch every part.

`StudySpec` holds everything a worker needs; it is stored as the Optuna study's user attribute
`hpsearch_spec` (JSON), so a worker joins with only a storage URL and a study name.

The spec is resolved and validated *before* anything is written: the base `TrainConfig`, the
space, the sampler, the pruner, the metric, and the dataset (loaded once). Creating a study whose
name exists resumes it when the configuration is the same and is refused, naming the fields that
differ, when it is not.

Tracking URI. The spec stores the MLflow tracking URI *without its password* (storage rows are
readable by anyone who can read the study). A worker uses its own `--tracking-uri` or
`$MLFLOW_TRACKING_URI` when it points at the same server (it carries the worker's credentials;
the same address, or another address whose server holds the study's parent run), and the
stored one otherwise (see `worker_tracking_uri`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from search.errors import InfrastructureError, StudyError
from search.redact import remember_url, strip_secrets
from search.storage import (
    Heartbeat,
    absolute_storage_url,
    open_storage,
    redact_url,
)
from spaces.toml_text import dump_toml

SPEC_ATTR = "hpsearch_spec"
SPEC_VERSION = 1
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
# The metrics a trainer reports each epoch, by task (what a study may optimize).
TASK_METRICS = {
    "classification": ("val_accuracy", "val_loss", "train_loss"),
    "regression": ("val_rmse", "val_mae", "val_loss", "train_loss"),
}
_NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}$")

# Fields that define what a study searches: a different value under an existing name is a
# different study. The others (tracking ids, heartbeat timing) are operational.
IDENTITY_FIELDS = (
    "space_toml", "tiers", "base", "metric", "direction", "sampler", "seed", "n_trials",
    "pruner",
)  # fmt: skip


@dataclass(frozen=True)
class StudySpec:
    name: str  # the Optuna study name, the MLflow experiment name
    space_toml: str  # the space as text (a study is immune to later edits of the file)
    space_name: str  # where the space came from: a built-in name or a file path (display only)
    tiers: int  # search tiers 1..tiers; the rest stay at their defaults
    base: dict[str, Any]  # TrainConfig overrides every trial shares (dataset, epochs, device...)
    metric: str  # the value a trial reports to Optuna: a key of the trainer's metrics
    direction: str  # maximize | minimize
    sampler: str = "random"
    seed: int = 0  # the sampler's seed
    n_trials: int = 20  # the budget: finished (complete, pruned or diverged) trials
    pruner: str = "none"  # none | median | hyperband
    tracking_uri: str | None = None  # MLflow, without password; None: tracking off
    artifact_location: str | None = None  # the experiment's, for a local store; None: server's
    experiment_id: str | None = None
    parent_run_id: str | None = None
    heartbeat_interval_s: int = 5
    grace_period_s: int = 20
    max_retries: int = 3  # attempts after an infrastructure failure, per trial
    # What resolving found in the data (e.g. `dropped_rows`, with missing_target = "drop").
    data_notes: dict[str, Any] = field(default_factory=dict)

    @property
    def heartbeat(self) -> Heartbeat:
        return Heartbeat(self.heartbeat_interval_s, self.grace_period_s)

    def to_json(self) -> dict[str, Any]:
        return {"version": SPEC_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StudySpec:
        values = dict(data)
        version = values.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise StudyError(
                f"the study's spec version must be {SPEC_VERSION}, but got {version!r}: it was "
                "created by another hpsearch version"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def differences(self, other: StudySpec, *, ignore: tuple[str, ...] = ()) -> list[str]:
        """The identity fields whose values differ, each as `field: stored -> requested`."""
        out = []
        for name in IDENTITY_FIELDS:
            if name in ignore:
                continue
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "space_toml":
                if not _same_space(mine, theirs):
                    out.append(f"space: {self.space_name!r} -> {other.space_name!r} (contents)")
            elif name == "base":
                for key in sorted(set(mine) | set(theirs)):
                    if mine.get(key) != theirs.get(key):
                        out.append(f"train.{key}: {mine.get(key)!r} -> {theirs.get(key)!r}")
            elif mine != theirs:
                out.append(f"{name}: {mine!r} -> {theirs!r}")
        return out

    def config_dict(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The full TrainConfig (as a flat dict) of a trial's sampled values."""
        from trainers import TrainConfig

        return TrainConfig.from_dict({**self.base, **params}).to_dict()


def _same_space(a: str, b: str) -> bool:
    if a == b:
        return True
    from spaces import Space

    try:
        return bool(Space.from_toml(a) == Space.from_toml(b))
    except Exception:
        return False


# --- building and validating a spec ----------------------------------------------------------


@dataclass
class StudyRequest:
    """What a user asks for (CLI flags or a study file); `resolve()` turns it into a spec."""

    name: str | None = None
    space: str = "lesson"  # a built-in name or a path to a space TOML file
    space_toml: str | None = None  # an inline space, as TOML text (wins over `space`)
    tiers: int | None = None  # None: 3, or the space's last tier if it has fewer
    train: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None  # None: the task's default metric
    direction: str | None = None  # None: from the metric
    sampler: str | None = None  # None: the space's preferred sampler, else "random"
    seed: int | None = None  # None: derived from the study's name (`default_seed`)
    n_trials: int = 20
    force_budget: bool = False  # allow a budget above `study_checks.MAX_TRIALS`
    pruner: str = "none"
    tracking_uri: str | None = None  # None: the default (env or local store) unless no_tracking
    no_tracking: bool = False
    heartbeat_interval_s: int = 5
    grace_period_s: int = 20
    max_retries: int = 3
    workers: int | str | None = None  # a `run` option carried by a study file

    def resolve(self, storage_url: str) -> StudySpec:
        """Validate everything (loading each dataset the trials can draw once) and fill
        defaults. Writes nothing: whatever a study can need is checked here (see
        `search.study_checks`), before the Optuna study or the MLflow experiment exist.

        `storage_url` places the default MLflow store (beside a SQLite storage file).
        """
        from search import study_checks as checks
        from search.samplers import make_sampler
        from spaces import Space, load_space
        from trainers import TrainConfig, default_metric

        _check_int("trials", self.n_trials, low=1)
        checks.check_budget(self.n_trials, bool(self.force_budget))
        if self.tiers is not None:
            _check_int("tiers", self.tiers, low=1)
        if self.seed is not None:
            _check_int("seed", self.seed, low=0)
        if self.name is not None:
            check_study_name(self.name)  # an empty name is refused, never replaced
        _check_int("max_retries", self.max_retries, low=0)
        heartbeat = Heartbeat(self.heartbeat_interval_s, self.grace_period_s)
        if self.pruner not in PRUNERS:
            raise StudyError(f"`pruner` must be one of {list(PRUNERS)}, but got {self.pruner!r}")

        base = dict(self.train)
        TrainConfig.from_dict(base)  # ConfigError names the field
        if self.space_toml is not None:
            space = Space.from_toml(self.space_toml)
            space_name = "inline"
        else:
            space = load_space(self.space)
            space_name = self.space
        space_toml = space.to_toml()
        tiers = checks.resolve_tiers(self.tiers, space)
        sampler = self.sampler or space.sampler or "random"
        make_sampler(sampler, self.seed or 0, space)  # SpaceError for grid or unknown names

        # What every trial holds, and every value the space can draw into it.
        fixed = checks.fixed_config(space, base)
        checks.check_drawn_values(space, tiers, fixed)
        checks.check_devices(space, tiers, fixed)
        # Each dataset a trial can draw is loaded and checked once here (without torch: this
        # command never trains), so a typo fails before anything exists.
        data = checks.load_drawn_data(space, tiers, fixed)
        config = TrainConfig.from_dict(fixed)
        metric, direction = self.metric, self.direction
        if metric is None:
            metric, default_direction = default_metric(data.task)
            direction = direction or default_direction
        allowed = TASK_METRICS.get(data.task, ())
        if metric not in allowed:
            raise StudyError(
                f"`metric` must be one of {list(allowed)} for a {data.task} dataset "
                f"({config.dataset!r}), but got {metric!r}"
            )
        if direction is None:
            direction = "maximize" if metric == "val_accuracy" else "minimize"
        if direction not in DIRECTIONS:
            raise StudyError(
                f"`direction` must be one of {list(DIRECTIONS)}, but got {direction!r}"
            )

        name = (
            self.name if self.name is not None else default_study_name(config.dataset, space_name)
        )
        check_study_name(name)
        seed = self.seed if self.seed is not None else default_seed(name)
        tracking_uri = artifact_location = None
        if not self.no_tracking:
            if self.tracking_uri:
                tracking_uri = storable_tracking_uri(self.tracking_uri)
                artifact_location = local_artifact_location(tracking_uri)
            else:
                from search.tracking import default_tracking_uri

                uri, artifact_location = default_tracking_uri(absolute_storage_url(storage_url))
                tracking_uri = storable_tracking_uri(uri)
        return StudySpec(
            name=name,
            space_toml=space_toml,
            space_name=space_name,
            tiers=tiers,
            base=base,
            metric=metric,
            direction=direction,
            sampler=sampler,
            seed=seed,
            n_trials=self.n_trials,
            pruner=self.pruner,
            tracking_uri=tracking_uri,
            artifact_location=artifact_location,
            heartbeat_interval_s=heartbeat.interval_s,
            grace_period_s=heartbeat.grace_s,
            max_retries=self.max_retries,
            data_notes={
                "rows": data.n_rows,
                "dropped_rows": data.dropped_rows,
            },
        )


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StudyError(f"`{name}` must be an integer, but got {name}={value!r}")
    if value < low or (high is not None and value > high):
        rule = f">= {low}" if high is None else f"in {low}..{high}"
        raise StudyError(f"`{name}` must be {rule}, but got {name}={value!r}")


def check_study_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RULE.match(name):
        raise StudyError(
            "`name` (the study name) must be 1-200 letters, digits or `_.:@+-`, starting with a "
            f"letter or digit, but got name={name!r}"
        )


def default_study_name(dataset: str, space_name: str) -> str:
    """DATASET-SPACE: a file's stem (`data/cars.csv` -> `cars`), a built-in's name as is, so
    two studies on two datasets in one folder never collide (`digits` + `lesson`: the demo's
    `digits-lesson`)."""
    stem = Path(dataset).stem if ("/" in dataset or "." in dataset) else dataset
    space = Path(space_name).stem
    name = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", f"{stem}-{space}")
    return name if name[0].isalnum() else f"s{name}"


def default_seed(name: str) -> int:
    """The sampler's seed when none is given: stable for one name, different across names, so
    a study and its `refine`d successor (or two studies on two datasets) draw different points.
    A CRC, not `hash()`: Python salts `hash(str)` per process."""
    return zlib.crc32(name.encode()) % 1_000_000


def request_from_spec(spec: StudySpec, **changes: Any) -> StudyRequest:
    """The request that resolves to `spec` again (the space inline, as stored), with `changes`:
    how `refine` derives a study and how `run --name X --trials N` grows one."""
    request = StudyRequest(
        name=spec.name,
        space_toml=spec.space_toml,
        tiers=spec.tiers,
        train=dict(spec.base),
        metric=spec.metric,
        direction=spec.direction,
        sampler=spec.sampler,
        seed=spec.seed,
        n_trials=spec.n_trials,
        pruner=spec.pruner,
        tracking_uri=spec.tracking_uri,
        no_tracking=spec.tracking_uri is None,
        heartbeat_interval_s=spec.heartbeat_interval_s,
        grace_period_s=spec.grace_period_s,
        max_retries=spec.max_retries,
    )
    return dataclasses.replace(request, **changes)


# --- study files ----------------------------------------------------------------------------

_STUDY_KEYS = {
    "name": "name", "trials": "n_trials", "n_trials": "n_trials", "seed": "seed",
    "sampler": "sampler", "tiers": "tiers", "metric": "metric", "direction": "direction",
    "pruner": "pruner", "tracking_uri": "tracking_uri", "workers": "workers",
    "force_budget": "force_budget",
    "heartbeat_interval": "heartbeat_interval_s", "grace_period": "grace_period_s",
    "max_retries": "max_retries",
}  # fmt: skip


def read_study_file(path: str | Path) -> StudyRequest:
    """Parse a study TOML file: `[study]`, `[space]` (name, path or inline) and `[train]`.

    ```toml
    [study]
    name = "digits-lesson"
    trials = 12
    seed = 0
    sampler = "random"
    tiers = 2
    pruner = "none"        # metric/direction default to the task's (val_accuracy, maximize)

    [space]
    name = "lesson"        # or: path = "my_space.toml" (relative to this file), or the space's
                           # own tables inline under [space]

    [train]
    dataset = "digits"
    epochs = 10
    ```
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise StudyError(f"the study file {str(file)!r} cannot be read: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"the study file {str(file)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"study", "space", "train"})
    if unknown:
        raise StudyError(
            f"a study file has the tables [study], [space] and [train], but {str(file)!r} "
            f"also has {unknown}"
        )
    request = StudyRequest()
    for key, value in doc.get("study", {}).items():
        if key not in _STUDY_KEYS:
            raise StudyError(
                f"[study] key must be one of {sorted(_STUDY_KEYS)}, but got {key!r} in "
                f"{str(file)!r}"
            )
        setattr(request, _STUDY_KEYS[key], value)
    space = dict(doc.get("space", {}))
    if "path" in space:
        space_path = Path(space.pop("path"))
        if not space_path.is_absolute():
            space_path = file.parent / space_path
        request.space = str(space_path)
    elif set(space) == {"name"}:
        request.space = str(space.pop("name"))
    elif space:
        request.space_toml = dump_toml(space)
    request.train = dict(doc.get("train", {}))
    return request


# --- tracking URIs ----------------------------------------------------------------------------


def storable_tracking_uri(uri: str) -> str:
    """The URI with no secret at all (stored in the study, shown in links): no password, no
    secret query parameter (`?token=`, `?password=`...); a local SQLite path made absolute.
    Workers take their credentials from their own `--tracking-uri` or environment."""
    remember_url(uri)
    if "://" not in uri:
        return uri
    scheme = uri.split("://", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgresql", "mysql", "mssql")):
        from sqlalchemy.engine import make_url

        try:
            parsed = make_url(uri)
        except Exception:
            raise StudyError(
                "the tracking URI must be an http(s) or SQLAlchemy URL, but got "
                f"{redact_url(uri)!r}"
            ) from None
        in_rest = "@" in (parsed.host or "") or "@" in (parsed.database or "")
        if in_rest and parsed.get_backend_name() != "sqlite":
            raise StudyError(
                "the tracking URI's password must write `@` as `%40` (percent-encoded), but "
                f"got a second `@` in {redact_url(uri)!r}"
            )
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
        uri = parsed.render_as_string(hide_password=False)
    return strip_secrets(uri)


def local_artifact_location(tracking_uri: str) -> str | None:
    """`mlartifacts/` beside a local SQLite MLflow store (else MLflow's `./mlruns` in whatever
    directory a worker happens to run in); None for a server, which decides itself."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(tracking_uri).database
    if not database or database == ":memory:":
        return None
    return (Path(database).expanduser().resolve().parent / "mlartifacts").as_uri()


def _location(uri: str) -> str:
    """A URI with no credentials: two URIs with the same location reach the same server."""
    return storable_tracking_uri(uri).rstrip("/")


def worker_tracking_uri(stored: str, own: str | None, parent_run_id: str | None = None) -> str:
    """The URI a worker logs to: its own (with its credentials) when it is the same server.

    The same server under another address counts: a worker host reaches host 1's MLflow
    through a tunnel or a published port (`http://127.0.0.1:5000`), while the study stores the
    address its creator used (`http://mlflow:5000`, a name only host 1's containers resolve).
    So an http(s) URI that holds the study's parent run is the study's server.
    """
    if own and _location(own) == _location(stored):
        return own
    if own and parent_run_id and own.lower().startswith(("http://", "https://")):
        from search.tracking import holds_run

        if holds_run(own, parent_run_id):
            return own
    if own:
        warnings.warn(
            f"this worker's tracking URI {redact_url(own)!r} is not the study's "
            f"{redact_url(stored)!r}; logging to the study's",
            stacklevel=2,
        )
    return stored


# --- the study in storage ----------------------------------------------------------------------


def tracking_params(spec: StudySpec) -> dict[str, Any]:
    """The study's settings as flat MLflow params of its parent run."""
    params: dict[str, Any] = {
        "space": spec.space_name, "tiers": spec.tiers, "sampler": spec.sampler,
        "seed": spec.seed, "n_trials": spec.n_trials, "metric": spec.metric,
        "direction": spec.direction, "pruner": spec.pruner,
    }  # fmt: skip
    params.update({f"train.{k}": v for k, v in spec.base.items()})
    # e.g. data.dropped_rows: how many rows `missing_target = "drop"` left out
    params.update({f"data.{k}": v for k, v in spec.data_notes.items()})
    return params


def create_study(spec: StudySpec, storage_url: str) -> tuple[StudySpec, bool]:
    """Create the study (and its MLflow experiment and parent run), or resume it.

    Returns the stored spec and whether it already existed. A different configuration under an
    existing name raises `StudyError` naming the fields that differ; nothing is written then.
    """
    storage_url = absolute_storage_url(storage_url)
    tracked = spec.tracking_uri is not None and _fresh_sqlite(storage_url)
    if tracked:
        # MLflow first: an unreachable tracking server must leave no storage file behind.
        spec = _with_study_run(spec, storage_url)
    storage = open_storage(storage_url)
    try:
        existing = _stored_spec(storage, spec.name)
        if existing is not None:
            return _resume(existing, spec, storage, storage_url), True
        if spec.tracking_uri is not None and not tracked:
            spec = _with_study_run(spec, storage_url)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=spec.name,
                direction=optuna.study.StudyDirection[spec.direction.upper()],  # validated
            )
        except optuna.exceptions.DuplicatedStudyError:
            # Another process created it between our look and our create: join its spec.
            existing = _stored_spec(storage, spec.name, wait_s=10.0)
            if existing is None:
                raise _not_ours(spec.name, storage_url) from None
            return _resume(existing, spec, storage, storage_url), True
        study.set_user_attr(SPEC_ATTR, spec.to_json())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Optuna's own tools (optuna-dashboard) show the metric's name, not "Objective 0".
            study.set_metric_names([spec.metric])
        return spec, False
    finally:
        storage.engine.dispose()


def _fresh_sqlite(storage_url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(storage_url)
    return parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).exists()


def _with_study_run(spec: StudySpec, storage_url: str) -> StudySpec:
    """`spec` with its MLflow experiment and parent run, created (or found) now.

    An unreachable server is `InfrastructureError` (one line, exit 1), a request it refuses
    `StudyError`: never MLflow's traceback."""
    from search.tracking import ensure_study_run
    from search.tracking._env import describe, is_permanent, make_client
    from search.tracking._study_run import mark_classic_ml

    assert spec.tracking_uri is not None
    # urllib3 logs each retry of a refused connection: the one line below says it all.
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    level = urllib3_log.level
    urllib3_log.setLevel(logging.ERROR)
    try:
        ref = ensure_study_run(
            spec.tracking_uri,
            spec.name,
            tracking_params(spec),
            tags={"hpsearch.storage": redact_url(storage_url)},
            artifact_location=spec.artifact_location,
        )
        mark_classic_ml(make_client(ref.tracking_uri), str(ref.experiment_id))
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if is_permanent(exc):
            raise StudyError(
                f"the tracking server {redact_url(spec.tracking_uri)!r} refused the study "
                f"{spec.name!r}: {describe(exc)}"
            ) from None
        if isinstance(exc, MlflowException | OSError):
            errno = re.search(r"\[Errno [^\]]+\][^'\"()]*", str(exc))
            raise InfrastructureError(
                f"the tracking server {redact_url(spec.tracking_uri)!r} is unreachable, so "
                "nothing was created (start it, or pass --no-tracking): "
                f"{errno.group(0).strip() if errno else describe(exc)}"
            ) from None
        raise
    finally:
        urllib3_log.setLevel(level)
    return dataclasses.replace(
        spec, experiment_id=str(ref.experiment_id), parent_run_id=str(ref.parent_run_id)
    )


def _resume(existing: StudySpec, requested: StudySpec, storage: Any, storage_url: str) -> StudySpec:
    """The stored spec, its budget raised when `requested` asks for more trials.

    The budget is the one identity field that may change: raising it keeps every finished
    trial (trial n's configuration depends only on the seed and n, so the new trials are the
    ones a bigger study would have drawn) and runs the difference. Lowering it is refused: the
    finished trials would no longer match the budget they were drawn for.
    """
    diffs = existing.differences(requested, ignore=("n_trials",))
    if diffs:
        raise StudyError(
            f"a study named {existing.name!r} already exists in {redact_url(storage_url)!r} "
            f"with a different configuration ({'; '.join(diffs)}); resume it with the same "
            "settings or choose another --name"
        )
    if requested.n_trials < existing.n_trials:
        raise StudyError(
            f"`trials` of the existing study {existing.name!r} can only grow, but got "
            f"trials={requested.n_trials} < its {existing.n_trials}; choose another --name for "
            "a smaller study"
        )
    if requested.n_trials == existing.n_trials:
        return existing
    return grow_budget(existing, requested.n_trials, storage)


# Set once a study's summary is stored in MLflow (`search.api.summarize`); cleared when its
# budget grows, so that the grown study is summarized again at its new end.
SUMMARIZED_ATTR = "hpsearch:summarized"


def grow_budget(spec: StudySpec, n_trials: int, storage: Any) -> StudySpec:
    """Store `spec` with budget `n_trials` (workers read it when they start) and reopen its
    MLflow parent run, which the study's end had closed."""
    grown = dataclasses.replace(spec, n_trials=n_trials)
    study_id = storage.get_study_id_from_name(spec.name)
    storage.set_study_user_attr(study_id, SPEC_ATTR, grown.to_json())
    storage.set_study_system_attr(study_id, SUMMARIZED_ATTR, False)
    if spec.tracking_uri is not None and spec.parent_run_id is not None:
        _reopen_parent_run(grown)
    return grown


def _reopen_parent_run(spec: StudySpec) -> None:
    from search.tracking._env import make_client

    assert spec.tracking_uri is not None and spec.parent_run_id is not None
    try:
        client = make_client(spec.tracking_uri)
        client.update_run(spec.parent_run_id, status="RUNNING")
        client.set_tag(spec.parent_run_id, "hpsearch.n_trials", str(spec.n_trials))
    except Exception as exc:  # a convenience: the budget is in the study, not in MLflow
        logging.getLogger("search.study").warning(
            "could not reopen the study's MLflow run: %s", redact_url(str(exc))
        )


def _not_ours(name: str, storage_url: str) -> StudyError:
    return StudyError(
        f"the study {name!r} in {redact_url(storage_url)!r} was not created by hpsearch "
        f"(it has no {SPEC_ATTR!r} user attribute); choose another --name"
    )


def _stored_spec(storage: Any, name: str, wait_s: float = 0.0) -> StudySpec | None:
    """The spec stored with study `name`, None if there is no such study.

    `wait_s` covers the instant between a concurrent creator's create and its set_user_attr.
    """
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            return None
        attrs = storage.get_study_user_attrs(study_id)
        if SPEC_ATTR in attrs:
            return StudySpec.from_json(attrs[SPEC_ATTR])
        if time.monotonic() >= deadline:
            raise _not_ours(name, str(storage.url))
        time.sleep(0.2)


def load_spec(storage_url: str, name: str) -> StudySpec:
    """The spec of study `name`; `StudyError` listing the studies there when it does not exist."""
    storage = open_storage(storage_url)
    try:
        return read_spec(storage, name, storage_url)
    finally:
        storage.engine.dispose()


def read_spec(storage: Any, name: str, storage_url: str) -> StudySpec:
    """`load_spec` on a storage already open (a worker opens one for its life)."""
    spec = _stored_spec(storage, name, wait_s=10.0)
    if spec is None:
        names = sorted(s.study_name for s in storage.get_all_studies())
        raise StudyError(
            f"no study named {name!r} in {redact_url(storage_url)!r}; studies there: "
            f"{names or 'none'}"
        )
    return spec


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    epochs = int(spec.base.get("epochs", 20))
    if spec.pruner == "median":
        # Five complete trials before judging, and never before a third of the epochs: early
        # epochs of good and bad learning rates look alike.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 3))
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()
