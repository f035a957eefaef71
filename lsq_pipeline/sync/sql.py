"""Quoting for SQL built from names: every identifier and every text literal the sync writes into
SQL text goes through here, so a name from the mapping can never change the statement."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date


def identifier(name: str) -> str:
    """A table or column name as a quoted SQL identifier: `amount` -> `"amount"`."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Text as a SQL string literal: `O'Neil` -> `'O''Neil'`."""
    return "'" + text.replace("'", "''") + "'"


def day_list_sql(days: Iterable[date]) -> str:
    """The days as a SQL tuple, e.g. `(DATE '2026-11-01')`, for `day IN ...` filters."""
    return "(" + ", ".join(f"DATE {literal(day.isoformat())}" for day in days) + ")"
