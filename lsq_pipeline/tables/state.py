"""The one owner of the state tables: every write to `push_journal`, `opportunity_state`,
`opportunity_adoption` and `activity_state` is a function here, each in its own transaction. Push and reconcile call these;
no other module writes SQL against these tables (their schema and version: `warehouse.py`).

The journal records every batch before it is sent and each row's answer after, so a run that
died mid-push is resumed without blindly sending anything twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb

from lsq_pipeline.steps.plan import MISSING_NOT_RECREATED
from lsq_pipeline.tables.records import JournalEntry, ReadBack
from lsq_pipeline.warehouse.sql import keyed_rows, literal, literal_list, transaction
from lsq_pipeline.tables.statuses import CREATE_KINDS, ActivityStatus, Kind, RecordStatus, Sent

INTERRUPTED = "the run stopped before the answer came"
EARLIER_VERSIONS_KEPT = 5
"""Versions sent before the last write and not yet confirmed that a read-back may still show
(several runs inside one lag); older ones are past any grace."""


def new_batch_id() -> str:
    return uuid.uuid4().hex


# -- the journal ------------------------------------------------------------------------------


def record_sent(
    conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry], parent_batch_id: str | None = None
) -> None:
    """Write the batch down before it leaves: status `sent`, no answer yet, with the opportunity
    it targets when known (updates, activities). `parent_batch_id`:
    the refused batch these rows were cut from (a split)."""
    if not entries:
        return
    conn.execute(
        """
        INSERT INTO push_journal (batch_id, run_id, kind, day, source_id, event_id, payload, opportunity_id,
                                  status, sent_at, parent_batch_id)
        SELECT unnest($1), $2, unnest($3), unnest($4)::DATE, unnest($5), unnest($6), unnest($7)::JSON, unnest($9),
               $10, now(), $8
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


def _record_outcomes(conn: duckdb.DuckDBPyConnection, run_id: str, entries: Sequence[JournalEntry]) -> None:
    """Write each row's answer: `ok` with the opportunity id, `failed` with the error, `unknown`,
    `split` (the whole call was refused; the rows went again in halves) or `not_sent` (the day's
    call budget ran out before it)."""
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
        _record_outcomes(conn, run_id, entries)


def mark_interrupted(
    conn: duckdb.DuckDBPyConnection, run_id: str, run_is_alive: Callable[[str], bool]
) -> dict[str, int]:
    """Rows still `sent` by a run that is no longer alive (or by this run's own earlier, dead
    attempt of the step) will never get their answer: their outcome becomes `unknown`. Rows of
    live runs are left alone: their answers are on the way.

    Creates among them are resolved by the next create (LeadSquared's duplicate answer);
    activities are never re-sent, since LeadSquared cannot tell a repeat."""
    owners = [row[0] for row in conn.execute(
        "SELECT DISTINCT run_id FROM push_journal WHERE status = $1", [Sent.SENT]).fetchall()]
    dead = [owner for owner in owners if owner is None or owner == run_id or not run_is_alive(owner)]
    if not dead:
        return {}
    dead_rows = f"status = {literal(Sent.SENT)} AND (run_id IS NULL OR run_id IN (SELECT unnest($1::VARCHAR[])))"
    with transaction(conn):  # counted, then updated: PostgreSQL tables take no UPDATE ... RETURNING
        owners_dead = [owner for owner in dead if owner is not None]
        counts = dict(conn.execute(f"SELECT kind, count(*) FROM push_journal WHERE {dead_rows} GROUP BY kind",
                                   [owners_dead]).fetchall())
        conn.execute(f"UPDATE push_journal SET status = {literal(Sent.UNKNOWN)}, error = $2 WHERE {dead_rows}",
                     [owners_dead, INTERRUPTED])
        conn.execute(
            """
            INSERT OR REPLACE INTO activity_state (event_id, source_id, opportunity_id, status, error, pushed_at)
            SELECT event_id, source_id, coalesce(opportunity_id, json_extract_string(payload, '$.opportunity_id')),
                   $1, error, answered_at
            FROM push_journal
            WHERE kind = $2 AND status = $3
              AND event_id NOT IN (SELECT event_id FROM activity_state WHERE status = $4)
            """,
            [ActivityStatus.UNKNOWN, Kind.ACTIVITY, Sent.UNKNOWN, ActivityStatus.CREATED],
        )
    return counts


