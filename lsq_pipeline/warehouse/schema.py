"""The warehouse's tables (in a DuckDB file or PostgreSQL, see `connection`) and their schema version: `ensure_schema` brings any warehouse,
new or made by an older release, up to this release's schema, in place and in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from lsq_pipeline.warehouse.sql import identifier, transaction

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
    source_columns = ",\n    ".join(f"{identifier(column)} VARCHAR" for column in columns)
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    day DATE,
    source_file VARCHAR,
    row_number BIGINT,
    {source_columns}
)"""


BASELINE_DDL: tuple[str, ...] = (
    _raw_table_ddl("raw_applications", APPLICATION_COLUMNS),
    _raw_table_ddl("raw_events", EVENT_COLUMNS),
    """
CREATE TABLE IF NOT EXISTS opportunity_records (
    day DATE, source_id VARCHAR, source_updated_at TIMESTAMP, search_by_value VARCHAR,
    lead_fields JSON, fields JSON, owner_email VARCHAR, note VARCHAR, record_hash VARCHAR
)""",
    """
CREATE TABLE IF NOT EXISTS activity_records (
    day DATE, event_id VARCHAR, source_id VARCHAR, activity_event INTEGER,
    owner_email VARCHAR, note VARCHAR, fields JSON, occurred_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS rejects (
    day DATE, source_file VARCHAR, row_number BIGINT, source_id VARCHAR,
    field VARCHAR, reason VARCHAR, value VARCHAR
)""",
    """
CREATE TABLE IF NOT EXISTS sync_plan (
    day DATE, source_id VARCHAR, action VARCHAR, opportunity_id VARCHAR, fields JSON,
    full_fields JSON, search_by_value VARCHAR, lead_fields JSON, owner_email VARCHAR,
    note VARCHAR, record_hash VARCHAR, source_updated_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS activity_plan (
    day DATE, event_id VARCHAR, source_id VARCHAR, activity_event INTEGER,
    owner_email VARCHAR, note VARCHAR, fields JSON, occurred_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS opportunity_state (
    source_id VARCHAR PRIMARY KEY, opportunity_id VARCHAR, lead_id VARCHAR,
    event_code INTEGER, sent_hash VARCHAR, sent_fields JSON, remote_fields JSON,
    source_updated_at TIMESTAMP, remote_modified_on TIMESTAMP, status VARCHAR,
    drift_fields VARCHAR[], error VARCHAR, last_synced_at TIMESTAMP, failed_hash VARCHAR
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


RUN_HISTORY_DDL: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS sync_runs (
    run_id VARCHAR PRIMARY KEY, job VARCHAR, first_day DATE, last_day DATE, mode VARCHAR,
    status VARCHAR, reason VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP,
    planned_create INTEGER, attempted_create INTEGER, succeeded_create INTEGER, failed_create INTEGER,
    planned_update INTEGER, attempted_update INTEGER, succeeded_update INTEGER, failed_update INTEGER,
    planned_capture INTEGER, attempted_capture INTEGER, succeeded_capture INTEGER, failed_capture INTEGER,
    planned_activity INTEGER, attempted_activity INTEGER, succeeded_activity INTEGER, failed_activity INTEGER,
    api_calls JSON, api_calls_total INTEGER, rate_limited_calls INTEGER, items_per_second DOUBLE,
    budget_exhausted BOOLEAN, errors INTEGER
)""",
    """
CREATE TABLE IF NOT EXISTS sync_errors (
    run_id VARCHAR, kind VARCHAR, day DATE, source_id VARCHAR, event_id VARCHAR,
    field VARCHAR, error VARCHAR, payload JSON
)""",
)
"""The run history (`tables.runs`) as the migration that made it wrote it: a column per outcome and
journal kind (`statuses.Outcome`, `runs.RUN_KINDS`)."""


SYNC_PLAN_PAYLOADS_VIEW = """CREATE VIEW sync_plan_payloads AS
   SELECT p.day, p.source_id, p.action, p.opportunity_id,
          CASE WHEN p.action = 'create' THEN r.fields ELSE p.fields::VARCHAR END AS fields,
          coalesce(p.full_fields::VARCHAR, r.fields) AS full_fields, r.search_by_value, r.lead_fields,
          r.owner_email, r.note, r.record_hash, r.source_updated_at, p.reason
   FROM sync_plan p JOIN opportunity_records r
     ON r.day = p.record_day AND r.source_id = p.source_id AND r.record_hash = p.record_hash"""
"""What each planned record sends: the decision joined with the version it names (see plan.py)."""


