"""A study's trials as a job queue: claim, heartbeat, record, fail and retry.

Each operation is one transaction of set-based statements on Optuna's own tables (see
`search.optuna_internals`), whatever the number of trials it covers, so a worker's storage cost per
trial falls with the batch it claims. The rules that make the budget exact:

- Claimable trials are WAITING trials (retries of failed attempts) and fresh ones. WAITING ones
  are popped with `FOR UPDATE SKIP LOCKED` (the job-queue claim of Procrastinate and Oban):
  claimers never wait on each other. Fresh trials are created only while finished + running +
  waiting < budget, counted under the study row's lock: the same lock Optuna's own trial
  creation takes, held for one short transaction per batch, never across training.
- A fresh trial's parameters are drawn before its row is written (keyed samplers make trial
  n's configuration a pure function of the seed and n) and written with it; an adaptive
  sampler's trials are created bare and sample through `optuna.Trial` (the slow path).
- Failing an attempt and queueing its retry is one transaction under the same lock, so the
  study is never one trial short in between (another worker could otherwise create a fresh
  trial and overshoot the budget), and a crash between the two cannot lose the retry.
- A result is written only over a RUNNING trial: a trial failed as stale meanwhile (its worker
  was paused or cut off) keeps its FAIL, and the late result is discarded.

SQLite has no row locks: there the first statement of each transaction is a write, which takes
the database's single write lock for the whole transaction (WAL mode, busy timeout).

Why one module: the operations share these invariants (who may create a trial, under which
lock, from which states), and the budget is exact only if they are read and changed together.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import sqlalchemy as sa
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.trial import TrialState

from search.optuna_internals import (
    HEARTBEATS,
    PARAMS,
    STUDIES,
    SYSTEM_ATTRS,
    TRIALS,
    USER_ATTRS,
    VALUES,
    stored_value,
    utc_now,
)
from search.redact import redact_json

RETRY_OF = "retry_of"
RETRY_REASON = "retry_reason"
RETRY_HISTORY = "retry_history"  # system attr: the numbers of the failed attempts before it
FAILED_TRIAL = "failed_trial"  # system attr: the first attempt's number


@dataclass(frozen=True)
class Draw:
    """A fresh trial's parameters, drawn before its row exists (external values)."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]


@dataclass(frozen=True)
class ClaimedTrial:
    trial_id: int
    number: int
    params: dict[str, Any] = field(default_factory=dict)  # empty: sampled while it runs
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    retry_of: int | None = None
    attempt: int = 0  # failed attempts of this configuration before this one


@dataclass(frozen=True)
class TrialCounts:
    """A study's trials by state. PRUNED holds both pruned and diverged trials (both finished)."""

    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        """Trials that count toward the budget: a real result of their configuration."""
        return self.complete + self.pruned

    @property
    def live(self) -> int:
        """Finished plus those that will finish: a fresh trial is created only while < budget."""
        return self.finished + self.running + self.waiting

    @property
    def total(self) -> int:
        return self.live + self.failed


@dataclass(frozen=True)
class Claim:
    trials: list[ClaimedTrial]
    counts: TrialCounts | None  # counted when the WAITING trials did not cover the demand


@dataclass(frozen=True)
class TrialResult:
    """A finished attempt to write: COMPLETE with a value, PRUNED, or FAIL (not retried)."""

    trial_id: int
    state: TrialState
    value: float | None
    attrs: Mapping[str, Any]  # user attributes; `outcome` tells a lost acknowledgement apart


class Recorded(Enum):
    WRITTEN = "written"
    ALREADY = "already"  # an earlier try committed it (its acknowledgement was lost)
    LATE = "late"  # failed as stale before the result arrived: discarded


@dataclass(frozen=True)
class FailedAttempt:
    trial_id: int
    number: int
    user_attrs: dict[str, Any]
    attempt: int
    requeued: bool


AttrsOf = Callable[[ClaimedTrial], Mapping[str, Any]]
DrawOf = Callable[[int], Draw]