# -- opportunity_state -----------------------------------------------------------------------


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
        _record_outcomes(conn, run_id, entries)
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
    if ours:
        conn.execute(f"DELETE FROM opportunity_adoption WHERE source_id IN {literal_list(ours)}")
    if adopted:
        conn.execute(
            """
            INSERT OR REPLACE INTO opportunity_adoption
                (source_id, opportunity_id, on_existing, keep_owner, adopted_at, kept_fields, baseline_at)
            SELECT unnest($1), unnest($2), unnest($3), unnest($4), now(), NULL, NULL
            """,
            [[e.source_id for e in adopted], [e.opportunity_id for e in adopted],
             [e.adoption.on_existing for e in adopted], [e.adoption.keep_owner for e in adopted]],
        )
    if updates:
        conn.execute(
            """
            UPDATE opportunity_adoption AS a
            SET kept_fields = to_json(map_from_entries(list_filter(
                    map_entries(CAST(a.kept_fields::JSON AS MAP(VARCHAR, VARCHAR))), lambda e: NOT list_contains(u.sent, e.key))))
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
    conn.execute(
        """
        UPDATE opportunity_adoption AS a SET kept_fields = u.kept_fields::JSON, baseline_at = now()
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
    conn.execute(
        """
        UPDATE opportunity_state AS s
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
    conn.execute(
        """
        INSERT INTO opportunity_state (source_id, event_code, status, error, last_synced_at)
        SELECT source_id, $1, 'skipped', reason, now() FROM sync_plan
        WHERE day IN (SELECT unnest($2::DATE[])) AND action = 'skipped' AND reason IS DISTINCT FROM $3
        ON CONFLICT (source_id) DO UPDATE SET status = 'skipped', error = excluded.error,
                                              last_synced_at = excluded.last_synced_at
        """,
        [event_code, list(days), MISSING_NOT_RECREATED],
    )


def _settle_read_back(conn: duckdb.DuckDBPyConnection, updates: Sequence[ReadBack]) -> None:
    """A confirmed row takes what was read and `confirmed_at`, and its grace ends; a row still
    pending or missing keeps what was last read, and its grace runs from our last write (or, for a
    record confirmed before, from now: the first read that did not find it)."""
    conn.execute(
        """
        UPDATE opportunity_state AS s
        SET status = u.status, lead_id = coalesce(u.lead_id, s.lead_id),
            remote_fields = coalesce(u.remote_fields::JSON, s.remote_fields),
            remote_modified_on = coalesce(u.remote_modified_on, s.remote_modified_on),
            drift_fields = u.drift_fields, error = u.error, last_synced_at = now(),
            confirmed_at = CASE WHEN u.confirmed THEN now() ELSE s.confirmed_at END,
            read_back_since = CASE WHEN u.rewritten THEN now()
                                   WHEN u.status IN ('pending', 'missing') THEN coalesce(s.read_back_since, now())
                                   END
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


def found_again(conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str]) -> None:
    """`missing` records that the push read back once more before re-creating them, and found: they
    were only slow. Back to `pending` with a new grace, so this run's read-back settles them."""
    if not source_ids:
        return
    conn.execute(
        """
        UPDATE opportunity_state SET status = 'pending', error = NULL, read_back_since = now(), last_synced_at = now()
        WHERE status = 'missing' AND source_id IN (SELECT unnest($1::VARCHAR[]))
        """,
        [list(source_ids)],
    )


def missing_opportunities(conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str]) -> dict[str, str]:
    """The `missing` records among `source_ids`, each with its opportunity id in lower case."""
    return dict(conn.execute(
        """SELECT source_id, lower(opportunity_id) FROM opportunity_state
           WHERE status = $2 AND source_id IN (SELECT unnest($1::VARCHAR[]))""",
        [list(source_ids), RecordStatus.MISSING],
    ).fetchall())


