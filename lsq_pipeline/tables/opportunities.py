"""The owner of `opportunity_state` and `opportunity_adoption`: what the push's answers and the
read-back's findings make of each source record's row, each in its own transaction, through
`sql.keyed_rows`. And the push's reads of them (which records may already hold an opportunity)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import duckdb

from lsq_pipeline.tables.journal import record_outcomes
from lsq_pipeline.tables.records import JournalEntry, ReadBack
from lsq_pipeline.tables.statuses import CREATE_KINDS, Action, Kind, RecordStatus, Sent
from lsq_pipeline.warehouse.sql import keyed_rows, literal, literal_list, on_days, one_of, queried_keys, transaction

EARLIER_VERSIONS_KEPT = 5
"""Versions sent before the last write and not yet confirmed that a read-back may still show
(several runs inside one lag); older ones are past any grace."""
MISSING_NOT_RECREATED = ("mode update_only: the opportunity was not found in LeadSquared past the read-back grace "
                         "(missing), and this mode never re-creates it")
"""The reason of a `missing` record skipped under update_only: its state stays `missing`."""


def record_answers(
    conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry], event_code: int
) -> None:
    """Journal the answers of opportunity writes and move their records' state rows, in one
    transaction: `ok` rows become `pending` (sent, not yet read back); `failed` rows, and `unknown`
    ones left unresolved, `failed` with the error (a lost answer is retryable). Rows `passed_on`
    (to Capture, or back to Bulk Add) wait for that answer. A create answered by an opportunity
    this pipeline did not create, sent with an `adoption`, is an adoption (see `_record_adoptions`)."""
    ok = [e for e in entries if e.status == Sent.OK]
    failed = [e for e in entries if e.status in (Sent.FAILED, Sent.UNKNOWN) and not e.passed_on]
    with transaction(conn):
        record_outcomes(conn, run_id, entries)
        _upsert_pending(conn, ok, event_code)
        _upsert_failed(conn, failed, event_code)
        _record_adoptions(conn, ok)


def _upsert_pending(conn: duckdb.DuckDBPyConnection, entries: list[JournalEntry], event_code: int) -> None:
    """An answered write: the state row now holds the opportunity and what was sent, until reconcile.
    The read-back's grace starts now (`read_back_since`), and the versions sent before this write
    and not confirmed since are kept (`earlier_sent_fields`, the last `EARLIER_VERSIONS_KEPT`), so a
    lagging read that still shows one of them is told from drift."""
    if not entries:
        return
    records = [e.record for e in entries]
    with keyed_rows(conn, "opportunity_state", "source_id", [e.source_id for e in entries]) as table:
        conn.execute(
            f"""
            INSERT INTO {table} AS s
                (source_id, opportunity_id, event_code, sent_hash, sent_fields, source_updated_at, status, error,
                 last_synced_at, read_back_since)
            SELECT unnest($1), unnest($2), $3, unnest($4), unnest($5)::JSON, unnest($6)::TIMESTAMP, $8, NULL, now(),
                   now()
            ON CONFLICT (source_id) DO UPDATE SET
                opportunity_id = excluded.opportunity_id, event_code = excluded.event_code,
                earlier_sent_fields = to_json(list_slice(list_filter(
                    CASE WHEN s.status IN {literal_list((RecordStatus.PENDING, RecordStatus.MISSING, RecordStatus.FAILED))}
                         THEN coalesce(s.earlier_sent_fields::JSON::JSON[], [])
                         ELSE [] END || [s.sent_fields], lambda version: version IS NOT NULL), -$7, -1)),
                sent_hash = excluded.sent_hash, sent_fields = excluded.sent_fields::JSON,
                source_updated_at = excluded.source_updated_at, status = $8, error = NULL,
                last_synced_at = excluded.last_synced_at, attempts = 0, read_back_since = excluded.read_back_since
            """,
            [
                [e.source_id for e in entries],
                [e.opportunity_id for e in entries],
                event_code,
                [r.record_hash for r in records],
                [json.dumps(r.full_fields, ensure_ascii=False, sort_keys=True) for r in records],
                [r.source_updated_at for r in records],
                EARLIER_VERSIONS_KEPT,
                RecordStatus.PENDING,
            ],
        )


def _record_adoptions(conn: duckdb.DuckDBPyConnection, entries: list[JournalEntry]) -> None:
    """`opportunity_adoption` follows the answered writes: an adoption (a create that met an
    opportunity this pipeline did not create, sent with an `adoption`) gets a row whose
    baseline the read-back will take; a create of our own (it sent every field) ends any earlier
    adoption; an update's fields are the source's again, no longer kept from the adoption."""
    creates = [entry for entry in entries if entry.kind in CREATE_KINDS]
    adopted = [entry for entry in creates if entry.adoption is not None]
    ours = [entry.source_id for entry in creates if entry.adoption is None]
    updates = [(entry.source_id, sorted(entry.record.fields)) for entry in entries if entry.kind == Kind.UPDATE]
    keys = [*ours, *(e.source_id for e in adopted), *(source_id for source_id, _ in updates)]
    if not keys:
        return
    with keyed_rows(conn, "opportunity_adoption", "source_id", keys) as adoption:
        if ours:
            conn.execute(f"DELETE FROM {adoption} WHERE source_id IN {literal_list(ours)}")
        if adopted:
            conn.execute(
                f"""
                INSERT OR REPLACE INTO {adoption}
                    (source_id, opportunity_id, on_existing, keep_owner, adopted_at, kept_fields, baseline_at)
                SELECT unnest($1), unnest($2), unnest($3), unnest($4), now(), NULL, NULL
                """,
                [[e.source_id for e in adopted], [e.opportunity_id for e in adopted],
                 [e.adoption.on_existing for e in adopted], [e.adoption.keep_owner for e in adopted]],
            )
        if updates:
            conn.execute(
                f"""
                UPDATE {adoption} AS a
                SET kept_fields = to_json(map_from_entries(list_filter(
                        map_entries(CAST(a.kept_fields::JSON AS MAP(VARCHAR, VARCHAR))),
                        lambda e: NOT list_contains(u.sent, e.key))))
                FROM (SELECT unnest($1) AS source_id, unnest($2::VARCHAR[][]) AS sent) AS u
                WHERE a.source_id = u.source_id AND a.kept_fields IS NOT NULL
                """,
                [[source_id for source_id, _ in updates], [names for _, names in updates]],
            )


def _record_baselines(conn: duckdb.DuckDBPyConnection, updates: Sequence[ReadBack]) -> None:
    """An adoption's baseline, taken by the read-back: the fields where LeadSquared kept its own value."""
    taken = [update for update in updates if update.kept_fields is not None]
    if not taken:
        return
    with keyed_rows(conn, "opportunity_adoption", "source_id", [u.source_id for u in taken]) as adoption:
        conn.execute(
            f"""
            UPDATE {adoption} AS a SET kept_fields = u.kept_fields::JSON, baseline_at = now()
            FROM (SELECT unnest($1) AS source_id, unnest($2) AS kept_fields) AS u
            WHERE a.source_id = u.source_id
            """,
            [[u.source_id for u in taken], [u.kept_fields for u in taken]],
        )


