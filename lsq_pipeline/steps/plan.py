"""Plan: compare the days' accepted records with `opportunity_state` and decide create / update /
unchanged / stale; the one reader of `sync_plan` and `activity_plan`, which gives the push what to
send as `PlannedRecord` and `PlannedActivity`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import duckdb

from lsq_pipeline.mapping import Mapping
from lsq_pipeline.steps.gone import lacked_sql
from lsq_pipeline.warehouse.sql import day_list_sql, literal, literal_list, on_days, one_of, transaction
from lsq_pipeline.tables.opportunities import MISSING_NOT_RECREATED
from lsq_pipeline.tables.records import PlannedActivity, PlannedRecord
from lsq_pipeline.tables.statuses import Action, ActivityStatus, Kind, RecordStatus, Sent

ACTIONS = tuple(Action)
# A state row whose error is not one of LeadSquared's business errors (`MX...`): a timeout, a
# 5xx, the rate limit; worth sending again on a later run.
RETRYABLE_SQL = "NOT starts_with(coalesce(error, ''), 'MX')"
# Records whose last send failed, with the error and the failed sends: `failed` state rows, and
# records never settled in the state whose journalled writes all failed or went unanswered
# (e.g. a create that failed, then a Capture whose answer was lost), counted per run.
FAILURES_SQL = f"""
    SELECT source_id, error, coalesce(attempts, 0) AS attempts FROM opportunity_state
    WHERE status = {literal(RecordStatus.FAILED)}
    UNION ALL
    SELECT source_id, arg_max(error, sent_at), count(DISTINCT run_id) FROM push_journal
    WHERE kind IN {literal_list((Kind.CREATE, Kind.CAPTURE, Kind.UPDATE))}
      AND status IN {literal_list((Sent.FAILED, Sent.UNKNOWN))}
      AND source_id NOT IN (SELECT source_id FROM opportunity_state)
    GROUP BY source_id"""
# Why a mode skips what upsert would send (sync_plan.reason, then the state row's error).
SKIPPED_BY_MODE = {
    "update_only": (Action.CREATE, "mode update_only: no opportunity for this record, and this mode never creates"),
    "create_only": (Action.UPDATE, "mode create_only: the opportunity exists, and this mode never updates"),
}


def failed_hash_sql(record_hash: str, lead_fields: str) -> str:
    """The hash of a record's version as the state keeps it when LeadSquared refused that version
    (`opportunity_state.failed_hash`): its fields' hash and its lead's fields, from the SQL
    expressions of the two. The plan compares it to refuse that exact version again."""
    return f"md5(concat_ws('|', {record_hash}, {lead_fields}::VARCHAR))"


def _changed_fields_sql(mapping: Mapping, new: str, old: str) -> str:
    """The update payload from the field maps `new` and `old` (last sent): fields whose value
    differs (a field no longer mapped is cleared with ''), plus the status comment whenever
    Status is among them."""
    opp = mapping.opportunity
    status = literal(opp.status_field)
    comment_clause = ""
    if opp.status_comment:
        comment = literal(opp.status_comment.field)
        comment_clause = f" OR (e.key = {comment} AND {new}[{status}] IS DISTINCT FROM {old}[{status}])"
    crm_owned = f"[{', '.join(literal(name) for name in opp.crm_owned())}]::VARCHAR[]"  # sent on create only
    return f"""to_json(map_from_entries(list_concat(
                list_filter(map_entries({new}), lambda e: NOT list_contains({crm_owned}, e.key)
                            AND (e.value IS DISTINCT FROM {old}[e.key]{comment_clause})),
                list_transform(list_filter(map_keys({old}), lambda k: {new}[k] IS NULL
                                           AND NOT list_contains({crm_owned}, k)),
                               lambda k: struct_pack(key := k, value := '')))))"""


def _full_fields_sql(mapping: Mapping, fields: str, sent: str) -> str:
    """Every mapped field as it will stand once the update lands: a CRM-owned field keeps the
    value last sent (it is not sent again), the others the source's."""
    crm_owned = mapping.opportunity.crm_owned()
    if not crm_owned:
        return fields
    kept = ", ".join(f"{literal(name)}, json_extract({sent}, {literal('$.' + name)})" for name in crm_owned)
    return f"json_merge_patch({fields}, json_object({kept}))"


