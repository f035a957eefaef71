"""Quoting for SQL built from names: every identifier and every text literal the sync writes into
SQL text goes through here, so a name from the mapping can never change the statement. And the
one way the sync makes several statements one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import duckdb


def identifier(name: str) -> str:
    """A table or column name as a quoted SQL identifier: `amount` -> `"amount"`."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Text as a SQL string literal: `O'Neil` -> `'O''Neil'`."""
    return "'" + text.replace("'", "''") + "'"


def day_list_sql(days: Iterable[date]) -> str:
    """The days as a SQL tuple, e.g. `(DATE '2026-11-01')`, for `day IN ...` filters."""
    return "(" + ", ".join(f"DATE {literal(day.isoformat())}" for day in days) + ")"


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """The statements of the block all or none: committed when it ends, rolled back when it raises
    (anything, an interrupt too), the error raised again."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def literal_list(texts: Iterable[str]) -> str:
    """Texts as a SQL tuple of literals, e.g. `('a', 'b')`, for `column IN ...`: statuses, kinds,
    and keys (a filter DuckDB's `postgres` extension pushes down to PostgreSQL, which a list
    from `unnest($1)` is not)."""
    return "(" + ", ".join(literal(text) for text in texts) + ")"


def one_of(expression: str, texts: Iterable[str]) -> str:
    """`expression IN ('a', 'b')`, a `where` on keys that DuckDB pushes down to PostgreSQL; FALSE
    when there are none (SQL has no empty tuple)."""
    texts = list(texts)
    return f"{expression} IN {literal_list(texts)}" if texts else "FALSE"


def on_days(days: Iterable[date], column: str = "day") -> str:
    """`day IN (DATE '2026-11-01', ...)`, a `where` on days that DuckDB pushes down to PostgreSQL;
    FALSE when there are none."""
    days = list(days)
    return f"{column} IN {day_list_sql(days)}" if days else "FALSE"


def queried_keys(conn: duckdb.DuckDBPyConnection, query: str, params: Sequence[object] = ()) -> Iterator[str]:
    """The first column of `query`'s rows, read only when iterated: the keys of a `keyed_rows`
    write that its statement selects itself, which only PostgreSQL reads."""
    yield from (row[0] for row in conn.execute(query, list(params)).fetchall())


def _tables_in_postgres(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's tables are PostgreSQL's: its current database is an attached one
    (a DuckDB file may have any name, `warehouse` too)."""
    return conn.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0] == "postgres"


@contextmanager
def keyed_rows(conn: duckdb.DuckDBPyConnection, table: str, key: str, keys: Iterable[str], *,
               unique: bool = True) -> Iterator[str]:
    """The table to run statements on that touch only `table`'s rows whose `key` is one of `keys`
    (an `INSERT`, an `INSERT ... ON CONFLICT`, an `INSERT OR REPLACE`, an `UPDATE ... FROM`, a
    `DELETE`), inside a transaction: every write to a state table goes through here.

    On a DuckDB file: `table` itself, and `keys` is never read (a generator that queries them costs
    nothing there). On PostgreSQL, DuckDB runs such a statement on an attached table as a join that
    copies the whole table out of PostgreSQL, so a push's per-call writes grew with the tables
    (quadratic in a run's size). There, the keyed rows are copied into a local stage of the same
    shape (`unique`: with `key` as its primary key, for `ON CONFLICT`), the statements run on the
    stage, and then the keyed rows in PostgreSQL are replaced by the stage's. The keys reach
    PostgreSQL as a list of literals, a filter DuckDB pushes down (a list from `unnest($1)` is not).
    """
    if not _tables_in_postgres(conn):
        yield table
        return
    keys = list(dict.fromkeys(keys))
    keyed = one_of(key, keys)
    stage_name = identifier("stage_" + table)
    stage = f"temp.main.{stage_name}"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {stage_name} AS SELECT * FROM {table} WHERE {keyed}")
    if unique:
        conn.execute(f"ALTER TABLE {stage} ADD PRIMARY KEY ({key})")
    yield stage
    if keys:
        conn.execute(f"DELETE FROM {table} WHERE {keyed}")
    conn.execute(f"INSERT INTO {table} SELECT * FROM {stage}")
