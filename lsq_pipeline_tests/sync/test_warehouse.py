"""The warehouse's schema version: a new warehouse, one made by the previous release (0fc11b4)
and one made before `failed_hash` all open at the current version, in place, keeping their rows;
a failing step changes nothing; a newer warehouse is refused. And `ReusedConnection`: a burst of
writes opens the file once and leaves it free soon after."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import duckdb
import pytest

from lsq_pipeline.warehouse import schema
from lsq_pipeline.warehouse.connection import FILE_CONFIG, ReusedConnection
from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.steps.plan import plan_days
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    WarehouseVersionError,
    ensure_schema,
    schema_version,
)

from .conftest import DAY, good_application, write_day

PREVIOUS_RELEASE = Path(__file__).parent / "fixtures" / "warehouse_0fc11b4.sql"


def _previous_release(path: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute(PREVIOUS_RELEASE.read_text(encoding="utf-8"))
    return conn


def _load_day(conn, tmp_path: Path, mapping) -> None:
    write_day(tmp_path / "source", DAY, [good_application(updated_at="2026-11-01T12:00:00Z"), good_application(application_id="APP-3")])
    extract_day(conn, tmp_path / "source", DAY)
    transform_days(conn, [DAY], mapping)


def _columns(conn, table: str) -> list[str]:
    return [row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()]


def test_a_new_warehouse_gets_every_step_and_the_current_version(tmp_path):
    conn = duckdb.connect(str(tmp_path / "new.duckdb"))
    assert schema_version(conn) == 0
    assert ensure_schema(conn) == [m.name for m in MIGRATIONS]
    assert schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
    assert ensure_schema(conn) == []  # current: nothing to do
    assert "parent_batch_id" in _columns(conn, "push_journal")


def test_a_warehouse_of_the_previous_release_is_upgraded_in_place_keeping_its_rows(tmp_path, mapping):
    path = tmp_path / "old.duckdb"
    old = _previous_release(path)
    before = {t: old.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
              for t in ("opportunity_state", "activity_state", "push_journal")}
    old.close()

    conn = duckdb.connect(str(path))
    assert schema_version(conn) == 0
    assert ensure_schema(conn) == [m.name for m in MIGRATIONS]
    assert schema_version(conn) == SCHEMA_VERSION
    applied = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
    assert applied == [(i, m.name) for i, m in enumerate(MIGRATIONS, start=1)]
    for table, rows in before.items():
        columns = len(rows[0])
        assert [row[:columns] for row in conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()] == rows
    assert conn.execute("SELECT parent_batch_id FROM push_journal").fetchall() == [(None,), (None,)]
    # The upgraded warehouse works: APP-1 keeps its opportunity (an update, not a second create).
    _load_day(conn, tmp_path, mapping)
    assert plan_days(conn, [DAY], mapping) == {
        "create": 1, "update": 1, "unchanged": 0, "stale": 0, "refused": 0, "skipped": 0, "activities": 0}
    assert conn.execute("SELECT opportunity_id FROM sync_plan WHERE source_id = 'APP-1'").fetchone()[0] == (
        "11111111-1111-4111-8111-111111111111")


def test_a_warehouse_made_before_failed_hash_gets_the_column(tmp_path, mapping):
    path = tmp_path / "older.duckdb"
    conn = _previous_release(path)
    conn.execute("ALTER TABLE opportunity_state DROP COLUMN failed_hash")
    ensure_schema(conn)
    assert "failed_hash" in _columns(conn, "opportunity_state")
    _load_day(conn, tmp_path, mapping)
    assert plan_days(conn, [DAY], mapping)["update"] == 1


def test_a_failing_step_leaves_the_warehouse_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.duckdb"
    _previous_release(path).close()
    broken = Migration("broken", "fails half way", (
        "ALTER TABLE opportunity_state ADD COLUMN half_way VARCHAR", "SELECT * FROM no_such_table"))
    monkeypatch.setattr(schema, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(MIGRATIONS) + 1)
    conn = duckdb.connect(str(path))
    with pytest.raises(duckdb.CatalogException):
        ensure_schema(conn)
    assert schema_version(conn) == 0
    assert "half_way" not in _columns(conn, "opportunity_state")
    assert "parent_batch_id" not in _columns(conn, "push_journal")


def test_a_warehouse_of_a_newer_release_is_refused(tmp_path):
    conn = duckdb.connect(str(tmp_path / "newer.duckdb"))
    ensure_schema(conn)
    conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, 'from_the_future')", [SCHEMA_VERSION + 1])
    with pytest.raises(WarehouseVersionError, match="newer lsq_pipeline"):
        ensure_schema(conn)


def test_the_records_texts_are_written_with_zstd(tmp_path, mapping):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), config=FILE_CONFIG)
    ensure_schema(conn)
    write_day(tmp_path, DAY, [good_application(application_id=f"APP-{i}") for i in range(50)])
    extract_day(conn, tmp_path, DAY)
    transform_days(conn, [DAY], mapping)
    conn.execute("CHECKPOINT")
    compression = dict(conn.execute(
        """SELECT DISTINCT column_name, compression FROM pragma_storage_info('opportunity_records')
           WHERE segment_type = 'VARCHAR' AND column_name != 'owner_email'""").fetchall())
    assert compression == dict.fromkeys(
        ["source_id", "search_by_value", "lead_fields", "fields", "note", "record_hash"], "ZSTD")
    assert conn.execute("SELECT typeof(fields), fields->>'mx_Custom_1' FROM opportunity_records "
                        "WHERE source_id = 'APP-7'").fetchone() == ("VARCHAR", "APP-7")


def test_zstd_record_texts_keeps_the_records_and_their_payloads(tmp_path, mapping, monkeypatch):
    conn = duckdb.connect(str(tmp_path / "v6.duckdb"))
    with monkeypatch.context() as before:
        before.setattr(schema, "MIGRATIONS", MIGRATIONS[:6])
        before.setattr(schema, "SCHEMA_VERSION", 6)
        ensure_schema(conn)
    _load_day(conn, tmp_path, mapping)
    plan_days(conn, [DAY], mapping)
    records = conn.execute("SELECT * FROM opportunity_records ORDER BY ALL").fetchall()
    payloads = conn.execute("SELECT * FROM sync_plan_payloads ORDER BY ALL").fetchall()
    assert len(records) == 2 and len(payloads) == 2

    assert ensure_schema(conn) == [step.name for step in MIGRATIONS[6:]]
    assert conn.execute("SELECT * FROM opportunity_records ORDER BY ALL").fetchall() == records
    assert conn.execute("SELECT * FROM sync_plan_payloads ORDER BY ALL").fetchall() == payloads


def test_read_back_grace_sends_rows_failed_by_a_lagging_read_back_to_be_read_again(tmp_path, monkeypatch):
    conn = duckdb.connect(str(tmp_path / "v7.duckdb"))
    with monkeypatch.context() as before:
        before.setattr(schema, "MIGRATIONS", MIGRATIONS[:7])
        before.setattr(schema, "SCHEMA_VERSION", 7)
        ensure_schema(conn)
    conn.execute(
        """INSERT INTO opportunity_state (source_id, opportunity_id, status, error, last_synced_at) VALUES
           ('NOT-YET', 'o-1', 'failed', 'opportunity not found in LeadSquared', TIMESTAMP '2026-11-01 10:00:00'),
           ('REFUSED', NULL, 'failed', 'MXInvalidFieldValueException: bad', TIMESTAMP '2026-11-01 10:00:00'),
           ('SYNCED', 'o-2', 'in_sync', NULL, TIMESTAMP '2026-11-01 11:00:00'),
           ('SENT', 'o-3', 'pending', NULL, TIMESTAMP '2026-11-01 12:00:00')""")

    assert ensure_schema(conn) == [step.name for step in MIGRATIONS[7:]]
    rows = conn.execute("""SELECT source_id, status, error, read_back_since::VARCHAR, confirmed_at::VARCHAR
                           FROM opportunity_state ORDER BY source_id""").fetchall()
    assert rows == [
        ("NOT-YET", "pending", None, "2026-11-01 10:00:00", None),
        ("REFUSED", "failed", "MXInvalidFieldValueException: bad", None, None),
        ("SENT", "pending", None, "2026-11-01 12:00:00", None),
        ("SYNCED", "in_sync", None, None, "2026-11-01 11:00:00"),
    ]
    assert {"pending_read_back", "missing"} <= set(_columns(conn, "sync_runs"))
    assert "earlier_sent_fields" in _columns(conn, "opportunity_state")


class _CountingFactory:
    """`WarehouseResource.get_connection`'s shape: a context manager that opens and closes the file."""

    def __init__(self, path: Path) -> None:
        self.path, self.opened, self.closed = str(path), 0, 0

    @contextlib.contextmanager
    def __call__(self):
        conn = duckdb.connect(self.path)
        self.opened += 1
        try:
            yield conn
        finally:
            conn.close()
            self.closed += 1