def _copied(table: str, columns: str, select: str) -> tuple[str, ...]:
    """The statements that give `table` new column definitions (`columns`, which may change types
    or compression, neither of which ALTER TABLE can): a copy with its rows as `select`s them."""
    return (
        f"CREATE TABLE {table}_new ({columns})",
        f"INSERT INTO {table}_new SELECT {select} FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_new RENAME TO {table}",
    )


def _as_text(table: str, *columns: str) -> tuple[str, ...]:
    """The statements that make a keyless table's JSON `columns` VARCHAR holding the same text, in
    place and in order, on either backend (PostgreSQL tables attached to DuckDB take no ALTER ...
    TYPE, and DuckDB no DROP COLUMN of a table written in the same transaction): a copy."""
    replaced = ", ".join(f"{column}::VARCHAR AS {column}" for column in columns)
    return (
        f"CREATE TABLE {table}_new AS SELECT * REPLACE ({replaced}) FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_new RENAME TO {table}",
    )


JSON_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "sync_plan": ("fields", "full_fields"), "activity_plan": ("fields",), "push_journal": ("payload",),
    "sync_errors": ("payload",),
}
"""JSON columns of tables without a key, made text by a copy (`_as_text`)."""
STATE_COLUMNS = """
    source_id VARCHAR PRIMARY KEY, opportunity_id VARCHAR, lead_id VARCHAR, event_code INTEGER, sent_hash VARCHAR,
    sent_fields VARCHAR, remote_fields VARCHAR, source_updated_at TIMESTAMP, remote_modified_on TIMESTAMP,
    status VARCHAR, drift_fields VARCHAR[], error VARCHAR, last_synced_at TIMESTAMP, failed_hash VARCHAR,
    drift VARCHAR, repaired_fields VARCHAR[], repaired_at TIMESTAMP, attempts INTEGER DEFAULT 0,
    read_back_since TIMESTAMP, confirmed_at TIMESTAMP, earlier_sent_fields VARCHAR"""
"""The keyed tables with their JSON columns as text (copied whole: a copy `AS SELECT` has no key)."""
SYNC_RUNS_COLUMNS = """
    run_id VARCHAR PRIMARY KEY, job VARCHAR, first_day DATE, last_day DATE, mode VARCHAR, status VARCHAR,
    reason VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP, planned_create INTEGER, attempted_create INTEGER,
    succeeded_create INTEGER, failed_create INTEGER, planned_update INTEGER, attempted_update INTEGER,
    succeeded_update INTEGER, failed_update INTEGER, planned_capture INTEGER, attempted_capture INTEGER,
    succeeded_capture INTEGER, failed_capture INTEGER, planned_activity INTEGER, attempted_activity INTEGER,
    succeeded_activity INTEGER, failed_activity INTEGER, api_calls VARCHAR, api_calls_total INTEGER,
    rate_limited_calls INTEGER, items_per_second DOUBLE, budget_exhausted BOOLEAN, errors INTEGER,
    pending_read_back INTEGER, missing INTEGER"""
