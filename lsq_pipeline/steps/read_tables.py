"""Reading a record set from a table or a query: in a DuckDB file (attached read-only under its
file's stem, for the time of the read only), in PostgreSQL (attached read-only through the
warehouse's postgres extension; a query sent whole through `postgres_query`) or in the warehouse
itself. The run's days are pushed down as half-open ranges on the day column; typed values
become the canonical text the transform's rules read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from lsq_pipeline.sources import SourceTable
from lsq_pipeline.warehouse.connection import first_line, load_postgres_extension
from lsq_pipeline.warehouse.sql import identifier, literal

LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
QUERY_SHOWN_CHARS = 200


class SourceError(Exception):
    """A table or query source that cannot be read: one line naming the record set and the cause."""


@dataclass(frozen=True)
class Relation:
    """Where one record set's rows are read: `sql` is what follows FROM; a PostgreSQL query is
    instead sent whole (`postgres_alias`), its range inside."""

    record_set: str
    source: SourceTable
    sql: str
    postgres_alias: str | None = None
    postgres_from: str | None = None
    """On PostgreSQL, the FROM item in PostgreSQL's dialect: the reads are sent whole through
    `postgres_query`, so PostgreSQL answers the day range (or `IS NULL`) from its index; DuckDB's
    scan of an attached table would split the range into many scans, and copy the whole table to
    filter `IS NULL` itself."""

    def describe(self) -> str:
        """How messages name it: the table, or the query's first characters, and where it is."""
        what = f"table {self.source.table}" if self.source.table else f"query {self.source.query[:QUERY_SHOWN_CHARS]!r}"
        return f"{self.record_set} {what} in {where(self.source)}"

    def select(self, where_sql: str = "TRUE") -> str:
        """FROM-clause SQL of the rows matching `where_sql` (in the source's own dialect on PostgreSQL)."""
        if self.postgres_alias is None:
            return f"(SELECT * FROM {self.sql} WHERE {where_sql}) AS q"
        sent = f"SELECT * FROM {self.postgres_from} q WHERE {where_sql}"
        return f"postgres_query({literal(self.postgres_alias)}, {literal(sent)}) AS q"


def where(source: SourceTable) -> str:
    """The source database as messages name it (never a password: a URL with one is refused)."""
    if not source.database:
        return "the warehouse"
    return f"PostgreSQL {source.database}" if source.on_postgres() else f"DuckDB {source.database}"


def alias_of(source: SourceTable) -> str:
    """The catalog name a source database is attached under: a DuckDB file's stem (the name its
    views' SQL uses, as dbt-duckdb writes them), a PostgreSQL database's name."""
    if source.on_postgres():
        return urlsplit(source.database).path.strip("/")
    return Path(source.database).stem


@contextmanager
def attached(conn: duckdb.DuckDBPyConnection, source: SourceTable, record_set: str) -> Iterator[str | None]:
    """The source's database attached read-only for the `with` block (its catalog name), then
    detached; None for the warehouse itself."""
    if not source.database:
        yield None
        return
    alias = alias_of(source)
    known = dict(conn.execute("SELECT database_name, path FROM duckdb_databases()").fetchall())
    if alias in known:
        if not source.on_postgres() and known[alias] and Path(known[alias]).resolve() == Path(source.database).resolve():
            yield alias  # the warehouse's own file
            return
        raise SourceError(f"{record_set}: cannot attach {where(source)} as {alias!r}: a database of that name is "
                          "already attached (rename the file or the database)")
    if source.on_postgres():
        load_postgres_extension(conn)
        statement = f"ATTACH {literal(source.database)} AS {identifier(alias)} (TYPE postgres, READ_ONLY)"
    else:
        if not Path(source.database).is_file():
            raise SourceError(f"{record_set}: the DuckDB file {source.database} does not exist")
        statement = f"ATTACH {literal(source.database)} AS {identifier(alias)} (READ_ONLY)"
    try:
        conn.execute(statement)
    except duckdb.Error as error:
        holder = LOCK_HOLDER.search(str(error))
        if holder:
            raise SourceError(
                f"{record_set}: the source {where(source)} is locked by {holder['program']} (PID {holder['pid']}), "
                "a process writing to it: let it finish or close it, then run again; nothing was read") from None
        raise SourceError(f"{record_set}: cannot open {where(source)}: {first_line(error)}") from None
    try:
        yield alias
    finally:
        conn.execute(f"DETACH {identifier(alias)}")


