"""Storage growth: the per-trial cost of ask + suggest + tell at trial 100 and at trial 5,000.

One study, a trivial objective, the lesson space's parameters (tiers 1-3), the project's random
sampler, and the storage opened the way the service opens it (`search.storage.open_storage`:
PostgreSQL with `pool_pre_ping`, SQLite in WAL mode). The time at a point is the median over a
window of trials around it (90-110, 4990-5010): one slow commit does not move a median.

Compared with what a user gets from plain Optuna (`optuna.create_study(storage="sqlite:///...")`,
its RandomSampler) on the same trials, and with Optuna's in-memory storage (no database).
Peer figures seen before: plain Optuna on SQLite about 15 ms per trial, 16.6 ms by trial 2,000;
in-memory about 75x faster.

    .venv/bin/python -m bench.storage_bench [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from bench.common import Row, fresh_postgres_database, is_quick, row, write_result

TARGET_MS = 15.0
TARGET_GROWTH = 1.5
HALF_WINDOW = 10  # trials on each side of a point: a window of 21 trials
SEED = 7
# PostgreSQL engine settings tried at the early point, next to the service's.
_ASYNC_COMMIT = {"options": "-c synchronous_commit=off"}
WHAT_IF: dict[str, dict[str, Any]] = {
    "pg: RDBStorage, pool_pre_ping": {"pool_pre_ping": True},
    "pg: RDBStorage, no pool_pre_ping": {},
    "pg: RDBStorage, pool_pre_ping, synchronous_commit=off": {
        "pool_pre_ping": True,
        "connect_args": _ASYNC_COMMIT,
    },
}


# --- what is measured: the project's pieces when present, plain Optuna otherwise -------------


def lesson_suggest() -> tuple[Callable[[optuna.Trial], dict[str, Any]], str]:
    """The lesson space's suggest (tiers 1-3), or an equivalent hand-written one."""
    try:
        from spaces import load_space

        space = load_space("lesson")
        return (lambda trial: space.suggest(trial, tiers=3)), "spaces.load_space('lesson'), tiers=3"
    except ImportError:
        return _fallback_suggest, "hand-written lesson-like space (spaces not importable)"


def _fallback_suggest(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "alpha": trial.suggest_float("alpha", 1e-4, 1.0, log=True),
        "beta": 1 - trial.suggest_float("one_minus_beta", 1e-3, 1e-1, log=True),
        "hidden_units": 2 ** trial.suggest_int("log2_hidden_units", 4, 9),
        "batch_size": 2 ** trial.suggest_int("log2_batch_size", 4, 9),
        "hidden_layers": trial.suggest_int("hidden_layers", 1, 4),
        "decay": trial.suggest_categorical("decay", ["none", "inverse_time", "exponential"]),
    }


def project_sampler(seed: int) -> tuple[optuna.samplers.BaseSampler, str]:
    try:
        from search.samplers import make_sampler

        return make_sampler("random", seed), "search.samplers.make_sampler('random')"
    except ImportError:
        return optuna.samplers.RandomSampler(seed=seed), "optuna RandomSampler (no search.samplers)"


def project_storage(url: str) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage exactly as a worker opens it (heartbeats on, as the spec's defaults say)."""
    try:
        from search.storage import Heartbeat, open_storage

        return open_storage(url, heartbeat=Heartbeat()), "search.storage.open_storage(heartbeat)"
    except ImportError:
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        return storage, "RDBStorage(pool_pre_ping=True) (no search.storage)"


# --- the measurement ---------------------------------------------------------------------


@dataclass
class Arm:
    """One study at one point: prefilled to `point - HALF_WINDOW` finished trials, then
    measured one trial at a time, in turn with every other arm (so that a noisy neighbour on
    the machine hits all arms alike, and trial 100 and trial 5,000 are timed side by side)."""

    kind: str  # which storage: "pg", "sqlite_ours", "sqlite_plain", "memory", a what-if name
    point: int
    study: optuna.Study
    suggest: Callable[[optuna.Trial], dict[str, Any]]
    sql: _SqlCounter | None = None
    budget_check: Callable[[optuna.Study], Any] | None = None
    times: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)
    budget_check_s: list[float] = field(default_factory=list)

    def step(self, profiler: cProfile.Profile | None = None) -> None:
        if self.sql is not None:
            self.sql.reset()
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        trial = self.study.ask()
        params = self.suggest(trial)
        self.study.tell(trial, -abs(math.log10(params["alpha"]) + 2.5))  # trivial objective
        self.times.append(time.perf_counter() - t0)
        if profiler is not None:
            profiler.disable()
        if self.sql is not None:
            self.statements.append(self.sql.statements)
            self.commits.append(self.sql.commits)
        if self.budget_check is not None:
            t0 = time.perf_counter()
            self.budget_check(self.study)
            self.budget_check_s.append(time.perf_counter() - t0)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3


