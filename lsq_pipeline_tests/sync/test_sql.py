"""Quoting: a name or a text with quotes in it stays one identifier / one literal in DuckDB."""

from __future__ import annotations

from datetime import date

import duckdb

from lsq_pipeline.sync.sql import day_list_sql, identifier, literal


def test_an_identifier_with_quotes_and_spaces_names_one_column():
    conn = duckdb.connect()
    name = 'amount"; DROP TABLE t; --'
    conn.execute(f"CREATE TABLE t ({identifier(name)} VARCHAR, {identifier('select')} VARCHAR)")
    assert [row[0] for row in conn.execute("DESCRIBE t").fetchall()] == [name, "select"]


def test_a_literal_with_quotes_is_one_value():
    conn = duckdb.connect()
    text = "O'Neil'); DROP TABLE t; --"
    assert conn.execute(f"SELECT {literal(text)}").fetchone()[0] == text


def test_day_list_filters_by_days():
    conn = duckdb.connect()
    rows = conn.execute(
        f"SELECT d FROM (VALUES (DATE '2026-11-01'), (DATE '2026-11-02')) v(d) WHERE d IN {day_list_sql([date(2026, 11, 2)])}"
    ).fetchall()
    assert rows == [(date(2026, 11, 2),)]