def relation(source: SourceTable, record_set: str, alias: str | None) -> Relation:
    """The source's rows as SQL after FROM, its table name qualified by the attached catalog."""
    if source.query:
        if source.on_postgres():
            return Relation(record_set, source, "", postgres_alias=alias, postgres_from=f"({source.query})")
        return Relation(record_set, source, f"({source.query}) AS source_query")
    parts = source.table.split(".")
    if alias is not None and source.on_postgres():
        on_server = ".".join(identifier(part) for part in parts[-2:])
        return Relation(record_set, source, ".".join(identifier(part) for part in [alias, *parts[-2:]]),
                        postgres_alias=alias, postgres_from=on_server)
    elif alias is not None and len(parts) < 3 and parts[0] != alias:
        parts = [alias, *parts]
    return Relation(record_set, source, ".".join(identifier(part) for part in parts))


SYSTEM_SCHEMAS = ("information_schema", "pg_catalog")
"""PostgreSQL's own catalogs, which an attached database lists among its tables: some 200 names
that would bury the team's few in a missing table's message."""


def _existing_tables(conn: duckdb.DuckDBPyConnection, alias: str | None) -> list[str]:
    catalog = f"database_name = {literal(alias)}" if alias else "database_name = current_database()"
    catalog += f" AND schema_name NOT IN ({', '.join(literal(schema) for schema in SYSTEM_SCHEMAS)})"
    return [name for (name,) in conn.execute(
        f"""SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE {catalog}
            UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE {catalog} AND NOT internal
            ORDER BY 1""").fetchall()]


def source_columns(conn: duckdb.DuckDBPyConnection, rel: Relation, alias: str | None) -> dict[str, tuple[str, str]]:
    """{lower-case name: (name, type)} of the source's columns; a missing table or a failing query
    raises `SourceError` in one line."""
    try:
        # A table is described through the attached catalog, which names the tables there when it is missing.
        sql = f"{rel.sql} AS q" if rel.source.table else rel.select("FALSE")
        described = conn.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()
    except duckdb.CatalogException as error:
        if rel.source.table:
            tables = _existing_tables(conn, alias)
            raise SourceError(f"{rel.record_set}: table {rel.source.table} does not exist in {where(rel.source)} "
                              f"(tables there: {', '.join(tables) or 'none'})") from None
        raise SourceError(f"the {rel.describe()} failed: {first_line(error)}") from None
    except duckdb.Error as error:
        raise SourceError(f"the {rel.describe()} failed: {first_line(error)}") from None
    return {name.lower(): (name, type_name) for name, type_name, *_ in described}


def check_columns(rel: Relation, columns: dict[str, tuple[str, str]], wanted: list[str]) -> None:
    """Raise naming the mapping's columns (and day column) the source lacks, and those it has."""
    missing = [column for column in wanted if column.lower() not in columns]
    if missing:
        raise SourceError(f"{rel.describe()}: no column {', '.join(missing)} (its columns: "
                          f"{', '.join(name for name, _ in columns.values())})")


def as_text(column: str, type_name: str) -> str:
    """SQL of a typed value as the canonical text the transform's rules read: numbers without a
    needless `.0`, dates `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS[.ffffff]` at UTC,
    booleans `true` / `false`."""
    kind = type_name.upper()
    if kind == "VARCHAR":
        return column
    if kind == "BOOLEAN":
        return f"CASE WHEN {column} THEN 'true' WHEN NOT {column} THEN 'false' END"
    if kind == "TIMESTAMP WITH TIME ZONE":
        return f"CAST(timezone('UTC', {column}) AS VARCHAR)"
    if kind.startswith("TIMESTAMP"):
        return f"CAST(CAST({column} AS TIMESTAMP) AS VARCHAR)"
    if kind in ("DOUBLE", "FLOAT", "REAL") or kind.startswith("DECIMAL"):
        return (f"CASE WHEN isfinite({column}) AND {column} = trunc({column}) AND abs({column}) < 1e15 "
                f"THEN CAST(CAST({column} AS BIGINT) AS VARCHAR) ELSE CAST({column} AS VARCHAR) END")
    return f"CAST({column} AS VARCHAR)"


def text_columns(found: dict[str, tuple[str, str]], columns: list[str]) -> str:
    """SQL of the `columns` of a typed source (`found`: {lower-case name: (name, type)}) as canonical
    text, each under its mapping name."""
    return ", ".join(f"{as_text(identifier(found[c.lower()][0]), found[c.lower()][1])} AS {identifier(c)}"
                     for c in columns)


def staged_table(record_set: str) -> str:
    """The temporary table that holds a record set's rows as read, before they replace the raw rows."""
    return identifier(f"_extracted_{record_set}")


def _bound(day: date, type_name: str) -> str:
    kind = type_name.upper()
    if kind == "DATE":
        return f"DATE '{day.isoformat()}'"
    if kind == "TIMESTAMP WITH TIME ZONE":
        return f"TIMESTAMPTZ '{day.isoformat()} 00:00:00+00'"
    return f"TIMESTAMP '{day.isoformat()} 00:00:00'"