def creates_that_may_have_landed(
    conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str], call_failures: Sequence[str]
) -> set[str]:
    """The records among `source_ids` whose create may have landed before: a create or Capture
    unanswered in the journal (`unknown`, `sent`, or failed with one of `call_failures`: the call
    failed after the client's retries), or an opportunity id in the state (a `missing` record)."""
    found = conn.execute(
        f"""
        SELECT source_id FROM push_journal
        WHERE kind IN {literal_list(CREATE_KINDS)} AND source_id IN (SELECT unnest($1::VARCHAR[]))
          AND (status IN {literal_list((Sent.SENT, Sent.UNKNOWN))}
               OR (status = {literal(Sent.FAILED)} AND split_part(error, ':', 1) IN (SELECT unnest($2::VARCHAR[]))))
        UNION
        SELECT source_id FROM opportunity_state
        WHERE opportunity_id IS NOT NULL AND source_id IN (SELECT unnest($1::VARCHAR[]))
        """,
        [list(source_ids), sorted(call_failures)],
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
        WHERE lower(trim(r.search_by_value)) IN (SELECT unnest($1::VARCHAR[]))
          AND (r.source_id IN (SELECT source_id FROM opportunity_state
                               WHERE opportunity_id IS NOT NULL OR lead_id IS NOT NULL)
               OR r.source_id IN (SELECT source_id FROM push_journal
                                  WHERE kind IN {literal_list(CREATE_KINDS)}
                                    AND status IN {literal_list((Sent.UNKNOWN, Sent.SENT))}))
        """,
        [sorted(set(lead_keys))],
    ).fetchall()
    return {key for (key,) in rows}


def _mark_rejected(conn: duckdb.DuckDBPyConnection, event_code: int, days: Sequence[date]) -> int:
    """Records of these days that were rejected and never synced get a `rejected` state row."""
    inserted = conn.execute(
        """
        INSERT INTO opportunity_state (source_id, event_code, status, error, last_synced_at)
        SELECT source_id, $1, 'rejected', string_agg(field || ': ' || reason, '; ' ORDER BY field), now()
        FROM rejects
        WHERE day IN (SELECT unnest($2::DATE[])) AND source_id IS NOT NULL AND source_id <> ''
          AND source_id NOT IN (SELECT source_id FROM opportunity_state)
          AND source_id NOT IN (SELECT source_id FROM opportunity_records)
        GROUP BY source_id
        """,
        [event_code, list(days)],
    ).fetchone()
    return inserted[0]  # the rows inserted (PostgreSQL tables take no INSERT ... RETURNING)


# -- activity_state ---------------------------------------------------------------------------

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
            _record_outcomes(conn, run_id, entries)
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


@dataclass(frozen=True)
class StateSummary:
    """The state tables as a person reads them after a reconcile."""

    statuses: dict[str, int]
    """Source records by status (`in_sync`, `pending`, `drifted`, `missing`, `failed`, `rejected`...)."""
    opportunities_held: int
    """Opportunities LeadSquared holds for the records (those with an id)."""
    activities_held: int
    """Activities created in LeadSquared."""
    doubled: list[str]
    """Each record holding two opportunities, or opportunity serving two records (should be none)."""
    drifted: list[tuple[str, str, str]]
    """(source_id, opportunity_id, fields) of the first drifted records."""


def status_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Source records by state status, in the order of the statuses' names."""
    return dict(conn.execute("SELECT status, count(*) FROM opportunity_state GROUP BY status ORDER BY status").fetchall())


def summarize_state(conn: duckdb.DuckDBPyConnection, drift_preview_rows: int) -> StateSummary:
    """Counts and problems of `opportunity_state`, `activity_state` and the journal's creates."""
    statuses = status_counts(conn)
    opportunities = conn.execute(
        "SELECT count(*) FROM opportunity_state WHERE opportunity_id IS NOT NULL").fetchone()[0]
    activities = conn.execute("SELECT count(*) FROM activity_state WHERE status = 'created'").fetchone()[0]
    doubled = conn.execute(
        """
        SELECT 'opportunity ' || opportunity_id || ' serves ' || string_agg(source_id, ', ')
        FROM opportunity_state WHERE opportunity_id IS NOT NULL
        GROUP BY opportunity_id HAVING count(*) > 1
        UNION ALL
        SELECT 'record ' || source_id || ' got ' || string_agg(DISTINCT opportunity_id, ', ')
        FROM push_journal WHERE status = 'ok' AND kind IN ('create', 'capture')
        GROUP BY source_id HAVING count(DISTINCT opportunity_id) > 1
        """
    ).fetchall()
    drifted = conn.execute(
        """SELECT source_id, opportunity_id, array_to_string(drift_fields, ', ') FROM opportunity_state
           WHERE status = 'drifted' ORDER BY source_id LIMIT $1""",
        [drift_preview_rows],
    ).fetchall()
    return StateSummary(statuses, opportunities, activities, [row[0] for row in doubled], drifted)


def known_opportunities(conn: duckdb.DuckDBPyConnection) -> int:
    """Records whose opportunity LeadSquared holds (the base of the change-share guard)."""
    return conn.execute("SELECT count(*) FROM opportunity_state WHERE opportunity_id IS NOT NULL").fetchone()[0]


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
        """SELECT count(DISTINCT source_id) FROM push_journal
           WHERE run_id = $1 AND kind <> 'activity' AND status = 'failed'
             AND source_id NOT IN (SELECT source_id FROM push_journal
                                   WHERE run_id = $1 AND kind <> 'activity' AND status = 'ok')""",
        [run_id],
    ).fetchone()[0]
    return RunJournal(answered, failed)


