"""The state tables as people read them: counts by status, problems worth a look (a record with
two opportunities, drift), and one record's state row (`lsq-pipeline state`, the assets' metadata)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb

from lsq_pipeline.tables.statuses import CREATE_KINDS, ActivityStatus, RecordStatus, Sent
from lsq_pipeline.warehouse.sql import literal, literal_list, on_days


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


def activity_status_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Source events by `activity_state` status (created, failed, unknown)."""
    return dict(conn.execute("SELECT status, count(*) FROM activity_state GROUP BY status ORDER BY status").fetchall())


def status_counts_by_day(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dict[date, dict[str, int]]:
    """Where the records whose latest version is of each of `days` stand now (each record counted
    on one day only, so the days sum to the table), every status counted, 0 included: one read of
    the plan for all the days."""
    rows = conn.execute(
        f"""WITH latest AS (
               SELECT source_id, max(day) AS day FROM (
                   SELECT source_id, day FROM sync_plan
                   UNION ALL SELECT source_id, day FROM rejects WHERE source_id IS NOT NULL)
               GROUP BY source_id)
           SELECT latest.day, state.status, count(*) FROM opportunity_state AS state JOIN latest USING (source_id)
           WHERE {on_days(days, "latest.day")} GROUP BY ALL""",
    ).fetchall()
    held: dict[date, dict[str, int]] = {}
    for day, status, count in rows:
        held.setdefault(day, {})[status] = count
    return {day: {status.value: held.get(day, {}).get(status.value, 0) for status in RecordStatus} for day in days}


def summarize_state(conn: duckdb.DuckDBPyConnection, drift_preview_rows: int) -> StateSummary:
    """Counts and problems of `opportunity_state`, `activity_state` and the journal's creates."""
    statuses = status_counts(conn)
    opportunities = conn.execute(
        "SELECT count(*) FROM opportunity_state WHERE opportunity_id IS NOT NULL").fetchone()[0]
    activities = conn.execute(
        f"SELECT count(*) FROM activity_state WHERE status = {literal(ActivityStatus.CREATED)}").fetchone()[0]
    doubled = conn.execute(
        f"""
        SELECT 'opportunity ' || opportunity_id || ' serves ' || string_agg(source_id, ', ')
        FROM opportunity_state WHERE opportunity_id IS NOT NULL
        GROUP BY opportunity_id HAVING count(*) > 1
        UNION ALL
        SELECT 'record ' || source_id || ' got ' || string_agg(DISTINCT opportunity_id, ', ')
        FROM push_journal WHERE status = {literal(Sent.OK)} AND kind IN {literal_list(CREATE_KINDS)}
        GROUP BY source_id HAVING count(DISTINCT opportunity_id) > 1
        """
    ).fetchall()
    drifted = conn.execute(
        f"""SELECT source_id, opportunity_id, array_to_string(drift_fields, ', ') FROM opportunity_state
           WHERE status = {literal(RecordStatus.DRIFTED)} ORDER BY source_id LIMIT $1""",
        [drift_preview_rows],
    ).fetchall()
    return StateSummary(statuses, opportunities, activities, [row[0] for row in doubled], drifted)


def known_opportunities(conn: duckdb.DuckDBPyConnection) -> int:
    """Records whose opportunity LeadSquared holds (the base of the change-share guard)."""
    return conn.execute("SELECT count(*) FROM opportunity_state WHERE opportunity_id IS NOT NULL").fetchone()[0]


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

