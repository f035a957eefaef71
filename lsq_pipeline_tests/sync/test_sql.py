"""Quoting: a name or a text with quotes in it stays one identifier / one literal in DuckDB. Key and
day filters: their rows on either warehouse, none for an empty list. Keyed writes: they change their
keys' rows alone, and on PostgreSQL read no other."""

from __future__ import annotations

import time
from datetime import date

import duckdb
import pytest

from lsq_pipeline.warehouse.connection import Warehouse
from lsq_pipeline.warehouse.sql import day_list_sql, identifier, keyed_rows, literal, on_days, one_of, transaction


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


@pytest.mark.parametrize("warehouse_backend", ["duckdb", "postgres"], indirect=True)
def test_key_and_day_filters_select_their_rows_and_none_when_empty(warehouse_backend, warehouse_target):
    """`one_of` and `on_days` on either warehouse: a key with a quote is one key, and an empty list
    selects nothing (SQL has no empty tuple)."""
    quoted = "O'Neil'); DROP TABLE t; --"
    with Warehouse(str(warehouse_target)).connect(log=print) as conn:
        conn.execute("CREATE TABLE t (k VARCHAR, day DATE)")
        conn.execute("INSERT INTO t VALUES ('k1', DATE '2026-11-01'), ('k2', DATE '2026-11-02'), "
                     "($1, DATE '2026-11-03')", [quoted])

        def keys(where: str) -> list[str]:
            return sorted(row[0] for row in conn.execute(f"SELECT k FROM t WHERE {where}").fetchall())

        assert keys(one_of("k", [quoted, "k1", "absent"])) == sorted([quoted, "k1"])
        assert keys(one_of("k", [])) == []
        assert keys(one_of("k", iter(["k2"]))) == ["k2"]
        assert keys(on_days([date(2026, 11, 2), date(2026, 11, 3)])) == sorted(["k2", quoted])
        assert keys(on_days([])) == []
        assert keys(on_days([date(2026, 11, 1)], column="t.day")) == ["k1"]


def _table_of_1000(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, n INTEGER)")
    conn.execute("INSERT INTO t SELECT 'k' || i, 0 FROM range(1000) r(i)")


def _upsert(conn: duckdb.DuckDBPyConnection, keys: list[str]) -> None:
    with transaction(conn), keyed_rows(conn, "t", "k", keys) as table:
        conn.execute(f"INSERT INTO {table} AS s SELECT unnest($1), 5 ON CONFLICT (k) DO UPDATE SET n = s.n + 1", [keys])


@pytest.mark.parametrize("warehouse_backend", ["duckdb", "postgres"], indirect=True)
def test_a_keyed_write_changes_its_keys_rows_and_no_other(warehouse_backend, warehouse_target):
    with Warehouse(str(warehouse_target)).connect(log=print) as conn:
        _table_of_1000(conn)
        _upsert(conn, ["k1", "k2", "new"])
        _upsert(conn, ["k2"])
        with pytest.raises(duckdb.Error), transaction(conn), keyed_rows(conn, "t", "k", ["k3"]) as table:
            conn.execute(f"UPDATE {table} SET n = 7 WHERE k = 'k3'")
            conn.execute("SELECT error('a failure after the write')")  # all or nothing
        with transaction(conn), keyed_rows(conn, "t", "k", ["k4", "k5"], unique=False) as table:
            conn.execute(f"UPDATE {table} SET n = n + 10 WHERE k IN ('k4', 'k5')")
        rows = dict(conn.execute("SELECT k, n FROM t").fetchall())
    # A DuckDB file is written directly, whatever its name (this one is warehouse.duckdb, the name
    # DuckDB gives its database being the attached PostgreSQL database's too); PostgreSQL through a stage.
    assert (table == "t") == (warehouse_backend == "duckdb"), table
    assert len(rows) == 1001
    assert (rows["k1"], rows["k2"], rows["new"], rows["k3"], rows["k4"], rows["k5"]) == (1, 2, 5, 0, 10, 10)
    assert sum(rows.values()) == 1 + 2 + 5 + 10 + 10


@pytest.mark.parametrize("warehouse_backend", ["duckdb", "postgres"], indirect=True)
def test_a_keyed_write_with_no_keys_only_adds_rows(warehouse_backend, warehouse_target):
    """No keys: nothing is staged and nothing deleted; a row the write inserts is added."""
    with Warehouse(str(warehouse_target)).connect(log=print) as conn:
        _table_of_1000(conn)
        with transaction(conn), keyed_rows(conn, "t", "k", []) as table:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == (1000 if table == "t" else 0)
            conn.execute(f"INSERT INTO {table} VALUES ('new', 5)")
        rows = dict(conn.execute("SELECT k, n FROM t").fetchall())
    assert len(rows) == 1001
    assert rows["new"] == 5 and sum(rows.values()) == 5


def test_on_postgres_a_keyed_write_reads_only_its_keys_rows(postgres_server, postgres_url):
    """What keyed_rows is for: the same upsert straight on the attached table reads all of it out
    of PostgreSQL (DuckDB's ON CONFLICT is a join); through keyed_rows, its keys' rows only."""
    database = postgres_url.rsplit("/", 1)[1]

    def rows_read_after(write) -> int:
        """Rows PostgreSQL read from `t` for `write`, once its statistics are in (a session sends
        them at most once a second, or when idle)."""
        def counters() -> tuple[int, int]:
            scans, rows = postgres_server.psql(
                "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0), coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_user_tables WHERE relname = 't'", database).split("|")
            return int(scans), int(rows)
        scans_before, rows_before = counters()
        write()
        deadline = time.monotonic() + 30
        while (scans := counters())[0] == scans_before:
            assert time.monotonic() < deadline, "PostgreSQL's statistics never counted the write"
            time.sleep(0.5)
        return scans[1] - rows_before

    with Warehouse(postgres_url).connect(log=print) as conn:
        _table_of_1000(conn)
        straight = rows_read_after(lambda: conn.execute(
            "INSERT INTO t AS s SELECT unnest($1), 5 ON CONFLICT (k) DO UPDATE SET n = s.n + 1", [["k1", "k2"]]))
        keyed = rows_read_after(lambda: _upsert(conn, ["k1", "k2"]))
    assert straight >= 1000
    assert keyed <= 4  # the two rows, staged then deleted