class TrialQueue:
    """The queue operations on one study, over an SQLAlchemy engine shared with Optuna."""

    def __init__(self, engine: sa.Engine, study_id: int) -> None:
        self.engine = engine
        self.study_id = study_id
        self._postgres = engine.dialect.name == "postgresql"

    # --- claiming ----------------------------------------------------------------------------

    def claim(
        self, n: int, budget: int, draw: DrawOf | None, attrs_of: AttrsOf | None = None
    ) -> Claim:
        """Up to `n` trials set RUNNING for the caller, with their heartbeat rows (so a claimer
        that dies at once is failed as stale like any other) and `attrs_of`'s user attributes.

        WAITING trials come first; then fresh ones numbered next, while the budget allows,
        with `draw(number)`'s parameters (None: created without parameters).
        """
        with self.engine.begin() as conn:
            popped = self._pop_waiting(conn, n)
            counts = None
            fresh: list[ClaimedTrial] = []
            if len(popped) < n:
                self._lock_study(conn)
                counts = count_by_state(conn, self.study_id)
                room = min(n - len(popped), budget - counts.live)
                if room > 0:
                    fresh = self._create_fresh(conn, counts.total, room, draw)
            claimed = [*popped, *fresh]
            if claimed:
                ids = [t.trial_id for t in claimed]
                _replace_heartbeats(conn, ids)
                if attrs_of is not None:
                    _write_attrs(conn, USER_ATTRS, {t.trial_id: attrs_of(t) for t in claimed})
        return Claim(claimed, counts)

    def _pop_waiting(self, conn: sa.Connection, n: int) -> list[ClaimedTrial]:
        pick = (
            sa.select(TRIALS.c.trial_id)
            .where(TRIALS.c.study_id == self.study_id, TRIALS.c.state == TrialState.WAITING)
            .order_by(TRIALS.c.trial_id)
            .limit(n)
            .with_for_update(skip_locked=True)  # ignored by SQLite (one writer at a time)
        )
        rows = conn.execute(
            sa.update(TRIALS)
            .where(TRIALS.c.trial_id.in_(pick.scalar_subquery()))
            .values(state=TrialState.RUNNING, datetime_start=utc_now())
            .returning(TRIALS.c.trial_id, TRIALS.c.number)
        ).all()
        return _describe(conn, rows)

    def adopt(self, worker: str, attrs_of: AttrsOf | None = None) -> list[ClaimedTrial]:
        """RUNNING trials claimed under `worker`'s name: after a claim whose commit went through
        while its acknowledgement was lost, the claimer takes them instead of orphaning them."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(TRIALS.c.trial_id, TRIALS.c.number)
                .join(USER_ATTRS, USER_ATTRS.c.trial_id == TRIALS.c.trial_id)
                .where(
                    TRIALS.c.study_id == self.study_id,
                    TRIALS.c.state == TrialState.RUNNING,
                    USER_ATTRS.c.key == "worker",
                    USER_ATTRS.c.value_json == json.dumps(worker),
                )
            ).all()
            claimed = _describe(conn, rows)
            if claimed:
                ids = [t.trial_id for t in claimed]
                _replace_heartbeats(conn, ids)
                if attrs_of is not None:
                    _write_attrs(conn, USER_ATTRS, {t.trial_id: attrs_of(t) for t in claimed})
        return claimed

    def user_attr(self, trial_ids: Sequence[int], key: str) -> dict[int, Any]:
        if not trial_ids:
            return {}
        with self.engine.connect() as conn:
            attrs = _read_attrs(conn, USER_ATTRS, trial_ids, (key,))
        return {i: values[key] for i, values in attrs.items()}

    def _create_fresh(
        self, conn: sa.Connection, first: int, count: int, draw: DrawOf | None
    ) -> list[ClaimedTrial]:
        numbers = range(first, first + count)
        draws = {n: draw(n) for n in numbers} if draw is not None else {}
        now = utc_now()
        rows = conn.execute(
            sa.insert(TRIALS).returning(
                TRIALS.c.trial_id, TRIALS.c.number, sort_by_parameter_order=True
            ),
            [
                {"study_id": self.study_id, "number": n, "state": TrialState.RUNNING,
                 "datetime_start": now}
                for n in numbers
            ],
        ).all()  # fmt: skip
        out = []
        param_rows: list[dict[str, Any]] = []
        for r in rows:
            d = draws.get(r.number, Draw({}, {}))
            param_rows += _param_rows(r.trial_id, d.params, d.distributions)
            out.append(ClaimedTrial(r.trial_id, r.number, dict(d.params), dict(d.distributions)))
        if param_rows:
            conn.execute(sa.insert(PARAMS), param_rows)
        return out

    def _lock_study(self, conn: sa.Connection) -> None:
        """Serialize trial creation with every other creator, Optuna's included (it locks the
        same row). SQLite: this transaction already holds the database's write lock."""
        if self._postgres:
            conn.execute(
                sa.select(STUDIES.c.study_id)
                .where(STUDIES.c.study_id == self.study_id)
                .with_for_update()
            )

    def release(self, trial_ids: Sequence[int]) -> None:
        """Give claimed trials that never started back to the queue (a worker stopping)."""
        if not trial_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(TRIALS)
                .where(TRIALS.c.trial_id.in_(trial_ids), TRIALS.c.state == TrialState.RUNNING)
                .values(state=TrialState.WAITING, datetime_start=None)
            )
            conn.execute(sa.delete(HEARTBEATS).where(HEARTBEATS.c.trial_id.in_(trial_ids)))
            conn.execute(
                sa.delete(USER_ATTRS).where(
                    USER_ATTRS.c.trial_id.in_(trial_ids),
                    USER_ATTRS.c.key.in_(("worker", "config", "derived")),
                )
            )

    # --- liveness ----------------------------------------------------------------------------

    def heartbeat(self, trial_ids: Sequence[int]) -> set[int]:
        """Beat for every held trial in one statement; return those no longer RUNNING (failed
        as stale while this worker was away: their results will be void)."""
        if not trial_ids:
            return set()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(HEARTBEATS)
                .where(HEARTBEATS.c.trial_id.in_(trial_ids))
                .values(heartbeat=sa.func.now())
            )
            lost = conn.execute(
                sa.select(TRIALS.c.trial_id).where(
                    TRIALS.c.trial_id.in_(trial_ids), TRIALS.c.state != TrialState.RUNNING
                )
            ).scalars()
            return set(lost)

    def stale(self, grace_s: float) -> list[int]:
        """RUNNING trials whose last heartbeat is older than `grace_s`, by the database's clock
        (the clock Optuna's heartbeats use: hosts' clocks may disagree)."""
        with self.engine.connect() as conn:
            now = conn.execute(sa.select(sa.func.now())).scalar_one()
            if isinstance(now, str):  # SQLite's CURRENT_TIMESTAMP, untyped in some versions
                now = datetime.datetime.fromisoformat(now)
            cutoff = now.replace(tzinfo=None) - datetime.timedelta(seconds=grace_s)
            rows = conn.execute(
                sa.select(TRIALS.c.trial_id)
                .join(HEARTBEATS, HEARTBEATS.c.trial_id == TRIALS.c.trial_id)
                .where(
                    TRIALS.c.study_id == self.study_id,
                    TRIALS.c.state == TrialState.RUNNING,
                    HEARTBEATS.c.heartbeat < cutoff,
                )
                .order_by(TRIALS.c.trial_id)
            ).scalars()
            return list(rows)

    # --- ending attempts ---------------------------------------------------------------------

    def record(self, results: Sequence[TrialResult]) -> dict[int, Recorded]:
        """Write finished attempts (state, value, attributes) in one transaction."""
        if not results:
            return {}
        by_id = {r.trial_id: r for r in results}
        written: set[int] = set()
        now = utc_now()
        with self.engine.begin() as conn:
            for state in sorted({r.state for r in results}, key=lambda s: s.value):
                ids = [r.trial_id for r in results if r.state == state]
                written |= set(
                    conn.execute(
                        sa.update(TRIALS)
                        .where(TRIALS.c.trial_id.in_(ids), TRIALS.c.state == TrialState.RUNNING)
                        .values(state=state, datetime_complete=now)
                        .returning(TRIALS.c.trial_id)
                    ).scalars()
                )
            value_rows = []
            for trial_id in sorted(written):
                r = by_id[trial_id]
                if r.state == TrialState.COMPLETE and r.value is not None:
                    value, kind = stored_value(r.value)
                    value_rows.append(
                        {"trial_id": trial_id, "objective": 0, "value": value, "value_type": kind}
                    )
            if value_rows:
                conn.execute(sa.insert(VALUES), value_rows)
            _write_attrs(conn, USER_ATTRS, {i: by_id[i].attrs for i in written})
            missing = [i for i in by_id if i not in written]
            stored = _read_attrs(conn, USER_ATTRS, missing, ("outcome",)) if missing else {}
        status = {i: Recorded.WRITTEN for i in written}
        for i in missing:
            ours = stored.get(i, {}).get("outcome") == by_id[i].attrs.get("outcome")
            status[i] = Recorded.ALREADY if ours else Recorded.LATE
        return status

    def fail(
        self,
        reasons: Mapping[int, str],
        max_retries: int,
        attrs: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> list[FailedAttempt]:
        """Fail RUNNING attempts (infrastructure faults: a dead or stopped worker, a lost
        device) and queue a WAITING retry of each with the same parameters, in one
        transaction. Attempts no longer RUNNING are left alone (someone else ended them).

        The retry is a new trial (Optuna never reopens a finished one) that records where it
        came from (`retry_of`, `retry_reason`), not the dead attempt's run id or worker.
        """
        if not reasons:
            return []
        ids = sorted(reasons)
        with self.engine.begin() as conn:
            self._lock_study(conn)
            rows = conn.execute(
                sa.update(TRIALS)
                .where(TRIALS.c.trial_id.in_(ids), TRIALS.c.state == TrialState.RUNNING)
                .values(state=TrialState.FAIL, datetime_complete=utc_now())
                .returning(TRIALS.c.trial_id, TRIALS.c.number)
            ).all()
            if not rows:
                return []
            failed = sorted(rows, key=lambda r: r.number)
            failed_ids = [r.trial_id for r in failed]
            user = _read_attrs(conn, USER_ATTRS, failed_ids)
            system = _read_attrs(conn, SYSTEM_ATTRS, failed_ids, (RETRY_HISTORY, FAILED_TRIAL))
            _write_attrs(
                conn,
                USER_ATTRS,
                {
                    i: {"outcome": "infra", "reason": reasons[i][:500], **(attrs or {}).get(i, {})}
                    for i in failed_ids
                },
            )
            counts = count_by_state(conn, self.study_id)
            next_number = counts.total
            out = []
            for r in failed:
                history = [*system.get(r.trial_id, {}).get(RETRY_HISTORY, []), r.number]
                requeue = len(history) <= max_retries
                if requeue:
                    original = system.get(r.trial_id, {}).get(FAILED_TRIAL, r.number)
                    self._insert_retry(
                        conn, r.trial_id, next_number,
                        {RETRY_OF: r.number, RETRY_REASON: reasons[r.trial_id][:500]},
                        {FAILED_TRIAL: original, RETRY_HISTORY: history},
                    )  # fmt: skip
                    next_number += 1
                out.append(
                    FailedAttempt(
                        r.trial_id, r.number, user.get(r.trial_id, {}), len(history) - 1, requeue
                    )
                )
        return out

    def _insert_retry(
        self,
        conn: sa.Connection,
        failed_id: int,
        number: int,
        user_attrs: Mapping[str, Any],
        system_attrs: Mapping[str, Any],
    ) -> None:
        new_id = conn.execute(
            sa.insert(TRIALS)
            .values(study_id=self.study_id, number=number, state=TrialState.WAITING)
            .returning(TRIALS.c.trial_id)
        ).scalar_one()
        conn.execute(
            sa.insert(PARAMS).from_select(
                ["trial_id", "param_name", "param_value", "distribution_json"],
                sa.select(
                    sa.literal(new_id), PARAMS.c.param_name, PARAMS.c.param_value,
                    PARAMS.c.distribution_json,
                ).where(PARAMS.c.trial_id == failed_id),
            )
        )  # fmt: skip
        _write_attrs(conn, USER_ATTRS, {new_id: user_attrs}, replace=False)
        _write_attrs(conn, SYSTEM_ATTRS, {new_id: system_attrs}, replace=False)

    # --- reading -----------------------------------------------------------------------------

    def counts(self) -> TrialCounts:
        with self.engine.connect() as conn:
            return count_by_state(conn, self.study_id)

    def states(self, trial_ids: Iterable[int]) -> dict[int, TrialState]:
        ids = list(trial_ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(TRIALS.c.trial_id, TRIALS.c.state).where(TRIALS.c.trial_id.in_(ids))
            ).all()
        return {r.trial_id: _state(r.state) for r in rows}


# --- statements shared by the operations ---------------------------------------------------


def count_by_state(conn: sa.Connection, study_id: int) -> TrialCounts:
    """One GROUP BY query, not a load of every trial."""
    rows = conn.execute(
        sa.select(TRIALS.c.state, sa.func.count())
        .where(TRIALS.c.study_id == study_id)
        .group_by(TRIALS.c.state)
    ).all()
    by_state = {_state(s): int(n) for s, n in rows}
    return TrialCounts(
        complete=by_state.get(TrialState.COMPLETE, 0),
        pruned=by_state.get(TrialState.PRUNED, 0),
        running=by_state.get(TrialState.RUNNING, 0),
        waiting=by_state.get(TrialState.WAITING, 0),
        failed=by_state.get(TrialState.FAIL, 0),
    )


def _state(value: Any) -> TrialState:
    return value if isinstance(value, TrialState) else TrialState[str(value)]


def _param_rows(
    trial_id: int, params: Mapping[str, Any], dists: Mapping[str, BaseDistribution]
) -> list[dict[str, Any]]:
    return [
        {
            "trial_id": trial_id,
            "param_name": name,
            "param_value": dists[name].to_internal_repr(value),
            "distribution_json": distribution_to_json(dists[name]),
        }
        for name, value in params.items()
    ]


def _read_params(
    conn: sa.Connection, ids: Sequence[int]
) -> dict[int, tuple[dict[str, Any], dict[str, BaseDistribution]]]:
    out: dict[int, tuple[dict[str, Any], dict[str, BaseDistribution]]] = {}
    rows = conn.execute(
        sa.select(
            PARAMS.c.trial_id, PARAMS.c.param_name, PARAMS.c.param_value,
            PARAMS.c.distribution_json,
        )
        .where(PARAMS.c.trial_id.in_(ids))
        .order_by(PARAMS.c.param_id)
    )  # fmt: skip
    for r in rows:
        dist = json_to_distribution(r.distribution_json)
        values, dists = out.setdefault(r.trial_id, ({}, {}))
        values[r.param_name] = dist.to_external_repr(r.param_value)
        dists[r.param_name] = dist
    return out


def _read_attrs(
    conn: sa.Connection, table: sa.Table, ids: Sequence[int], keys: Sequence[str] | None = None
) -> dict[int, dict[str, Any]]:
    query = sa.select(table.c.trial_id, table.c.key, table.c.value_json).where(
        table.c.trial_id.in_(ids)
    )
    if keys is not None:
        query = query.where(table.c.key.in_(keys))
    out: dict[int, dict[str, Any]] = {}
    for r in conn.execute(query):
        out.setdefault(r.trial_id, {})[r.key] = json.loads(r.value_json)
    return out


def _write_attrs(
    conn: sa.Connection,
    table: sa.Table,
    attrs: Mapping[int, Mapping[str, Any]],
    replace: bool = True,
) -> None:
    """Set attributes of several trials: one DELETE and one INSERT (Optuna: a transaction per
    key). Values are JSON, as Optuna stores them, their strings redacted (a failure's reason
    may quote a driver's message, URL included)."""
    rows = [
        {"trial_id": i, "key": k, "value_json": json.dumps(redact_json(v))}
        for i, values in attrs.items()
        for k, v in values.items()
    ]
    if not rows:
        return
    if replace:
        keys = sorted({str(row["key"]) for row in rows})
        conn.execute(
            sa.delete(table).where(table.c.trial_id.in_(list(attrs)), table.c.key.in_(keys))
        )
    conn.execute(sa.insert(table), rows)


def _replace_heartbeats(conn: sa.Connection, ids: Sequence[int]) -> None:
    # One row per trial, as Optuna's `record_heartbeat` keeps it; a released trial had one.
    conn.execute(sa.delete(HEARTBEATS).where(HEARTBEATS.c.trial_id.in_(ids)))
    conn.execute(
        sa.insert(HEARTBEATS).from_select(
            ["trial_id", "heartbeat"],
            sa.select(TRIALS.c.trial_id, sa.func.now()).where(TRIALS.c.trial_id.in_(ids)),
        )
    )


def _describe(conn: sa.Connection, rows: Sequence[Any]) -> list[ClaimedTrial]:
    """Claimed trials from (trial_id, number) rows, with their parameters and retry lineage."""
    if not rows:
        return []
    ids = [r.trial_id for r in rows]
    params = _read_params(conn, ids)
    user = _read_attrs(conn, USER_ATTRS, ids, (RETRY_OF,))
    system = _read_attrs(conn, SYSTEM_ATTRS, ids, (RETRY_HISTORY,))
    out = []
    for r in sorted(rows, key=lambda r: r.number):
        values, dists = params.get(r.trial_id, ({}, {}))
        out.append(
            ClaimedTrial(
                r.trial_id,
                r.number,
                values,
                dists,
                retry_of=user.get(r.trial_id, {}).get(RETRY_OF),
                attempt=len(system.get(r.trial_id, {}).get(RETRY_HISTORY, [])),
            )
        )
    return out