class _SqlCounter:
    """Counts the statements and commits an engine sends (SQLAlchemy events)."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.statements = 0
        self.commits = 0
        sa.event.listen(engine, "before_cursor_execute", self._on_statement)
        sa.event.listen(engine, "commit", self._on_commit)

    def _on_statement(self, *_: Any) -> None:
        self.statements += 1

    def _on_commit(self, *_: Any) -> None:
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.commits = 0


def template_trials(n: int, suggest: Callable[[optuna.Trial], dict[str, Any]]) -> list[Any]:
    """`n` finished trials drawn in memory with the project's sampler: the prefill of a study.

    `study.add_trials` writes each in one transaction, several times faster than ask, suggest
    and tell; the rows a database ends up with are the same (trials, params, values).
    """
    study = optuna.create_study(sampler=project_sampler(SEED)[0], direction="maximize")
    for _ in range(n):
        trial = study.ask()
        params = suggest(trial)
        study.tell(trial, -abs(math.log10(params["alpha"]) + 2.5))
    return study.get_trials(deepcopy=False)


def make_arm(
    kind: str,
    point: int,
    storage: optuna.storages.BaseStorage | str | None,
    sampler: optuna.samplers.BaseSampler,
    suggest: Callable[[optuna.Trial], dict[str, Any]],
    templates: Sequence[Any],
    engine: Any = None,
    budget_check: Callable[[optuna.Study], Any] | None = None,
    prefill_storage: optuna.storages.BaseStorage | None = None,
) -> Arm:
    """A study at `point`: prefilled, warmed up by one trial, ready for its measured window.

    `prefill_storage` (the same database, opened without durable commits) writes the prefill
    faster; the rows are the same, and the measured storage then loads the study by name.
    """
    name = f"storage-bench-{kind}-{point}"
    writer = prefill_storage if prefill_storage is not None else storage
    study = optuna.create_study(study_name=name, storage=writer, direction="maximize")
    prefill = point - HALF_WINDOW - 1
    started = time.perf_counter()
    for chunk in range(0, prefill, 500):
        _add_trials(study, templates[chunk : min(chunk + 500, prefill)])
    print(f"  {kind}: {prefill} trials prefilled in {time.perf_counter() - started:.0f} s")
    if prefill_storage is not None:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    else:
        study.sampler = sampler
    arm = Arm(kind, point, study, suggest, budget_check=budget_check)
    # The first trial of a fresh process loads the study's trials into Optuna's cache: a
    # one-off cost (a worker joining pays it once), kept out of the window.
    arm.step()
    arm.times.clear()
    arm.budget_check_s.clear()
    arm.sql = _SqlCounter(engine) if engine is not None else None
    return arm


def _add_trials(study: optuna.Study, trials: Sequence[Any]) -> None:
    """`study.add_trials`, in one transaction per call on an RDBStorage (private Optuna API,
    with the public call as the fallback): the prefill is setup, not what is measured."""
    storage = getattr(study._storage, "_backend", study._storage)
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        prepare = storage._get_prepared_new_trial
        scoped = storage.scoped_session
    except (ImportError, AttributeError):
        study.add_trials(trials)
        return
    with _create_scoped_session(scoped) as session:
        models.StudyModel.find_or_raise_by_id(study._study_id, session, for_update=True)
        for trial in trials:
            prepare(study._study_id, trial, session)


def fast_writer(url: str) -> optuna.storages.RDBStorage:
    """The same database without durable commits: only for writing the prefill quickly."""
    if url.startswith("sqlite"):
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        sa_event_listen_sqlite_fast(storage.engine)
        return storage
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": _ASYNC_COMMIT})


def sa_event_listen_sqlite_fast(engine: Any) -> None:
    import sqlalchemy as sa

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    sa.event.listen(engine, "connect", on_connect)
    engine.dispose()


def measure(arms: Sequence[Arm], profile_arm: Arm | None = None) -> str:
    """One trial per arm per round, for a window of rounds; the order rotates each round."""
    profiler = cProfile.Profile() if profile_arm is not None else None
    for r in range(2 * HALF_WINDOW + 1):
        shift = r % len(arms)
        for arm in [*arms[shift:], *arms[:shift]]:
            arm.step(profiler if arm is profile_arm else None)
    if profiler is None:
        return ""
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
    return text.getvalue()


def postgres_budget_check(study: optuna.Study) -> Any:
    """The worker's per-ask budget check (one GROUP BY over the study's trials)."""
    from search.storage import count_trials

    # Private attributes: the RDBStorage under Optuna's cache, and the study's id.
    storage = study._storage
    rdb = getattr(storage, "_backend", storage)
    return count_trials(rdb, study._study_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="trials 100 and 1,000 only")
    parser.add_argument("--profile", action="store_true", help="profile the late window (PG)")
    parser.add_argument("--late", type=int, default=None, help="the late point (default 5000)")
    args = parser.parse_args(argv)
    quick = args.quick or is_quick(argv if argv is not None else sys.argv[1:])
    early, late = (100, 1000) if quick else (100, 5000)
    late = args.late or late
    if late < early + 2 * HALF_WINDOW + 1:
        raise SystemExit(f"`--late` must be >= {early + 2 * HALF_WINDOW + 1}, but got {late}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the service logs trials its own way
    # "Heartbeat of storage is supposed to be used with Study.optimize": the worker asks and
    # tells with heartbeats on, and silences the same warning.
    warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)

    suggest, suggest_name = lesson_suggest()
    sampler_name = project_sampler(SEED)[1]
    try:
        import search.storage  # noqa: F401

        budget_check: Callable[[optuna.Study], Any] | None = postgres_budget_check
    except ImportError:
        budget_check = None
    started = time.perf_counter()
    templates = template_trials(late, suggest)

    with (
        fresh_postgres_database("hpsearch_bench_storage") as pg_url,
        tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp,
    ):
        pg, storage_name = project_storage(pg_url)
        ours_sqlite, _ = project_storage(f"sqlite:///{Path(tmp) / 'ours.db'}")
        plain_sqlite = f"sqlite:///{Path(tmp) / 'plain.db'}"
        what_if = {
            key: optuna.storages.RDBStorage(pg_url, engine_kwargs=kwargs)
            for key, kwargs in WHAT_IF.items()
        }
        writers = {
            "pg": fast_writer(pg_url),
            "sqlite_ours": fast_writer(f"sqlite:///{Path(tmp) / 'ours.db'}"),
            "sqlite_plain": fast_writer(plain_sqlite),
        }
        arms: list[Arm] = []
        print(f"prefilling (PostgreSQL: {storage_name}, {sampler_name})", flush=True)
        for point in (early, late):
            for kind, storage in (("pg", pg), ("sqlite_ours", ours_sqlite)):
                engine = getattr(storage, "engine", None)
                arms.append(
                    make_arm(
                        kind, point, storage, project_sampler(SEED)[0], suggest, templates,
                        engine=engine if kind == "pg" else None,
                        budget_check=budget_check if kind == "pg" else None,
                        prefill_storage=writers[kind],
                    )
                )  # fmt: skip
            for kind, plain in (("sqlite_plain", plain_sqlite), ("memory", None)):
                sampler = optuna.samplers.RandomSampler(seed=SEED)
                arms.append(
                    make_arm(
                        kind, point, plain, sampler, suggest, templates,
                        prefill_storage=writers.get(kind),
                    )
                )  # fmt: skip
        for key, storage in what_if.items():
            arms.append(
                make_arm(
                    key, early, storage, project_sampler(SEED)[0], suggest, templates,
                    prefill_storage=writers["pg"],
                )
            )  # fmt: skip
        print(f"measuring {len(arms)} arms x {2 * HALF_WINDOW + 1} trials, interleaved", flush=True)
        profile_arm = next(a for a in arms if a.kind == "pg" and a.point == late)
        profile_text = measure(arms, profile_arm if args.profile else None)
        for storage in (pg, ours_sqlite, *what_if.values(), *writers.values()):
            engine = getattr(storage, "engine", None)
            if engine is not None:
                engine.dispose()  # the database is dropped next; no connection may stay open
    by_key = {(a.kind, a.point): a for a in arms}
    rows = build_rows(by_key, early, late)
    pg_arms = [by_key["pg", p] for p in (early, late)]
    notes = [
        f"median of ask + suggest + tell over trials {early - HALF_WINDOW}-{early + HALF_WINDOW} "
        f"and {late - HALF_WINDOW}-{late + HALF_WINDOW}: each study is prefilled with finished "
        "trials (study.add_trials) and warmed up by one trial, then every study runs one trial "
        "in turn, so all figures come from the same minutes; trivial objective; Optuna logging "
        "at WARNING",
        f"ours: {storage_name}, {sampler_name}, {suggest_name}; "
        "theirs: optuna.create_study(storage='sqlite:///file'), RandomSampler, same suggest",
        "peer figures seen before: plain Optuna SQLite ~15 ms/trial, 16.6 ms by trial 2,000; "
        "in-memory ~75x faster than SQLite",
        "SQL per trial on PostgreSQL (ask + suggest + tell; counts do not depend on the load): "
        + ", ".join(
            f"{statistics.fmean(a.statements):.1f} statements and "
            f"{statistics.fmean(a.commits):.1f} commits at trial {a.point}"
            for a in pg_arms
            if a.statements
        )
        + " (Optuna's RDBStorage writes each suggest_* in its own transaction; pool_pre_ping "
        "adds a round trip per connection checkout)",
        f"the whole benchmark took {time.perf_counter() - started:.0f} s",
    ]
    if late != 5000:
        notes.append(f"the late point is trial {late}, not 5,000 (--quick or --late)")
    if all(a.budget_check_s for a in pg_arms):
        notes.append(
            "the worker's budget check (search.storage.count_trials, one GROUP BY) costs "
            + ", ".join(
                f"{statistics.median(a.budget_check_s) * 1e3:.2f} ms at trial {a.point}"
                for a in pg_arms
            )
        )
    if profile_text:
        notes.append(
            f"profile of the trial-{late} window (PostgreSQL), cumulative:\n{profile_text}"
        )
    settings = {
        "window": 2 * HALF_WINDOW + 1,
        "tiers": 3,
        "sampler_seed": SEED,
        "postgres_storage": storage_name,
    }
    path = write_result("storage", rows, notes=notes, settings=settings)
    for r in rows:
        print(f"  {r['what']}: ours={r['ours']} theirs={r['theirs']} {r['unit']} met={r['met']}")
    print(f"wrote {path}")
    return 0


def build_rows(arms: dict[tuple[str, int], Arm], early: int, late: int) -> list[Row]:
    def ms(kind: str, point: int) -> float:
        return arms[kind, point].median_ms

    pg_growth = ms("pg", late) / ms("pg", early)
    plain_growth = ms("sqlite_plain", late) / ms("sqlite_plain", early)
    ours_sqlite_growth = ms("sqlite_ours", late) / ms("sqlite_ours", early)
    memory_growth = ms("memory", late) / ms("memory", early)
    return [
        *(
            row(
                f"ask+tell per trial at trial {point:,}: PostgreSQL (ours) vs plain Optuna SQLite",
                ms("pg", point),
                ms("sqlite_plain", point),
                unit="ms",
                target=f"<= {TARGET_MS:g} ms",
                met=ms("pg", point) <= TARGET_MS,
            )
            for point in (early, late)
        ),
        row(
            f"growth trial {late:,} / trial {early:,}: PostgreSQL (ours) vs plain Optuna SQLite",
            pg_growth,
            plain_growth,
            unit="x",
            target=f"<= {TARGET_GROWTH:g}x",
            met=pg_growth <= TARGET_GROWTH,
            auto_ratio=False,  # a ratio of two growths says nothing more
        ),
        *(
            row(
                f"ask+tell per trial at trial {point:,}: SQLite, ours (WAL) vs plain Optuna",
                ms("sqlite_ours", point),
                ms("sqlite_plain", point),
                unit="ms",
                target=f"<= {TARGET_MS:g} ms",
                met=ms("sqlite_ours", point) <= TARGET_MS,
            )
            for point in (early, late)
        ),
        row(
            f"growth trial {late:,} / trial {early:,}: SQLite, ours (WAL) vs plain Optuna",
            ours_sqlite_growth,
            plain_growth,
            unit="x",
            target=f"<= {TARGET_GROWTH:g}x",
            met=ours_sqlite_growth <= TARGET_GROWTH,
            auto_ratio=False,
        ),
        *(
            row(
                f"ask+tell per trial at trial {point:,}: PostgreSQL (ours) vs in-memory",
                ms("pg", point),
                ms("memory", point),
                unit="ms",
            )
            for point in (early, late)
        ),
        *(
            row(
                f"what-if at trial {early:,}: {key} vs the service's storage",
                ms(key, early),
                ms("pg", early),
                unit="ms",
            )
            for key in WHAT_IF
            if (key, early) in arms
        ),
        row(
            f"growth trial {late:,} / trial {early:,}: in-memory (reference)",
            memory_growth,
            None,
            unit="x",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
