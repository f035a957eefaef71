"""The warehouse's tables in DuckDB: the DDL of every sync table, created idempotently by `ensure_schema`."""

from __future__ import annotations

import duckdb

APPLICATION_COLUMNS: tuple[str, ...] = (
    "application_id", "applicant_name", "email", "phone", "product", "amount",
    "stage", "owner_email", "created_at", "updated_at",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "application_id", "event_type", "occurred_at", "owner_email", "note", "detail",
)
SOURCE_FILES: dict[str, tuple[str, ...]] = {
    "applications.csv": APPLICATION_COLUMNS,
    "events.csv": EVENT_COLUMNS,
}
RAW_TABLES: dict[str, str] = {"applications.csv": "raw_applications", "events.csv": "raw_events"}


def _raw_table_ddl(table: str, columns: tuple[str, ...]) -> str:
    source_columns = ",\n    ".join(f"{column} VARCHAR" for column in columns)
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    day DATE,
    source_file VARCHAR,
    row_number BIGINT,
    {source_columns}
)"""


# The JSON of a million records: zstd writes it in 60% of the CPU time of DuckDB's default string
# compression, and smaller (measured in benchmarks/README.md). Applies to newly created tables.
BULK_TEXT = "USING COMPRESSION zstd"

SCHEMA_DDL: tuple[str, ...] = (
    _raw_table_ddl("raw_applications", APPLICATION_COLUMNS),
    _raw_table_ddl("raw_events", EVENT_COLUMNS),
    f"""
CREATE TABLE IF NOT EXISTS opportunity_records (
    day DATE, source_id VARCHAR, source_updated_at TIMESTAMP, search_by_value VARCHAR,
    lead_fields JSON {BULK_TEXT}, fields JSON {BULK_TEXT}, owner_email VARCHAR, note VARCHAR, record_hash VARCHAR
)""",
    f"""
CREATE TABLE IF NOT EXISTS activity_records (
    day DATE, event_id VARCHAR, source_id VARCHAR, activity_event INTEGER,
    owner_email VARCHAR, note VARCHAR, fields JSON {BULK_TEXT}, occurred_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS rejects (
    day DATE, source_file VARCHAR, row_number BIGINT, source_id VARCHAR,
    field VARCHAR, reason VARCHAR, value VARCHAR
)""",
    f"""
CREATE TABLE IF NOT EXISTS sync_plan (
    day DATE, source_id VARCHAR, action VARCHAR, opportunity_id VARCHAR, fields JSON {BULK_TEXT},
    full_fields JSON {BULK_TEXT}, search_by_value VARCHAR, lead_fields JSON {BULK_TEXT}, owner_email VARCHAR,
    note VARCHAR, record_hash VARCHAR, source_updated_at TIMESTAMP, reason VARCHAR
)""",
    f"""
CREATE TABLE IF NOT EXISTS activity_plan (
    day DATE, event_id VARCHAR, source_id VARCHAR, activity_event INTEGER,
    owner_email VARCHAR, note VARCHAR, fields JSON {BULK_TEXT}, occurred_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS opportunity_state (
    source_id VARCHAR PRIMARY KEY, opportunity_id VARCHAR, lead_id VARCHAR,
    event_code INTEGER, sent_hash VARCHAR, sent_fields JSON, remote_fields JSON,
    source_updated_at TIMESTAMP, remote_modified_on TIMESTAMP, status VARCHAR,
    drift_fields VARCHAR[], error VARCHAR, last_synced_at TIMESTAMP, failed_hash VARCHAR,
    drift JSON, repaired_fields VARCHAR[], repaired_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS activity_state (
    event_id VARCHAR PRIMARY KEY, source_id VARCHAR, opportunity_id VARCHAR,
    activity_id VARCHAR, status VARCHAR, error VARCHAR, pushed_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS push_journal (
    batch_id VARCHAR, run_id VARCHAR, kind VARCHAR, day DATE, source_id VARCHAR,
    event_id VARCHAR, payload JSON, status VARCHAR, opportunity_id VARCHAR, error VARCHAR,
    sent_at TIMESTAMP, answered_at TIMESTAMP
)""",
)

TABLES: tuple[str, ...] = (
    "raw_applications", "raw_events", "opportunity_records", "activity_records", "rejects",
    "sync_plan", "activity_plan", "opportunity_state", "activity_state", "push_journal",
)


# Columns added after a warehouse may have been created: (table, column, type).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("sync_plan", "reason", "VARCHAR"),  # why a sync mode skipped the record
    ("opportunity_state", "drift", "JSON"),  # per drifted field: sent, held, modified_on
    ("opportunity_state", "repaired_fields", "VARCHAR[]"),  # fields sent again after a change in LeadSquared
    ("opportunity_state", "repaired_at", "TIMESTAMP"),
)


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every sync table that does not exist yet and add the columns added since; safe to
    call on every connection."""
    for statement in SCHEMA_DDL:
        conn.execute(statement)
    for table, column, type_ in ADDED_COLUMNS:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type_}")
