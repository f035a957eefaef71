"""Moving an account's DuckDB warehouse into PostgreSQL (`lsq-pipeline warehouse copy`): every
table, the journal and the state included, so the next run on PostgreSQL knows everything that was
sent and sends nothing twice. The rows go in one transaction on the target: all of them or none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lsq_pipeline.warehouse.connection import Warehouse, first_line, is_postgres, postgres_url_problem, schema_problem
from lsq_pipeline.warehouse.sql import identifier, literal, transaction
from lsq_pipeline.warehouse.schema import SCHEMA_VERSION, ensure_schema, schema_version

SOURCE_CATALOG = "source"
"""The name the DuckDB file has inside the target's DuckDB connection while it is copied."""
VERSION_TABLE = "schema_version"


class CopyRefused(RuntimeError):
    """The copy was not made (nothing written to the target's tables): the message names why and the fix."""


@dataclass(frozen=True)
class CopyResult:
    rows: dict[str, int]
    """Rows copied, per table."""
    migrated: list[str]
    """Schema steps applied to the DuckDB file before the copy (it was made by an older release)."""


def target_problem(url: str, schema: str) -> str | None:
    """Why the copy cannot go to `url` and `schema`, or None (never showing a password)."""
    if not is_postgres(url):
        return "not a PostgreSQL URL: give postgresql://user@host:5432/dbname"
    return postgres_url_problem(url) or schema_problem(schema)


def copy_warehouse(source: Path, target: Warehouse, log: Callable[[str], None] = print) -> CopyResult:
    """Copy every table of the DuckDB file `source` into the empty warehouse `target` (PostgreSQL).

    The file is first brought to this release's schema (a run would do the same), then attached
    read-only to the target's connection, so the rows go straight from one to the other with no
    file in between. Refused, writing nothing, when the target already holds rows."""
    if not source.is_file():
        raise CopyRefused(f"there is no DuckDB warehouse at {source}: nothing to copy")
    migrated = _bring_to_current_schema(source, log)
    with target.connect(log) as conn:
        ensure_schema(conn)
        try:
            conn.execute(f"ATTACH {literal(str(source))} AS {SOURCE_CATALOG} (READ_ONLY)")
        except duckdb.IOException as error:
            raise CopyRefused(f"cannot open {source} read-only (is a run writing it? wait for it to end): "
                              f"{first_line(error)}") from None
        try:
            tables = _tables(conn, log)
            held = {table: count for table in tables if table != VERSION_TABLE
                    and (count := conn.execute(f"SELECT count(*) FROM {identifier(table)}").fetchone()[0])}
            if held:
                listed = ", ".join(f"{table} {count}" for table, count in sorted(held.items()))
                raise CopyRefused(
                    f"schema {target.schema} of {target.target} already holds rows ({listed}): the copy goes into "
                    f"an empty schema only; give another with --schema NAME, or drop that schema's tables first")
            return CopyResult(_copy_tables(conn, tables), migrated)
        finally:
            conn.execute(f"DETACH {SOURCE_CATALOG}")


def _bring_to_current_schema(source: Path, log: Callable[[str], None]) -> list[str]:
    """The file at this release's schema, so each table's columns are the target's: read-only
    when it already is; otherwise opened read-write once and migrated, as the next run would."""
    file = Warehouse(str(source))
    with file.connect(log, read_only=True) as conn:
        if schema_version(conn) == SCHEMA_VERSION:
            return []
    with file.connect(log) as conn:
        applied = ensure_schema(conn)
    if applied:
        log(f"brought {source} to schema version {SCHEMA_VERSION} first ({', '.join(applied)})")
    return applied


def _tables(conn: duckdb.DuckDBPyConnection, log: Callable[[str], None]) -> list[str]:
    """The tables to copy: the file's (DuckDB tells its views apart; the postgres extension lists
    PostgreSQL's views as tables), each of which the target must have after `ensure_schema`."""
    database, schema = conn.execute("SELECT current_database(), current_schema()").fetchone()
    source = [row[0] for row in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = $1 AND schema_name = 'main' ORDER BY table_name",
        [SOURCE_CATALOG]).fetchall()]
    target = {row[0] for row in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = $1 AND schema_name = $2",
        [database, schema]).fetchall()}
    unknown = [table for table in source if table not in target]
    if unknown:
        log(f"not copied (not tables of this release): {', '.join(unknown)}")
    return [table for table in source if table in target]


def _columns(conn: duckdb.DuckDBPyConnection, database: str, schema: str, table: str) -> list[str]:
    return [row[0] for row in conn.execute(
        """SELECT column_name FROM duckdb_columns() WHERE database_name = $1 AND schema_name = $2
           AND table_name = $3 ORDER BY column_index""", [database, schema, table]).fetchall()]


def _copy_tables(conn: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, int]:
    """INSERT ... SELECT of every table, with explicit columns, in one transaction. The target's
    `schema_version` rows (written by `ensure_schema` just now) give way to the file's, which say
    when each step was first applied."""
    database, schema = conn.execute("SELECT current_database(), current_schema()").fetchone()
    plans = []
    for table in tables:
        columns = _columns(conn, database, schema, table)
        missing = set(columns) - set(_columns(conn, SOURCE_CATALOG, "main", table))
        if missing:
            raise CopyRefused(f"the DuckDB file's {table} lacks {', '.join(sorted(missing))}: "
                              f"run a sync on it once with this release, then copy")
        plans.append((table, ", ".join(identifier(column) for column in columns)))
    copied: dict[str, int] = {}
    with transaction(conn):
        for table, columns in plans:
            if table == VERSION_TABLE:
                conn.execute(f"DELETE FROM {identifier(table)}")
            copied[table] = conn.execute(
                f"INSERT INTO {identifier(table)} ({columns}) SELECT {columns} FROM {SOURCE_CATALOG}.main.{identifier(table)}"
            ).fetchone()[0]
    return copied