def _upsert_failed(conn: duckdb.DuckDBPyConnection, entries: list[JournalEntry], event_code: int) -> None:
    """A refused write: the record is `failed` with the error; what was synced before stays, and
    the refused version's `failed_hash` is kept so that exact version is not sent again (after a
    transient error, not before `max_attempts` sends: see the plan). `attempts` counts the failed
    sends of that version."""
    if not entries:
        return
    with keyed_rows(conn, "opportunity_state", "source_id", [e.source_id for e in entries]) as table:
        conn.execute(
            f"""
            INSERT INTO {table} AS s
                (source_id, event_code, status, error, failed_hash, last_synced_at, attempts)
            SELECT unnest($1), $2, $5, unnest($3), unnest($4), now(), 1
            ON CONFLICT (source_id) DO UPDATE SET status = excluded.status, error = excluded.error,
                attempts = CASE WHEN s.failed_hash = excluded.failed_hash THEN coalesce(s.attempts, 0) + 1 ELSE 1 END,
                failed_hash = excluded.failed_hash, last_synced_at = excluded.last_synced_at
            """,
            [[e.source_id for e in entries], event_code, [e.error for e in entries],
             [e.record.failed_hash for e in entries], RecordStatus.FAILED],
        )


def settle(
    conn: duckdb.DuckDBPyConnection,
    updates: Sequence[ReadBack],
    event_code: int,
    days: Sequence[date],
    drift: dict[str, dict] | None = None,
    repaired: dict[str, set[str]] | None = None,
) -> int:
    """What reconcile read back, in one transaction: each `ReadBack` settles its state row, with
    `drift` (source id -> {field: {sent, held, modified_on}}) and the fields `repaired` (sent
    again); rejected records of `days` that were never synced get a `rejected` row, and those the
    sync mode skipped a `skipped` one. Returns how many were new rejects."""
    with transaction(conn):
        if updates:
            _settle_read_back(conn, updates)
            _record_baselines(conn, updates)
        _record_drift(conn, drift or {}, repaired or {})
        _mark_skipped(conn, event_code, days)
        return _mark_rejected(conn, event_code, days)


