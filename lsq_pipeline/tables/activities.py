"""The owner of `activity_state`: each activity's outcome once LeadSquared answered it (`created`
with its id, `failed`, `unknown`), journalled with it in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from lsq_pipeline.tables.journal import record_outcomes
from lsq_pipeline.tables.records import JournalEntry
from lsq_pipeline.tables.statuses import ActivityStatus, Sent
from lsq_pipeline.warehouse.sql import keyed_rows, transaction

ACTIVITY_STATUS = {Sent.OK: ActivityStatus.CREATED, Sent.FAILED: ActivityStatus.FAILED, Sent.UNKNOWN: ActivityStatus.UNKNOWN}
"""A journal row's status -> the activity's status in `activity_state`."""


def record_activities(
    conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry], sent: bool
) -> None:
    """Journal the answers of activity writes (when they were `sent`) and set each activity's
    state (`created` with its id, `failed`, `unknown`), in one transaction. An activity
    `not_sent` (the day's call budget ran out) is journalled only: it stays planned."""
    if not entries:
        return
    with transaction(conn):
        if sent:
            record_outcomes(conn, run_id, entries)
        entries = [e for e in entries if e.status in ACTIVITY_STATUS]
        if not entries:
            return
        with keyed_rows(conn, "activity_state", "event_id", [e.event_id for e in entries]) as table:
            conn.execute(
                f"""
                INSERT OR REPLACE INTO {table}
                    (event_id, source_id, opportunity_id, activity_id, status, error, pushed_at)
                SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5), unnest($6), now()
                """,
                [
                    [e.event_id for e in entries],
                    [e.source_id for e in entries],
                    [e.opportunity_id for e in entries],
                    [e.activity_id for e in entries],
                    [ACTIVITY_STATUS[e.status] for e in entries],
                    [e.error for e in entries],
                ],
            )

