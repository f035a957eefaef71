"""Run history: `sync_runs` (one row per run) and `sync_errors` (one row per failed or rejected
record per run), so a person can see what each night did without reading the journal.

Everything here is computed from the warehouse (plan, journal, rejects) plus the figures the
caller passes in (API calls, timing), so it can be re-written for a run at any time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb

from lsq_pipeline.tables.statuses import REJECT, Kind, Outcome, RunStatus, Sent
from lsq_pipeline.warehouse.sql import keyed_rows, literal, literal_list, on_days, transaction

RUN_KINDS = (Kind.CREATE, Kind.UPDATE, Kind.CAPTURE, Kind.ACTIVITY)
"""The journal kinds `sync_runs` counts, in the order of its columns."""

ERROR_COLUMNS = ("run_id", "kind", "day", "source_id", "event_id", "field", "error", "payload")
# The field a LeadSquared error names: "... for field 'mx_Custom_5' ...", "A Lead with same Phone
# already exists.", or a bare schema name.
_FIELD_IN_ERROR = r"""coalesce(nullif(regexp_extract(error, 'field ''([^'']+)''', 1), ''),
                               nullif(regexp_extract(error, 'with same (\w+)', 1), ''),
                               nullif(regexp_extract(error, '(mx_[A-Za-z0-9_]+)', 1), ''))"""

_FAILED_ROW = f"""status IN {literal_list((Sent.FAILED, Sent.UNKNOWN))} AND NOT (kind = {literal(Kind.CREATE)}
    AND source_id IN (SELECT source_id FROM push_journal WHERE run_id = $1 AND kind = {literal(Kind.CAPTURE)}))"""
"""A journal row of the run `$1` that failed: refused or unanswered, and not a create the run handed
on to Capture (that one was attempted, not failed)."""


@dataclass
class RunRecord:
    """One row of `sync_runs`: what the caller knows that the warehouse does not."""

    run_id: str
    job: str
    first_day: date
    last_day: date
    status: RunStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    mode: str | None = None
    """The mapping's sync mode (upsert, update_only, create_only); None when the run never planned."""
    reason: str | None = None
    api_calls: dict[str, int] = field(default_factory=dict)
    rate_limited_calls: int = 0
    items_per_second: float | None = None
    budget_exhausted: bool = False
    pending_read_back: int | None = None
    """Records the reconcile left pending (reads lag writes: not found yet); None when it never ran."""
    missing: int | None = None
    """Records the reconcile left missing (not found past the read-back grace)."""


