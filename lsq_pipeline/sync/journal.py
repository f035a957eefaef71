"""The push journal: every batch is written down before it is sent and each row's outcome after,
so a run that crashed mid-push is resumed without blindly sending anything twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb


@dataclass
class JournalEntry:
    """One item of one batch: a create, capture, update or activity for one source record."""

    kind: str
    day: date | None
    source_id: str
    payload: dict
    event_id: str | None = None
    batch_id: str = ""
    status: str = "sent"
    opportunity_id: str | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


def new_batch_id() -> str:
    return uuid.uuid4().hex


def record_sent(conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry]) -> None:
    """Write the batch down before it leaves: status `sent`, no answer yet."""
    if not entries:
        return
    conn.execute(
        """
        INSERT INTO push_journal (batch_id, run_id, kind, day, source_id, event_id, payload, status, sent_at)
        SELECT unnest($1), $2, unnest($3), unnest($4)::DATE, unnest($5), unnest($6), unnest($7)::JSON,
               'sent', now()
        """,
        [
            [e.batch_id for e in entries],
            run_id,
            [e.kind for e in entries],
            [e.day for e in entries],
            [e.source_id for e in entries],
            [e.event_id for e in entries],
            [json.dumps(e.payload, ensure_ascii=False) for e in entries],
        ],
    )


def record_outcomes(conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry]) -> None:
    """Write each row's answer: `ok` with the opportunity id, `failed` with the error, or `unknown`."""
    if not entries:
        return
    conn.execute(
        """
        UPDATE push_journal AS j
        SET status = o.status, opportunity_id = o.opportunity_id, error = o.error, answered_at = now()
        FROM (
            SELECT unnest($1) AS batch_id, unnest($2) AS kind, unnest($3) AS item_key,
                   unnest($4) AS status, unnest($5) AS opportunity_id, unnest($6) AS error
        ) AS o
        WHERE j.run_id = $7 AND j.batch_id = o.batch_id AND j.kind = o.kind
          AND coalesce(j.event_id, j.source_id) = o.item_key
        """,
        [
            [e.batch_id for e in entries],
            [e.kind for e in entries],
            [e.event_id or e.source_id for e in entries],
            [e.status for e in entries],
            [e.opportunity_id for e in entries],
            [e.error for e in entries],
            run_id,
        ],
    )


def mark_interrupted(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows still `sent` belong to a run that died before the answer came: their outcome is unknown.

    Creates among them are resolved by the next create (the type's duplicate rule returns the
    existing opportunity); activities are never re-sent, since LeadSquared cannot tell a repeat."""
    rows = conn.execute(
        """
        UPDATE push_journal SET status = 'unknown', error = 'the run stopped before the answer came'
        WHERE status = 'sent'
        RETURNING kind
        """
    ).fetchall()
    counts: dict[str, int] = {}
    for (kind,) in rows:
        counts[kind] = counts.get(kind, 0) + 1
    conn.execute(
        """
        INSERT OR REPLACE INTO activity_state (event_id, source_id, opportunity_id, status, error, pushed_at)
        SELECT event_id, source_id, json_extract_string(payload, '$.opportunity_id'), 'unknown', error, answered_at
        FROM push_journal
        WHERE kind = 'activity' AND status = 'unknown'
          AND event_id NOT IN (SELECT event_id FROM activity_state WHERE status = 'created')
        """
    )
    return counts