def day_type_problem(type_name: str) -> str | None:
    kind = type_name.upper()
    if kind == "DATE" or kind.startswith("TIMESTAMP"):
        return None
    return f"is {type_name}: a day column is DATE, TIMESTAMP or TIMESTAMPTZ"


def day_of(column: str, type_name: str) -> str:
    """SQL of a row's UTC day."""
    if type_name.upper() == "TIMESTAMP WITH TIME ZONE":
        return f"CAST(timezone('UTC', {column}) AS DATE)"
    return f"CAST({column} AS DATE)"


def day_ranges(column: str, type_name: str, days: list[date]) -> str:
    """`column >= start AND column < end` for each run of consecutive days, OR-ed: a range the
    source database can answer from an index or its zone maps, never a cast of the column."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return " OR ".join(f"({column} >= {_bound(start, type_name)} AND {column} < {_bound(end, type_name)})"
                       for start, end in ranges) or "FALSE"


@dataclass(frozen=True)
class StagedRows:
    """A record set's rows as read, in a temporary table: `select` gives them in the raw table's
    shape (day, source_file, row_number, the columns, source_problem); `counts` per day."""

    table: str
    select: str
    counts: dict[date, int]


def stage_table(conn: duckdb.DuckDBPyConnection, source: SourceTable, record_set: str, columns: list[str],
                key: str, days: list[date]) -> StagedRows:
    """Read the days' rows of a table or query (with a day column), or the whole of it (a snapshot,
    filed under the run's one day), into a temporary table. Rows of a NULL day column are read
    once per run, filed under its last day, each with its reason; in a snapshot, every row of a
    key given more than once is marked with a reason naming the key."""
    staged = staged_table(record_set)
    with attached(conn, source, record_set) as alias:
        rel = relation(source, record_set, alias)
        found = source_columns(conn, rel, alias)
        check_columns(rel, found, [*columns, *([source.day_column] if source.day_column else [])])
        values = text_columns(found, columns)
        try:
            if source.day_column:
                _stage_days(conn, rel, found, staged, values, days)
            else:
                conn.execute(f"""CREATE OR REPLACE TEMP TABLE {staged} AS
                    SELECT DATE '{days[0].isoformat()}' AS day, NULL AS _order, {values}, NULL::VARCHAR AS source_problem
                    FROM {rel.select()}""")
        except duckdb.Error as error:
            raise SourceError(f"the {rel.describe()} failed: {first_line(error)}") from None
    if not source.day_column:
        _mark_duplicates(conn, staged, key)
    label = literal(source.table or f"{record_set} query")
    select = f"""SELECT day, {label}, row_number() OVER (PARTITION BY day ORDER BY _order NULLS LAST, rowid),
                        {', '.join(identifier(c) for c in columns)}, source_problem FROM {staged}"""
    counts = dict(conn.execute(f"SELECT day, count(*) FROM {staged} GROUP BY day").fetchall())
    return StagedRows(staged, select, {day: counts.get(day, 0) for day in days})


def _stage_days(conn: duckdb.DuckDBPyConnection, rel: Relation, found: dict[str, tuple[str, str]],
                staged: str, values: str, days: list[date]) -> None:
    """The days' rows by the day column's half-open ranges, then its NULL rows under the last day."""
    name, type_name = found[rel.source.day_column.lower()]
    if problem := day_type_problem(type_name):
        raise SourceError(f"{rel.describe()}: day_column {name} {problem}")
    column = identifier(name)
    conn.execute(f"""CREATE OR REPLACE TEMP TABLE {staged} AS
        SELECT {day_of(column, type_name)} AS day, {column} AS _order, {values}, NULL::VARCHAR AS source_problem
        FROM {rel.select(day_ranges(column, type_name, days))}""")
    reason = literal(f"day_column {name} is empty: the row belongs to no day")
    conn.execute(f"""INSERT INTO {staged}
        SELECT DATE '{max(days).isoformat()}', NULL, {values}, {reason} FROM {rel.select(f'{column} IS NULL')}""")


def _mark_duplicates(conn: duckdb.DuckDBPyConnection, staged: str, key: str) -> None:
    """Every row of a key given more than once in a snapshot gets a reason naming the key: with no
    day column, no row is later than another."""
    column = identifier(key)
    conn.execute(f"""UPDATE {staged} SET source_problem = 'key ' || trim({column}) || ' is in ' || d.rows
                         || ' rows of the source: which is the record is unknown, each is rejected'
                     FROM (SELECT trim({column}) AS key, count(*) AS rows FROM {staged}
                           GROUP BY 1 HAVING count(*) > 1) AS d
                     WHERE trim({staged}.{column}) = d.key""")