def _record_drift(conn: duckdb.DuckDBPyConnection, drift: dict[str, dict], repaired: dict[str, set[str]]) -> None:
    """Per read-back row: the drifted fields with the value sent, the value held and LeadSquared's
    ModifiedOn (NULL when none); and, when some were sent again, which and when."""
    if not drift:
        return
    source_ids = list(drift)
    with keyed_rows(conn, "opportunity_state", "source_id", source_ids) as state:
        conn.execute(
            f"""
            UPDATE {state} AS s
            SET drift = u.drift::JSON,
                repaired_fields = CASE WHEN len(u.repaired) > 0 THEN u.repaired ELSE s.repaired_fields END,
                repaired_at = CASE WHEN len(u.repaired) > 0 THEN now() ELSE s.repaired_at END
            FROM (SELECT unnest($1) AS source_id, unnest($2) AS drift, unnest($3::VARCHAR[][]) AS repaired) AS u
            WHERE s.source_id = u.source_id
            """,
            [source_ids,
             [json.dumps(drift[source_id], ensure_ascii=False, sort_keys=True) if drift[source_id] else None
              for source_id in source_ids],
             [sorted(repaired.get(source_id, ())) for source_id in source_ids]],
        )


def _mark_skipped(conn: duckdb.DuckDBPyConnection, event_code: int, days: Sequence[date]) -> None:
    """Records of these days that the sync mode skipped: state `skipped`, the reason in `error`
    (a known opportunity keeps its id and what was last sent). A `missing` record skipped under
    `update_only` keeps the status its read-back gave (`missing`, or found after all): it is
    reported as missing, never re-created."""
    skipped = f"{on_days(days)} AND action = {literal(Action.SKIPPED)} AND reason IS DISTINCT FROM $1"
    keys = queried_keys(conn, f"SELECT source_id FROM sync_plan WHERE {skipped}", [MISSING_NOT_RECREATED])
    with keyed_rows(conn, "opportunity_state", "source_id", keys) as state:
        conn.execute(
            f"""
            INSERT INTO {state} (source_id, event_code, status, error, last_synced_at)
            SELECT source_id, $2, {literal(RecordStatus.SKIPPED)}, reason, now() FROM sync_plan WHERE {skipped}
            ON CONFLICT (source_id) DO UPDATE SET status = excluded.status, error = excluded.error,
                                                  last_synced_at = excluded.last_synced_at
            """,
            [MISSING_NOT_RECREATED, event_code],
        )


