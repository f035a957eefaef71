"""A DuckDB warehouse file held by another process (a notebook's read-only connection): a sync
waits for it, says every 30 s who holds it, goes on once it is free, and past
`warehouse_lock_timeout_seconds` fails with one line naming the holder and the fix, having
written nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from lsq_pipeline.warehouse.connection import LOCK_REPORT_SECONDS, Warehouse, WarehouseError
from lsq_pipeline_tests.cli.test_first_run import clean_env, lsq, project

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float) -> subprocess.Popen:
    """A reader of its own process holding the file for `seconds`, as a notebook does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def _made(path: Path) -> Path:
    with Warehouse(str(path)).connect() as conn:
        conn.execute("CREATE TABLE opportunity_state (source_id VARCHAR)")
    return path


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_connection_waits_for_the_lock_naming_the_holder_every_30_s(tmp_path):
    path = _made(tmp_path / "warehouse.duckdb")
    holder = hold(path, LOCK_REPORT_SECONDS + 5)
    said: list[str] = []
    started = time.monotonic()
    with Warehouse(str(path), lock_timeout_seconds=90).connect(said.append) as conn:
        waited = time.monotonic() - started
        assert conn.execute("SELECT count(*) FROM opportunity_state").fetchone() == (0,)
    holder.wait(timeout=10)
    assert LOCK_REPORT_SECONDS < waited < 60
    assert len(said) == 1 and f"(PID {holder.pid})" in said[0] and "holds its lock" in said[0], said


def test_past_the_timeout_the_error_is_one_line_naming_the_holder_and_the_fix(tmp_path):
    path = _made(tmp_path / "warehouse.duckdb")
    holder = hold(path, 60)
    try:
        with pytest.raises(WarehouseError) as raised:
            with Warehouse(str(path), lock_timeout_seconds=1).connect():
                pass
    finally:
        holder.kill()
    message = str(raised.value)
    assert "\n" not in message
    assert f"(PID {holder.pid})" in message and "warehouse_lock_timeout_seconds" in message
    assert "lsq-pipeline state" in message


@pytest.mark.timeout(300)
def test_a_sync_past_the_timeout_fails_naming_the_holder_and_loses_nothing(tmp_path):
    folder = project(tmp_path, rows=10, days=1)
    assert lsq(folder, "demo").returncode == 0
    warehouse = folder / "data" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        before = conn.execute("SELECT status, count(*) FROM opportunity_state GROUP BY ALL ORDER BY 1").fetchall()
    holder = hold(warehouse, 120)
    try:
        synced = lsq(folder, "sync", "--partition", "2026-11-01",
                     env=clean_env(LSQ_WAREHOUSE_LOCK_TIMEOUT_SECONDS="2"))
    finally:
        holder.kill()
        holder.wait()
    assert synced.returncode != 0
    output = synced.stdout + synced.stderr
    last = synced.stderr.strip().splitlines()[-1]
    assert last.startswith("lsq-pipeline sync: the warehouse") and f"(PID {holder.pid})" in last, output
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("SELECT status, count(*) FROM opportunity_state GROUP BY ALL ORDER BY 1").fetchall() == before