def test_a_burst_of_uses_shares_one_connection_and_leaves_the_file_free(tmp_path):
    factory = _CountingFactory(tmp_path / "w.duckdb")
    reused = ReusedConnection(factory, linger=0.2, max_hold=5.0)
    for number in range(5):
        with reused() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
            conn.execute("INSERT INTO t VALUES ($1)", [number])
    assert (factory.opened, factory.closed) == (1, 0)
    time.sleep(0.5)  # idle longer than `linger`: closed, the file is free for another process
    assert factory.closed == 1
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as other:
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 5


def test_a_connection_is_not_kept_past_max_hold_nor_after_an_error_nor_after_close(tmp_path):
    factory = _CountingFactory(tmp_path / "w.duckdb")
    reused = ReusedConnection(factory, linger=10.0, max_hold=0.0)
    with reused() as conn:
        conn.execute("SELECT 1")
    assert factory.closed == 1  # held max_hold: closed when the use ends
    reused = ReusedConnection(factory, linger=10.0, max_hold=10.0)
    with pytest.raises(duckdb.Error), reused() as conn:
        conn.execute("SELECT * FROM missing")
    assert factory.closed == 2
    with reused() as conn:
        conn.execute("SELECT 1")
    reused.close()
    assert factory.opened == factory.closed == 3


def test_a_use_while_the_kept_connection_is_lent_gets_its_own(tmp_path):
    factory = _CountingFactory(tmp_path / "w.duckdb")
    reused = ReusedConnection(factory, linger=10.0, max_hold=10.0)
    with reused() as outer, reused() as inner:  # nested (or another thread): two connections
        assert inner is not outer
        outer.execute("CREATE TABLE t AS SELECT 1 AS n")
        assert inner.execute("SELECT n FROM t").fetchone() == (1,)
    assert factory.opened == 2 and factory.closed == 1
    reused.close()
    assert factory.closed == 2