ADOPTION_COLUMNS = """
    source_id VARCHAR PRIMARY KEY, opportunity_id VARCHAR, on_existing VARCHAR, keep_owner BOOLEAN,
    adopted_at TIMESTAMP, kept_fields VARCHAR, baseline_at TIMESTAMP"""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: a unique name, why it exists, and the statements that make it.

    Statements must be safe on a warehouse that already has what they add (`IF NOT EXISTS`),
    since warehouses made before versioning hold an unknown mix of the early steps."""

    name: str
    description: str
    statements: tuple[str, ...]


# The schema's history, oldest first. To change the schema, APPEND a step (never edit or
# reorder one that shipped); its position is the schema version it brings the warehouse to.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "baseline",
        "every table of release 0fc11b4; failed_hash for warehouses made before it",
        (*BASELINE_DDL, "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS failed_hash VARCHAR"),
    ),
    Migration(
        "journal_parent_batch",
        "push_journal.parent_batch_id: the refused batch a split half was cut from",
        ("ALTER TABLE push_journal ADD COLUMN IF NOT EXISTS parent_batch_id VARCHAR",),
    ),
    Migration(
        "modes_and_ownership",
        "sync_plan.reason: why the sync mode skipped a record; opportunity_state.drift (per drifted field: "
        "sent, held, modified_on), repaired_fields and repaired_at (fields sent again after a change in LeadSquared)",
        (
            "ALTER TABLE sync_plan ADD COLUMN IF NOT EXISTS reason VARCHAR",
            "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS drift JSON",
            "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS repaired_fields VARCHAR[]",
            "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS repaired_at TIMESTAMP",
        ),
    ),
    Migration(
        "retries_and_history",
        "opportunity_state.attempts (failed sends of the version in failed_hash, for automatic retries); "
        "the run history tables sync_runs and sync_errors",
        ("ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS attempts INTEGER DEFAULT 0", *RUN_HISTORY_DDL),
    ),
    Migration(
        "narrow_plan",
        "sync_plan holds decisions only (the planned version by record_day and record_hash, the update's changed "
        "fields); the plan is rebuilt each run (the view sync_plan_payloads comes with json_as_text)",
        (
            "DROP TABLE IF EXISTS sync_plan",
            """CREATE TABLE sync_plan (
                   day DATE, source_id VARCHAR, action VARCHAR, opportunity_id VARCHAR, record_day DATE,
                   record_hash VARCHAR, fields JSON, full_fields JSON, reason VARCHAR)""",
        ),
    ),
    Migration(
        "json_as_text",
        "opportunity_records.lead_fields and fields, activity_records.fields: VARCHAR holding JSON text (built valid "
        "by transform; a JSON column parsed every row again on insert), compressed with zstd (faster to write and "
        "smaller than the default for long texts); both tables copied; the view sync_plan_payloads (each planned "
        "record's payload)",
        (
            "DROP VIEW IF EXISTS sync_plan_payloads",
            *_copied("opportunity_records", """
                day DATE, source_id VARCHAR, source_updated_at TIMESTAMP, search_by_value VARCHAR,
                lead_fields VARCHAR USING COMPRESSION zstd, fields VARCHAR USING COMPRESSION zstd,
                owner_email VARCHAR, note VARCHAR, record_hash VARCHAR""", """
                day, source_id, source_updated_at, search_by_value, lead_fields::VARCHAR, fields::VARCHAR,
                owner_email, note, record_hash"""),
            *_copied("activity_records", """
                day DATE, event_id VARCHAR, source_id VARCHAR, activity_event INTEGER, owner_email VARCHAR,
                note VARCHAR, fields VARCHAR USING COMPRESSION zstd, occurred_at TIMESTAMP""", """
                day, event_id, source_id, activity_event, owner_email, note, fields::VARCHAR, occurred_at"""),
            SYNC_PLAN_PAYLOADS_VIEW,
        ),
    ),
    Migration(
        "zstd_record_texts",
        "opportunity_records.source_id, search_by_value, note and record_hash compressed with zstd too: a "
        "million-record transform writes it faster (the default compression's analysis costs more), the file no "
        "larger; the table copied, the view sync_plan_payloads made again",
        (
            "DROP VIEW sync_plan_payloads",
            *_copied("opportunity_records", """
                day DATE, source_id VARCHAR USING COMPRESSION zstd, source_updated_at TIMESTAMP,
                search_by_value VARCHAR USING COMPRESSION zstd, lead_fields VARCHAR USING COMPRESSION zstd,
                fields VARCHAR USING COMPRESSION zstd, owner_email VARCHAR, note VARCHAR USING COMPRESSION zstd,
                record_hash VARCHAR USING COMPRESSION zstd""", "*"),
            SYNC_PLAN_PAYLOADS_VIEW,
        ),
    ),
    Migration(
        "read_back_grace",
        "reads lag writes: opportunity_state.read_back_since (when the read-back's grace began: our last write, "
        "or the first read that did not find a confirmed record), confirmed_at (the last read-back that found it), "
        "earlier_sent_fields (the versions sent before the last write and not confirmed since, a JSON list); "
        "sync_runs.pending_read_back and missing. "
        "Rows failed only because a read-back did not find them go back to pending, to be read again",
        (
            "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS read_back_since TIMESTAMP",
            "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS confirmed_at TIMESTAMP",
            "ALTER TABLE opportunity_state ADD COLUMN IF NOT EXISTS earlier_sent_fields JSON",
            "ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS pending_read_back INTEGER",
            "ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS missing INTEGER",
            "UPDATE opportunity_state SET confirmed_at = last_synced_at WHERE status IN ('in_sync', 'drifted')",
            "UPDATE opportunity_state SET read_back_since = last_synced_at WHERE status = 'pending'",
            """UPDATE opportunity_state SET status = 'pending', error = NULL, read_back_since = last_synced_at
               WHERE status = 'failed' AND error = 'opportunity not found in LeadSquared'
                 AND opportunity_id IS NOT NULL""",
        ),
    ),
    Migration(
        "opportunity_adoption",
        "opportunity_adoption: the opportunities this pipeline adopted (a create met one it had not made) under "
        "the mapping's on_existing fill_empty / keep or keep_owner, and the fields where LeadSquared kept its own "
        "value (kept_fields, taken by the read-back): the record's baseline there instead of what was sent",
        ("""CREATE TABLE IF NOT EXISTS opportunity_adoption (
                source_id VARCHAR PRIMARY KEY, opportunity_id VARCHAR, on_existing VARCHAR, keep_owner BOOLEAN,
                adopted_at TIMESTAMP, kept_fields JSON, baseline_at TIMESTAMP)""",),
    ),
    Migration(
        "json_columns_as_text",
        "every remaining JSON column (plans, state, journal, adoption, history) is VARCHAR holding the same JSON "
        "text, as the record tables already are: PostgreSQL takes a many-row UPDATE of a json column from DuckDB "
        "only as text, and queries read the text through DuckDB's JSON functions on either backend",
        (
            "DROP VIEW sync_plan_payloads",
            *(statement for table, columns in JSON_TEXT_COLUMNS.items() for statement in _as_text(table, *columns)),
            *_copied("opportunity_state", STATE_COLUMNS, "*"),
            *_copied("opportunity_adoption", ADOPTION_COLUMNS, "*"),
            *_copied("sync_runs", SYNC_RUNS_COLUMNS, "*"),
            SYNC_PLAN_PAYLOADS_VIEW,
        ),
    ),
    Migration(
        "push_journal_batch_index",
        "an index on push_journal (batch_id): a push writes each answer to its batch's rows alone "
        "(sql.keyed_rows), which PostgreSQL then finds by the index instead of reading the whole journal",
        ("CREATE INDEX IF NOT EXISTS push_journal_batch ON push_journal (batch_id)",),
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


RAW_PROBLEM_COLUMN = "source_problem"
"""A raw row's reason to be rejected whatever its values (read from a table or query: its day column
is empty, or a snapshot gives its key twice); NULL for a row to check."""


def add_raw_columns(conn: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> None:
    """Give a raw table the source columns the mapping reads that it lacks, and `source_problem`,
    as VARCHAR, when a run starts: a raw table is the run's working table, its columns the
    mapping's whatever the source (the demo's are there from the start)."""
    columns = [*columns, RAW_PROBLEM_COLUMN]
    have = {name.lower() for (name,) in conn.execute(
        """SELECT column_name FROM duckdb_columns() WHERE table_name = $1
           AND database_name = current_database() AND schema_name = current_schema()""", [table]).fetchall()}
    for column in columns:
        if column.lower() not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {identifier(column)} VARCHAR")


class WarehouseVersionError(RuntimeError):
    """The warehouse was made by a newer release than this one: opening it could lose data."""


def schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The warehouse's schema version: 0 for a new one or one made before versioning."""
    exists = conn.execute(
        """SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version'
           AND database_name = current_database() AND schema_name = current_schema()"""
    ).fetchone()[0]
    if not exists:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Bring the warehouse to `SCHEMA_VERSION`, applying the missing steps in one transaction
    (all or none); returns the names applied. Cheap when the warehouse is current."""
    if schema_version(conn) == SCHEMA_VERSION:
        return []
    try:
        with transaction(conn):
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                       version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR,
                       applied_at TIMESTAMP DEFAULT now())"""
            )
            applied = dict(conn.execute("SELECT version, name FROM schema_version").fetchall())
            unknown = {v: n for v, n in applied.items() if v > SCHEMA_VERSION or MIGRATIONS[v - 1].name != n}
            if unknown:
                raise WarehouseVersionError(
                    f"the warehouse has schema steps this release does not know ({unknown}); it was made by a "
                    f"newer lsq_pipeline (this one knows up to version {SCHEMA_VERSION}): upgrade lsq_pipeline"
                )
            done = []
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version in applied:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, description) VALUES ($1, $2, $3)",
                    [version, migration.name, migration.description],
                )
                done.append(migration.name)
    except duckdb.TransactionException:
        if schema_version(conn) == SCHEMA_VERSION:  # another connection of this process migrated it
            return []
        raise
    return done


@dataclass(frozen=True)
class TableSlice:
    """The rows of a table a step wrote: how many, a few of them, and the table's column types."""

    rows: int
    columns: list[str]
    sample: list[tuple]
    schema: list[tuple[str, str]]


def table_slice(
    conn: duckdb.DuckDBPyConnection, table: str, where: str, params: Sequence[object], sample_rows: int
) -> TableSlice:
    count = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", list(params)).fetchone()[0]
    cursor = conn.execute(f"SELECT * FROM {table} WHERE {where} LIMIT {sample_rows}", list(params))
    columns = [d[0] for d in cursor.description]
    sample = cursor.fetchall()
    schema = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return TableSlice(count, columns, sample, schema)