def _settle_read_back(conn: duckdb.DuckDBPyConnection, updates: Sequence[ReadBack]) -> None:
    """A confirmed row takes what was read and `confirmed_at`, and its grace ends; a row still
    pending or missing keeps what was last read, and its grace runs from our last write (or, for a
    record confirmed before, from now: the first read that did not find it)."""
    with keyed_rows(conn, "opportunity_state", "source_id", [u.source_id for u in updates]) as state:
        conn.execute(
            f"""
            UPDATE {state} AS s
            SET status = u.status, lead_id = coalesce(u.lead_id, s.lead_id),
                remote_fields = coalesce(u.remote_fields::JSON, s.remote_fields),
                remote_modified_on = coalesce(u.remote_modified_on, s.remote_modified_on),
                drift_fields = u.drift_fields, error = u.error, last_synced_at = now(),
                confirmed_at = CASE WHEN u.confirmed THEN now() ELSE s.confirmed_at END,
                read_back_since = CASE WHEN u.rewritten THEN now()
                                       WHEN u.status IN {literal_list((RecordStatus.PENDING, RecordStatus.MISSING))}
                                       THEN coalesce(s.read_back_since, now()) END
            FROM (
                SELECT unnest($1) AS source_id, unnest($2) AS status, unnest($3) AS lead_id,
                       unnest($4) AS remote_fields, unnest($5::TIMESTAMP[]) AS remote_modified_on,
                       unnest($6::VARCHAR[][]) AS drift_fields, unnest($7) AS error, unnest($8) AS confirmed,
                       unnest($9) AS rewritten
            ) AS u
            WHERE s.source_id = u.source_id
            """,
            [[u.source_id for u in updates], [u.status for u in updates], [u.lead_id for u in updates],
             [u.remote_fields for u in updates], [u.remote_modified_on for u in updates],
             [list(u.drift_fields) for u in updates], [u.error for u in updates], [u.confirmed for u in updates],
             [u.rewritten for u in updates]],
        )


def mark_gone_from_source(
    conn: duckdb.DuckDBPyConnection, gone: Sequence[str], back: Sequence[str], snapshot_day: date
) -> None:
    """A snapshot's verdict on the records it lacks and those it has again, in one transaction:
    `gone` records become `gone_from_source` (nothing in LeadSquared is deleted or changed: their
    opportunity id and what was last sent stay, and the read-back leaves them alone); gone records
    `back` in the source, that this run did not write, wait `pending` with a new grace, so the
    read-back confirms what LeadSquared holds (`in_sync`, or `drifted` when it changed meanwhile)."""
    with transaction(conn):
        with keyed_rows(conn, "opportunity_state", "source_id", gone) as state:
            conn.execute(
                f"""
                UPDATE {state} SET status = {literal(RecordStatus.GONE_FROM_SOURCE)}, read_back_since = NULL,
                    error = $1
                WHERE {one_of('source_id', gone)}
                """,
                [f"not in the source's snapshot of {snapshot_day.isoformat()}"],
            )
        with keyed_rows(conn, "opportunity_state", "source_id", back) as state:
            conn.execute(
                f"""
                UPDATE {state} SET status = {literal(RecordStatus.PENDING)}, error = NULL, read_back_since = now()
                WHERE status = {literal(RecordStatus.GONE_FROM_SOURCE)} AND {one_of('source_id', back)}
                """
            )


def found_again(conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str]) -> None:
    """`missing` records that the push read back once more before re-creating them, and found: they
    were only slow. Back to `pending` with a new grace, so this run's read-back settles them."""
    if not source_ids:
        return
    with keyed_rows(conn, "opportunity_state", "source_id", source_ids) as state:
        conn.execute(
            f"""
            UPDATE {state} SET status = {literal(RecordStatus.PENDING)}, error = NULL, read_back_since = now(),
                last_synced_at = now()
            WHERE status = {literal(RecordStatus.MISSING)} AND {one_of('source_id', source_ids)}
            """
        )