# -- reads for a person (`lsq-pipeline state`) ------------------------------------------------

JOURNAL_HISTORY_COLUMNS = ("kind", "status", "batch_id", "run_id", "opportunity_id", "error", "sent_at", "answered_at")


@dataclass(frozen=True)
class RecordsInStatus:
    """The first records of one status with their errors, and how many there are in all."""

    total: int
    rows: list[tuple]
    """(source_id, opportunity_id, error, last_synced_at), by source_id."""


def has_state(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse has its state table yet (no run has made it before the first sync)."""
    return conn.execute(
        """SELECT count(*) FROM duckdb_tables() WHERE table_name = 'opportunity_state'
           AND database_name = current_database() AND schema_name = current_schema()"""
    ).fetchone()[0] > 0


def records_in_status(conn: duckdb.DuckDBPyConnection, status: str, limit: int) -> RecordsInStatus:
    """The records in `status`, at most `limit` of them: a person reads the errors, not a dump."""
    total = conn.execute("SELECT count(*) FROM opportunity_state WHERE status = $1", [status]).fetchone()[0]
    rows = conn.execute(
        """SELECT source_id, opportunity_id, error, last_synced_at FROM opportunity_state
           WHERE status = $1 ORDER BY source_id LIMIT $2""",
        [status, limit],
    ).fetchall()
    return RecordsInStatus(total, rows)


def record_state(conn: duckdb.DuckDBPyConnection, source_id: str) -> dict[str, object] | None:
    """One record's state row, column by column (every column its schema version has), or None."""
    cursor = conn.execute("SELECT * FROM opportunity_state WHERE source_id = $1", [source_id])
    row = cursor.fetchone()
    return None if row is None else dict(zip([d[0] for d in cursor.description], row))


def journal_history(conn: duckdb.DuckDBPyConnection, source_id: str) -> list[dict[str, object]]:
    """Every journal row of one record (its writes and its activities), oldest first: what was
    sent for it, by which run, and what LeadSquared answered."""
    columns = ", ".join(JOURNAL_HISTORY_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM push_journal WHERE source_id = $1 ORDER BY sent_at, batch_id, kind", [source_id]
    ).fetchall()
    return [dict(zip(JOURNAL_HISTORY_COLUMNS, row)) for row in rows]