def batches_sent(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """The batches a run sent, by journal kind: its write calls, when the push died before its metadata."""
    return dict(conn.execute(
        f"""SELECT kind, count(DISTINCT batch_id) FROM push_journal
            WHERE run_id = $1 AND status <> {literal(Sent.NOT_SENT)} GROUP BY kind""",
        [run_id],
    ).fetchall())


def action_counts(conn: duckdb.DuckDBPyConnection, run_id: str, days: Sequence[date]) -> dict[str, int]:
    """`planned_create`, `attempted_update`, `failed_activity`, ... for one run over its days.

    Planned counts come from the plan of the days (a capture is never planned: it is a create
    whose lead was missing, so `planned_capture` is 0); the rest from the run's journal rows. A
    create handed on to Capture is counted as attempted, not failed."""
    planned = dict(
        conn.execute(
            f"""SELECT action, count(*) FROM sync_plan WHERE {on_days(days)} GROUP BY action
                UNION ALL
                SELECT {literal(Kind.ACTIVITY)}, count(*) FROM activity_plan WHERE {on_days(days)}"""
        ).fetchall()
    )
    rows = conn.execute(
        f"""
        SELECT kind, count(*) FILTER (status <> {literal(Sent.NOT_SENT)}),
               count(*) FILTER (status = {literal(Sent.OK)}), count(*) FILTER ({_FAILED_ROW})
        FROM push_journal WHERE run_id = $1 AND {on_days(days)} GROUP BY kind
        """,
        [run_id],
    ).fetchall()
    counts = {f"{outcome}_{kind}": 0 for kind in RUN_KINDS for outcome in Outcome}
    for kind in (Kind.CREATE, Kind.UPDATE, Kind.ACTIVITY):
        counts[f"{Outcome.PLANNED}_{kind}"] = planned.get(kind, 0)
    for kind, attempted, succeeded, failed in rows:
        counts[f"{Outcome.ATTEMPTED}_{kind}"] = attempted
        counts[f"{Outcome.SUCCEEDED}_{kind}"] = succeeded
        counts[f"{Outcome.FAILED}_{kind}"] = failed
    return counts


def record_errors(conn: duckdb.DuckDBPyConnection, run_id: str, days: Sequence[date]) -> int:
    """(Re)write the run's `sync_errors`: every journal row it sent that failed, and every
    rejected source row of its days. The payload is the journal's, which never holds a key."""
    with transaction(conn), keyed_rows(conn, "sync_errors", "run_id", [run_id], unique=False) as errors:
        conn.execute(f"DELETE FROM {errors} WHERE run_id = $1", [run_id])
        conn.execute(
            f"""
            INSERT INTO {errors}
            SELECT run_id, kind, day, source_id, event_id, {_FIELD_IN_ERROR}, error, payload
            FROM push_journal
            WHERE run_id = $1 AND {_FAILED_ROW}
            UNION ALL
            SELECT $1, {literal(REJECT)}, day, source_id, NULL, field, reason,
                   to_json({{'source_file': source_file, 'row_number': row_number, 'value': value}})
            FROM rejects WHERE {on_days(days)}
            """,
            [run_id],
        )
    return conn.execute("SELECT count(*) FROM sync_errors WHERE run_id = $1", [run_id]).fetchone()[0]


def day_errors(conn: duckdb.DuckDBPyConnection, run_id: str, day: date, limit: int) -> tuple[int, list[tuple]]:
    """How many of the run's `sync_errors` are of `day`, and the first `limit` of them (columns
    `ERROR_COLUMNS`), for a preview."""
    count = conn.execute("SELECT count(*) FROM sync_errors WHERE run_id = $1 AND day = $2", [run_id, day]).fetchone()[0]
    rows = conn.execute(
        f"SELECT {', '.join(ERROR_COLUMNS)} FROM sync_errors WHERE run_id = $1 AND day = $2 "
        "ORDER BY kind, source_id LIMIT $3",
        [run_id, day, limit],
    ).fetchall()
    return count, rows


def record_run(conn: duckdb.DuckDBPyConnection, record: RunRecord) -> dict[str, object]:
    """Write (or re-write) the run's `sync_runs` row and its `sync_errors`; returns the row."""
    days = _days(record.first_day, record.last_day)
    errors = record_errors(conn, record.run_id, days)
    row: dict[str, object] = {
        "run_id": record.run_id, "job": record.job, "first_day": record.first_day,
        "last_day": record.last_day, "mode": record.mode, "status": record.status,
        "reason": record.reason, "started_at": record.started_at, "ended_at": record.ended_at,
        **action_counts(conn, record.run_id, days),
        "api_calls": json.dumps(record.api_calls, sort_keys=True),
        "api_calls_total": sum(record.api_calls.values()),
        "rate_limited_calls": record.rate_limited_calls,
        "items_per_second": record.items_per_second,
        "budget_exhausted": record.budget_exhausted,
        "pending_read_back": record.pending_read_back,
        "missing": record.missing,
        "errors": errors,
    }
    with transaction(conn), keyed_rows(conn, "sync_runs", "run_id", [record.run_id]) as runs:
        conn.execute(
            f"INSERT OR REPLACE INTO {runs} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    return row


def recent_runs(conn: duckdb.DuckDBPyConnection, last: int) -> tuple[list[str], list[tuple]]:
    """The newest `last` runs, newest first: column names and rows (none before the first run)."""
    if not conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'sync_runs'").fetchone()[0]:
        return [], []
    cursor = conn.execute("SELECT * FROM sync_runs ORDER BY started_at DESC NULLS LAST, run_id LIMIT $1", [last])
    return [d[0] for d in cursor.description], cursor.fetchall()


def _days(first: date, last: date) -> list[date]:
    return [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]
