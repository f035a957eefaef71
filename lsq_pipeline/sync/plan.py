"""Plan: compare the days' accepted records with `opportunity_state` and decide create / update / unchanged / stale."""

from __future__ import annotations

from datetime import date

import duckdb

from lsq_pipeline.sync.mapping import Mapping
from lsq_pipeline.sync.sql import day_list_sql, literal

ACTIONS = ("create", "update", "unchanged", "stale", "refused")


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
    return f"""to_json(map_from_entries(list_concat(
                list_filter(map_entries({new}), lambda e: e.value IS DISTINCT FROM {old}[e.key]{comment_clause}),
                list_transform(list_filter(map_keys({old}), lambda k: {new}[k] IS NULL),
                               lambda k: struct_pack(key := k, value := '')))))"""


def plan_days(conn: duckdb.DuckDBPyConnection, days: list[date], mapping: Mapping) -> dict[str, int]:
    """Replace the days' rows in sync_plan and activity_plan, in one transaction.

    Each source_id's latest version across the days is compared with its state row: no state
    (or no opportunity id yet) -> create; older than the version last synced -> stale (never
    pushed); same hash as sent -> unchanged; else update with only the changed fields. The exact
    version LeadSquared refused last time -> refused (not re-sent until the source changes).
    Events are planned unless their activity was already created. Returns counts by action
    and `activities`.
    """
    days = sorted(set(days))
    if not days:
        return {action: 0 for action in ACTIONS} | {"activities": 0}
    in_days = day_list_sql(days)
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM sync_plan WHERE day IN {in_days}")
        conn.execute(f"DELETE FROM activity_plan WHERE day IN {in_days}")
        conn.execute(f"""
            INSERT INTO sync_plan
            WITH latest AS (  -- found on the narrow (source_id, version, day), then the whole rows
                SELECT * FROM opportunity_records
                WHERE day IN {in_days} AND (source_id, day) IN (
                    SELECT (source_id, day) FROM opportunity_records WHERE day IN {in_days}
                    QUALIFY row_number() OVER (
                        PARTITION BY source_id ORDER BY source_updated_at DESC, day DESC) = 1)
            ), decided AS (
                SELECT l.*, s.opportunity_id AS state_opportunity_id, s.sent_fields,
                    CASE WHEN s.status = 'failed'
                              AND s.failed_hash = md5(concat_ws('|', l.record_hash, l.lead_fields::VARCHAR))
                              THEN 'refused'
                         WHEN s.source_id IS NULL OR s.opportunity_id IS NULL THEN 'create'
                         WHEN l.source_updated_at < s.source_updated_at THEN 'stale'
                         WHEN l.record_hash = s.sent_hash THEN 'unchanged'
                         ELSE 'update' END AS action
                FROM latest l LEFT JOIN opportunity_state s USING (source_id)
            )
            SELECT day, source_id, action,
                   CASE WHEN action = 'create' THEN NULL ELSE state_opportunity_id END,
                   CASE action WHEN 'create' THEN fields
                               WHEN 'update' THEN {_changed_fields_sql(mapping, 'new_map', 'old_map')}
                   END,
                   fields, search_by_value, lead_fields, owner_email, note, record_hash, source_updated_at
            FROM (SELECT *,
                    CASE WHEN action = 'update' THEN CAST(fields AS MAP(VARCHAR, VARCHAR)) END AS new_map,
                    CASE WHEN action = 'update' THEN coalesce(CAST(sent_fields AS MAP(VARCHAR, VARCHAR)),
                                                              MAP {{}}::MAP(VARCHAR, VARCHAR)) END AS old_map
                  FROM decided)""")
        conn.execute(f"""
            INSERT INTO activity_plan
            SELECT day, event_id, source_id, activity_event, owner_email, note, fields, occurred_at
            FROM activity_records a
            WHERE day IN {in_days}
              AND NOT EXISTS (SELECT 1 FROM activity_state s
                              WHERE s.event_id = a.event_id AND s.status = 'created')""")
        rows = conn.execute(f"SELECT action, count(*) FROM sync_plan WHERE day IN {in_days} GROUP BY action").fetchall()
        activities = conn.execute(f"SELECT count(*) FROM activity_plan WHERE day IN {in_days}").fetchone()[0]
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {action: 0 for action in ACTIONS} | dict(rows) | {"activities": activities}
