"""Quoting for SQL built from names: every identifier and every text literal the sync writes into
SQL text goes through here, so a name from the mapping can never change the statement. And the
one way the sync makes several statements one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