def plan_days(
    conn: duckdb.DuckDBPyConnection,
    days: list[date],
    mapping: Mapping,
    max_attempts: int = 5,
    retry_ids: Sequence[str] = (),
    retry_all_failed: bool = False,
    snapshot: bool = False,
) -> dict[str, int]:
    """Replace the days' rows in sync_plan and activity_plan, in one transaction. sync_plan holds
    decisions, not copies: each row names the record's version (`record_day`, `record_hash`) and
    only an update carries its payload; the view `sync_plan_payloads` joins the rest from
    opportunity_records (a version replaced since the plan drops out of it, never sent stale).

    Each source_id's latest version across the days is compared with its state row: no state
    (or no opportunity id yet) -> create; older than the version last synced -> stale (never
    pushed); same hash as sent -> unchanged; else update with only the changed fields. The exact
    version LeadSquared refused last time -> refused (not re-sent until the source changes).
    The mapping's mode turns the creates (`update_only`) or updates (`create_only`) into
    `skipped`, with the reason. Events are planned unless their activity was already created. Returns counts by action
    and `activities`.

    Retries: a record whose last send failed for a transient reason (not an `MX...` business
    error) and has been tried fewer than `max_attempts` times is planned again in this run,
    whatever its day, from its latest version. `retry_ids` and `retry_all_failed` (the `retry`
    command) do the same for refused records and for those out of attempts. A `missing` record
    (not found by the read-back past its grace) is planned `create` the same way (`skipped` under
    `update_only`); the push reads it back once more before it re-creates it. Such records are
    planned under the run's last day. In a `snapshot` (the day holds the whole source) only the
    day's records are planned: a record the snapshot no longer has is gone from the source
    (`steps/gone.py`), never retried or re-created, and its events are not planned.
    """
    days = sorted(set(days))
    if not days:
        return {action: 0 for action in ACTIONS} | {"activities": 0}
    in_days = day_list_sql(days)
    with transaction(conn):
        conn.execute(f"DELETE FROM sync_plan WHERE day IN {in_days}")
        conn.execute(f"DELETE FROM activity_plan WHERE day IN {in_days}")
        _plan_records(conn, in_days, days[-1], mapping, max_attempts, retry_ids, retry_all_failed, snapshot)
        _add_update_payloads(conn, mapping, in_days)
        _plan_activities(conn, in_days, f"source_id NOT IN ({lacked_sql(days)})" if snapshot else "TRUE")
        rows = conn.execute(f"SELECT action, count(*) FROM sync_plan WHERE day IN {in_days} GROUP BY action").fetchall()
        activities = conn.execute(f"SELECT count(*) FROM activity_plan WHERE day IN {in_days}").fetchone()[0]
    return {action: 0 for action in ACTIONS} | dict(rows) | {"activities": activities}