def missing_opportunities(conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str]) -> dict[str, str]:
    """The `missing` records among `source_ids`, each with its opportunity id in lower case."""
    return dict(conn.execute(
        f"""SELECT source_id, lower(opportunity_id) FROM opportunity_state
           WHERE status = $1 AND {one_of('source_id', source_ids)}""",
        [RecordStatus.MISSING],
    ).fetchall())


def creates_that_may_have_landed(
    conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str], call_failures: Sequence[str]
) -> set[str]:
    """The records among `source_ids` whose create may have landed before: a create or Capture
    unanswered in the journal (`unknown`, `sent`, or failed with one of `call_failures`: the call
    failed after the client's retries), or an opportunity id in the state (a `missing` record)."""
    records = one_of("source_id", source_ids)
    found = conn.execute(
        f"""
        SELECT source_id FROM push_journal
        WHERE kind IN {literal_list(CREATE_KINDS)} AND {records}
          AND (status IN {literal_list((Sent.SENT, Sent.UNKNOWN))}
               OR (status = {literal(Sent.FAILED)} AND {one_of("split_part(error, ':', 1)", sorted(call_failures))}))
        UNION
        SELECT source_id FROM opportunity_state
        WHERE opportunity_id IS NOT NULL AND {records}
        """
    ).fetchall()
    return {source_id for (source_id,) in found}


def known_leads(conn: duckdb.DuckDBPyConnection, lead_keys: Sequence[str]) -> set[str]:
    """The leads among `lead_keys` (search-by values trimmed, in lower case) that exist or may:
    the state holds an opportunity or a lead id of one of their records, or a create or Capture
    of one of their records is unanswered (`unknown`, or `sent` by a run still going): it may have
    made the lead and an opportunity, so such a record goes Bulk Add first (the duplicate rule
    answers), never straight to Capture. LeadSquared is asked only about the others."""
    if not lead_keys:
        return set()
    rows = conn.execute(
        f"""
        SELECT DISTINCT lower(trim(r.search_by_value))
        FROM opportunity_records r
        WHERE {one_of('lower(trim(r.search_by_value))', sorted(set(lead_keys)))}
          AND (r.source_id IN (SELECT source_id FROM opportunity_state
                               WHERE opportunity_id IS NOT NULL OR lead_id IS NOT NULL)
               OR r.source_id IN (SELECT source_id FROM push_journal
                                  WHERE kind IN {literal_list(CREATE_KINDS)}
                                    AND status IN {literal_list((Sent.UNKNOWN, Sent.SENT))}))
        """
    ).fetchall()
    return {key for (key,) in rows}


def _mark_rejected(conn: duckdb.DuckDBPyConnection, event_code: int, days: Sequence[date]) -> int:
    """Records of these days that were rejected and never synced get a `rejected` state row."""
    rejected = f"{on_days(days)} AND source_id IS NOT NULL AND source_id <> ''"
    keys = queried_keys(conn, f"SELECT DISTINCT source_id FROM rejects WHERE {rejected}")
    with keyed_rows(conn, "opportunity_state", "source_id", keys) as state:
        inserted = conn.execute(
            f"""
            INSERT INTO {state} (source_id, event_code, status, error, last_synced_at)
            SELECT source_id, $1, {literal(RecordStatus.REJECTED)},
                   string_agg(field || ': ' || reason, '; ' ORDER BY field), now()
            FROM rejects
            WHERE {rejected}
              AND source_id NOT IN (SELECT source_id FROM {state})
              AND source_id NOT IN (SELECT source_id FROM opportunity_records)
            GROUP BY source_id
            """,
            [event_code],
        ).fetchone()
    return inserted[0]  # the rows inserted (PostgreSQL tables take no INSERT ... RETURNING)
