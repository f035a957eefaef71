"""Opening the warehouse. A DuckDB file is made where it is named, its folder too, and threads of one
process open and close it at once without tripping over each other. The PostgreSQL
password never travels in a URL: a URL that carries one is refused, naming libpq's PGPASSWORD and
~/.pgpass, without showing it; libpq's own ways then work, for the tables (DuckDB's postgres
extension) and for the writer lock (psycopg2) alike."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from lsq_pipeline.settings import SettingsError
from lsq_pipeline_tests.accounts import default_account
from lsq_pipeline_tests.postgres import PASSWORD, PASSWORD_ROLE

OPEN = """
import sys
from lsq_pipeline.warehouse.connection import Warehouse, WarehouseError
from lsq_pipeline.warehouse.schema import SCHEMA_VERSION, ensure_schema, schema_version
warehouse = Warehouse(sys.argv[1], schema="secret_test")
try:
    with warehouse.writer_lock(), warehouse.connect() as conn:
        ensure_schema(conn)
        print("schema version", schema_version(conn) == SCHEMA_VERSION)
except WarehouseError as error:
    print("refused:", error)
"""


def _open(url: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run([sys.executable, "-c", OPEN, url], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60, check=True).stdout


def test_a_new_file_is_made_with_its_folder_and_a_reader_makes_neither(tmp_path):
    from lsq_pipeline.warehouse.connection import Warehouse

    target = tmp_path / "data" / "globex" / "warehouse.duckdb"  # an account with no source folder there
    with pytest.raises(duckdb.IOException):
        with Warehouse(str(target)).connect(print, read_only=True):
            pass
    assert not target.parent.exists()
    with Warehouse(str(target)).connect(print) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS one")
    with duckdb.connect(str(target), read_only=True) as conn:
        assert conn.execute("SELECT one FROM t").fetchone() == (1,)


def test_threads_open_and_close_one_file_at_once(tmp_path):
    """DuckDB shares one open database among a process's connections to a file; two threads that
    attach it at the same moment (one opening while the last connection closes) would fail with
    "Unique file handle conflict". A run's push lanes and two runs in one process do just that."""
    from lsq_pipeline.warehouse.connection import Warehouse

    warehouse = Warehouse(str(tmp_path / "warehouse.duckdb"))

    def open_and_close(_: int) -> list[str]:
        errors = []
        for _ in range(300):
            try:
                with warehouse.connect(print) as conn:
                    conn.execute("SELECT 1")
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                errors.append(str(error))
        return errors

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert [error for errors in pool.map(open_and_close, range(3)) for error in errors] == []


def test_a_url_with_a_password_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("LSQ_WAREHOUSE", f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@db.internal:5432/crm")
    with pytest.raises(SettingsError) as raised:
        default_account()
    message = str(raised.value)
    assert "LSQ_WAREHOUSE" in message and "PGPASSWORD" in message and "~/.pgpass" in message
    assert PASSWORD not in message


def test_the_password_comes_from_pgpassword_or_a_pgpass_file(postgres_server, tmp_path):
    url = f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{postgres_server.port}/{postgres_server.new_database()}"
    refused = _open(url)
    assert refused.startswith("refused: cannot connect to the warehouse") and PASSWORD not in refused
    assert _open(url, PGPASSWORD=PASSWORD).strip() == "schema version True"
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:*:{PASSWORD_ROLE}:{PASSWORD}\n")
    pgpass.chmod(0o600)
    assert _open(url, PGPASSFILE=str(pgpass)).strip() == "schema version True"