def _plan_records(
    conn: duckdb.DuckDBPyConnection, in_days: str, last_day: date, mapping: Mapping, max_attempts: int,
    retry_ids: Sequence[str], retry_all_failed: bool, snapshot: bool,
) -> None:
    """Insert into sync_plan the decision on each record of the days (`in_days`) and on each
    record a retry plans again (under `last_day`, none in a `snapshot`), as `plan_days` tells."""
    skipped_action, skipped_reason = SKIPPED_BY_MODE.get(mapping.opportunity.mode, (None, None))
    conn.execute(f"""
        INSERT INTO sync_plan (day, source_id, action, opportunity_id, record_day, record_hash, reason)
        WITH failures AS ({FAILURES_SQL}
        ), forced AS (
            SELECT source_id FROM failures
            WHERE {one_of('source_id', retry_ids)} OR $retry_all
        ), retried AS (
            SELECT source_id FROM failures WHERE {RETRYABLE_SQL} AND attempts < $max_attempts
            UNION SELECT source_id FROM forced
            UNION SELECT source_id FROM opportunity_state WHERE status = {literal(RecordStatus.MISSING)}
        ), latest AS (  -- each record's latest version, found on the narrow columns
            SELECT CASE WHEN day IN {in_days} THEN day ELSE DATE '{last_day}' END AS day, day AS record_day,
                   source_id, source_updated_at, record_hash
            FROM opportunity_records
            WHERE day IN {in_days} OR (NOT $snapshot AND source_id IN (SELECT source_id FROM retried))
            QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY source_updated_at DESC, day DESC) = 1
        ), refused_leads AS (  -- the lead fields of records whose last send was refused (for failed_hash)
            SELECT day, source_id, lead_fields FROM opportunity_records
            WHERE source_id IN (SELECT source_id FROM opportunity_state WHERE status = {literal(RecordStatus.FAILED)})
        ), decided AS (
            SELECT l.day, l.source_id, l.record_day, l.record_hash, s.opportunity_id AS state_opportunity_id,
                s.status AS state_status,
                CASE WHEN s.status = {literal(RecordStatus.FAILED)}
                          AND s.failed_hash = {failed_hash_sql('l.record_hash', 'f.lead_fields')}
                          AND (NOT {RETRYABLE_SQL} OR coalesce(s.attempts, 0) >= $max_attempts)
                          AND forced.source_id IS NULL
                          THEN {literal(Action.REFUSED)}
                     WHEN s.source_id IS NULL OR s.opportunity_id IS NULL OR s.status = {literal(RecordStatus.MISSING)}
                          THEN {literal(Action.CREATE)}
                     WHEN l.source_updated_at < s.source_updated_at THEN {literal(Action.STALE)}
                     WHEN l.record_hash = s.sent_hash THEN {literal(Action.UNCHANGED)}
                     ELSE {literal(Action.UPDATE)} END AS upsert_action,
                CASE WHEN upsert_action = $skipped THEN {literal(Action.SKIPPED)} ELSE upsert_action END AS action
            FROM latest l LEFT JOIN opportunity_state s USING (source_id)
            LEFT JOIN refused_leads f ON f.day = l.record_day AND f.source_id = l.source_id
            LEFT JOIN forced ON forced.source_id = l.source_id
        )
        SELECT day, source_id, action,
               CASE WHEN action = {literal(Action.CREATE)} THEN NULL ELSE state_opportunity_id END,
               record_day, record_hash,
               CASE WHEN action = {literal(Action.SKIPPED)} AND state_status = {literal(RecordStatus.MISSING)}
                    THEN $missing_reason
                    WHEN action = {literal(Action.SKIPPED)} THEN $reason END
        FROM decided""", {"skipped": skipped_action, "reason": skipped_reason, "missing_reason": MISSING_NOT_RECREATED,
                          "retry_all": retry_all_failed, "max_attempts": max_attempts, "snapshot": snapshot})


def _add_update_payloads(conn: duckdb.DuckDBPyConnection, mapping: Mapping, in_days: str) -> None:
    """The payload of each update of the days: only its changed fields, from the record and what
    was last sent, and every field as it will stand once the update lands."""
    conn.execute(f"""
        UPDATE sync_plan AS p SET fields = u.fields::JSON, full_fields = u.full_fields::JSON
        FROM (
            SELECT source_id, {_changed_fields_sql(mapping, 'new_map', 'old_map')} AS fields,
                   {_full_fields_sql(mapping, 'fields', 'sent_fields')} AS full_fields
            FROM (SELECT p.source_id, r.fields, s.sent_fields,
                         CAST(r.fields::JSON AS MAP(VARCHAR, VARCHAR)) AS new_map,
                         coalesce(CAST(s.sent_fields::JSON AS MAP(VARCHAR, VARCHAR)),
                                  MAP {{}}::MAP(VARCHAR, VARCHAR)) AS old_map
                  FROM sync_plan p
                  JOIN opportunity_records r ON r.day = p.record_day AND r.source_id = p.source_id
                  JOIN opportunity_state s ON s.source_id = p.source_id
                  WHERE p.action = {literal(Action.UPDATE)} AND p.day IN {in_days})
        ) AS u
        WHERE p.source_id = u.source_id AND p.action = {literal(Action.UPDATE)} AND p.day IN {in_days}""")


