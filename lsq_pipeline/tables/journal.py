"""The owner of `push_journal`: every batch is written down before it is sent and each row's
answer after, so a run that died mid-push is resumed without blindly sending anything twice.
Also the journal's reads: what one run answered, and one record's history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

from lsq_pipeline.tables.records import JournalEntry
from lsq_pipeline.tables.statuses import ActivityStatus, Kind, Sent
from lsq_pipeline.warehouse.sql import keyed_rows, literal, one_of, queried_keys, transaction

INTERRUPTED = "the run stopped before the answer came"


def new_batch_id() -> str:
    return uuid.uuid4().hex


def record_sent(
    conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry], parent_batch_id: str | None = None
) -> None:
    """Write the batch down before it leaves: status `sent`, no answer yet, with the opportunity
    it targets when known (updates, activities). `parent_batch_id`:
    the refused batch these rows were cut from (a split)."""
    if not entries:
        return
    with transaction(conn), keyed_rows(conn, "push_journal", "batch_id", {e.batch_id for e in entries},
                                       unique=False) as journal:
        conn.execute(
            f"""
            INSERT INTO {journal} (batch_id, run_id, kind, day, source_id, event_id, payload, opportunity_id,
                                   status, sent_at, parent_batch_id)
            SELECT unnest($1), $2, unnest($3), unnest($4)::DATE, unnest($5), unnest($6), unnest($7)::JSON,
                   unnest($9), $10, now(), $8
            """,
            [
                [e.batch_id for e in entries],
                run_id,
                [e.kind for e in entries],
                [e.day for e in entries],
                [e.source_id for e in entries],
                [e.event_id for e in entries],
                [json.dumps(e.payload.to_api(), ensure_ascii=False) for e in entries],
                parent_batch_id,
                [e.opportunity_id for e in entries],
                Sent.SENT,
            ],
        )


def record_outcomes(conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry]) -> None:
    """Write each row's answer: `ok` with the opportunity id, `failed` with the error, `unknown`,
    `split` (the whole call was refused; the rows went again in halves) or `not_sent` (the day's
    call budget ran out before it), inside the caller's transaction."""
    if not entries:
        return
    with keyed_rows(conn, "push_journal", "batch_id", {e.batch_id for e in entries}, unique=False) as journal:
        conn.execute(
            f"""
            UPDATE {journal} AS j
            SET status = o.status, opportunity_id = coalesce(o.opportunity_id, j.opportunity_id), error = o.error,
                answered_at = now()
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


def record_split(conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry], error: str) -> None:
    """The whole call was refused (nothing written): its rows are `split`, to be sent again in halves."""
    for entry in entries:
        entry.status, entry.error = Sent.SPLIT, error
    with transaction(conn):
        record_outcomes(conn, run_id, entries)


def mark_interrupted(
    conn: duckdb.DuckDBPyConnection, run_id: str, run_is_alive: Callable[[str], bool]
) -> dict[str, int]:
    """Rows still `sent` by a run that is no longer alive (or by this run's own earlier, dead
    attempt of the step) will never get their answer: their outcome becomes `unknown`. Rows of
    live runs are left alone: their answers are on the way.

    Creates among them are resolved by the next create (LeadSquared's duplicate answer);
    activities are never re-sent, since LeadSquared cannot tell a repeat: their `activity_state`
    becomes `unknown` in the same transaction."""
    owners = [row[0] for row in conn.execute(
        "SELECT DISTINCT run_id FROM push_journal WHERE status = $1", [Sent.SENT]).fetchall()]
    dead = [owner for owner in owners if owner is None or owner == run_id or not run_is_alive(owner)]
    if not dead:
        return {}
    owners_dead = [owner for owner in dead if owner is not None]
    dead_rows = f"status = {literal(Sent.SENT)} AND (run_id IS NULL OR {one_of('run_id', owners_dead)})"
    with transaction(conn):  # counted, then updated: PostgreSQL tables take no UPDATE ... RETURNING
        counts = dict(conn.execute(f"SELECT kind, count(*) FROM push_journal WHERE {dead_rows} GROUP BY kind").fetchall())
        batches = queried_keys(conn, f"SELECT DISTINCT batch_id FROM push_journal WHERE {dead_rows}")
        with keyed_rows(conn, "push_journal", "batch_id", batches, unique=False) as journal:
            conn.execute(f"UPDATE {journal} SET status = {literal(Sent.UNKNOWN)}, error = $1 WHERE {dead_rows}",
                         [INTERRUPTED])
        unknown = [Kind.ACTIVITY, Sent.UNKNOWN]
        events = queried_keys(conn, "SELECT event_id FROM push_journal WHERE kind = $1 AND status = $2", unknown)
        with keyed_rows(conn, "activity_state", "event_id", events) as activities:
            conn.execute(
                f"""
                INSERT OR REPLACE INTO {activities} (event_id, source_id, opportunity_id, status, error, pushed_at)
                SELECT event_id, source_id, coalesce(opportunity_id, json_extract_string(payload, '$.opportunity_id')),
                       $3, error, answered_at
                FROM push_journal
                WHERE kind = $1 AND status = $2
                  AND event_id NOT IN (SELECT event_id FROM {activities} WHERE status = $4)
                """,
                [*unknown, ActivityStatus.UNKNOWN, ActivityStatus.CREATED],
            )
    return counts


@dataclass(frozen=True)
class RunJournal:
    """What one run's push answered, from the journal."""

    answered: dict[str, int]
    """Rows by `kind:status` (`create:ok`, `activity:failed`...)."""
    records_failed: int
    """Records with a failed row and no row that went through."""


def run_journal(conn: duckdb.DuckDBPyConnection, run_id: str) -> RunJournal:
    answered = dict(conn.execute(
        "SELECT kind || ':' || status, count(*) FROM push_journal WHERE run_id = $1 GROUP BY ALL", [run_id]
    ).fetchall())
    failed = conn.execute(
        f"""SELECT count(DISTINCT source_id) FROM push_journal
           WHERE run_id = $1 AND kind <> {literal(Kind.ACTIVITY)} AND status = {literal(Sent.FAILED)}
             AND source_id NOT IN (SELECT source_id FROM push_journal WHERE run_id = $1
                                   AND kind <> {literal(Kind.ACTIVITY)} AND status = {literal(Sent.OK)})""",
        [run_id],
    ).fetchone()[0]
    return RunJournal(answered, failed)


JOURNAL_HISTORY_COLUMNS = ("kind", "status", "batch_id", "run_id", "opportunity_id", "error", "sent_at", "answered_at")


def journal_history(conn: duckdb.DuckDBPyConnection, source_id: str) -> list[dict[str, object]]:
    """Every journal row of one record (its writes and its activities), oldest first: what was
    sent for it, by which run, and what LeadSquared answered."""
    columns = ", ".join(JOURNAL_HISTORY_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM push_journal WHERE source_id = $1 ORDER BY sent_at, batch_id, kind", [source_id]
    ).fetchall()
    return [dict(zip(JOURNAL_HISTORY_COLUMNS, row)) for row in rows]