def _plan_activities(conn: duckdb.DuckDBPyConnection, in_days: str, of_records: str) -> None:
    """Insert into activity_plan the days' events whose activity was not created yet, of the
    records `of_records` admits (in a snapshot, none of a record gone from the source)."""
    conn.execute(f"""
        INSERT INTO activity_plan (day, event_id, source_id, activity_event, owner_email, note, fields, occurred_at)
        SELECT day, event_id, source_id, activity_event, owner_email, note, fields, occurred_at
        FROM activity_records a
        WHERE day IN {in_days} AND {of_records}
          AND NOT EXISTS (SELECT 1 FROM activity_state s
                          WHERE s.event_id = a.event_id AND s.status = {literal(ActivityStatus.CREATED)})""")


def planned_activities(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> int:
    """Activities planned for the days."""
    return conn.execute(f"SELECT count(*) FROM activity_plan WHERE {on_days(days)}").fetchone()[0]


def planned_by_action(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> dict[str, int]:
    """Records planned on the days `first`..`last`, by action."""
    return dict(conn.execute(
        "SELECT action, count(*) FROM sync_plan WHERE day BETWEEN $1 AND $2 GROUP BY action", [first, last]
    ).fetchall())


def failed_records(conn: duckdb.DuckDBPyConnection, source_ids: Sequence[str], every: bool) -> dict[str, date]:
    """The failed records among `source_ids` (or `every` one), each with the last day that holds it."""
    return dict(conn.execute(
        f"""WITH failures AS ({FAILURES_SQL})
           SELECT f.source_id, max(r.day) FROM failures f JOIN opportunity_records r USING (source_id)
           WHERE $1 OR {one_of('f.source_id', source_ids)}
           GROUP BY f.source_id""",
        [every],
    ).fetchall())


def records_to_send(conn: duckdb.DuckDBPyConnection, days: Sequence[date], action: Action) -> list[PlannedRecord]:
    """The days' records planned `action` (create or update), oldest source version first."""
    rows = conn.execute(
        f"""
        SELECT day, source_id, opportunity_id, fields, full_fields, search_by_value, lead_fields,
               owner_email, note, record_hash, source_updated_at, {failed_hash_sql('record_hash', 'lead_fields')}
        FROM sync_plan_payloads WHERE action = $1 AND {on_days(days)}
        ORDER BY source_updated_at, source_id
        """,
        [action],
    ).fetchall()
    return [
        PlannedRecord(day, source_id, opportunity_id, _object(fields), _object(full_fields), search_by_value,
                      _object(lead_fields), owner_email, note, record_hash, source_updated_at, failed_hash)
        for (day, source_id, opportunity_id, fields, full_fields, search_by_value, lead_fields, owner_email, note,
             record_hash, source_updated_at, failed_hash) in rows
    ]


def activities_to_send(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> list[PlannedActivity]:
    """The days' planned activities whose create was neither answered nor lost (an activity of
    unknown outcome is never sent again), by opportunity, then as they occurred."""
    rows = conn.execute(
        f"""
        SELECT p.day, p.event_id, p.source_id, s.opportunity_id, p.activity_event, p.owner_email, p.note, p.fields
        FROM activity_plan p
        LEFT JOIN opportunity_state s USING (source_id)
        WHERE {on_days(days, 'p.day')}
          AND p.event_id NOT IN (
              SELECT event_id FROM activity_state
              WHERE status IN ({literal(ActivityStatus.CREATED)}, {literal(ActivityStatus.UNKNOWN)}))
        ORDER BY s.opportunity_id, p.occurred_at, p.event_id
        """
    ).fetchall()
    return [
        PlannedActivity(day, event_id, source_id, opportunity_id, int(event), owner, note, _object(fields))
        for day, event_id, source_id, opportunity_id, event, owner, note, fields in rows
    ]


def _object(text: str | None) -> dict:
    """A JSON object column's text as a dict; {} when empty."""
    return json.loads(text) if text else {}
