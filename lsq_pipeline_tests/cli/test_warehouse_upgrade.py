"""`lsq-pipeline warehouse upgrade`: a warehouse file of the previous release, written by DuckDB
2.0.1, which this release's DuckDB 1.5.5 cannot open. Opening it says so in one line naming the
fix; the upgrade rewrites it with every row, keeps the old file, and the next run sends nothing.

The old file is real: DuckDB 2.0.1 (pip-installed once per session) builds this release's schema
with `ensure_schema`, as the previous release did, and loads the rows a demo wrote."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from lsq_pipeline.warehouse.connection import NewerDuckDBFile, Warehouse, WarehouseError, newer_storage_version
from lsq_pipeline.warehouse.upgrade import BACKUP_SUFFIX, OLD_DUCKDB
from lsq_pipeline_tests.cli.test_first_run import REPO, lsq, project

pytestmark = pytest.mark.slow

BUILD_OLD_FILE = """
import json, sys
from pathlib import Path
import duckdb
from lsq_pipeline.warehouse.schema import ensure_schema
target, export = sys.argv[1], Path(sys.argv[2])
conn = duckdb.connect(target)
ensure_schema(conn)
for parquet in sorted(export.glob("*.parquet")):
    # A run gives the raw tables the mapping's columns (and source_problem): so does the rebuilt file.
    have = {name for name, *_ in conn.execute(f'DESCRIBE "{parquet.stem}"').fetchall()}
    for name, type_name, *_ in conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{parquet}')").fetchall():
        if name not in have:
            conn.execute(f'ALTER TABLE "{parquet.stem}" ADD COLUMN "{name}" {type_name}')
    conn.execute(f'DELETE FROM "{parquet.stem}"')
    conn.execute(f"INSERT INTO \\"{parquet.stem}\\" BY NAME SELECT * FROM read_parquet('{parquet}')")
conn.close()
print(json.dumps({"duckdb": duckdb.__version__}))
"""
"""Run by DuckDB 2.0.1: a new file with the release's schema (its columns' zstd compression
included, and the columns a run adds to the raw tables), filled with the tables of a 1.5.5 export."""


@pytest.fixture(scope="session")
def duckdb_2(tmp_path_factory) -> Path:
    """A folder holding DuckDB 2.0.1 (`pip install --target`), for a PYTHONPATH."""
    folder = tmp_path_factory.mktemp("duckdb-2.0.1")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "--no-deps", "--target", str(folder), OLD_DUCKDB], capture_output=True, text=True,
                         timeout=600)
    if pip.returncode != 0:
        reason = f"pip could not install {OLD_DUCKDB} (is PyPI reachable?): {pip.stderr.strip()[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


def run_duckdb_2(duckdb_2: Path, script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{duckdb_2}{os.pathsep}{REPO}", "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["duckdb"] == "2.0.1", answer
    return answer


def counts(file: Path) -> dict[str, int]:
    with duckdb.connect(str(file), read_only=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name").fetchall()]
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


def digest(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def assert_names_the_fix(message: str, file: Path) -> None:
    assert "\n" not in message.strip(), message
    assert str(file) in message and "newer DuckDB (2.x, the previous lsq_pipeline release)" in message, message
    assert "`lsq-pipeline warehouse upgrade`" in message, message
    assert "Warehouses made by the previous release (DuckDB 2.0)" in message, message


@pytest.mark.timeout(900)
def test_a_warehouse_of_the_previous_release_is_upgraded_and_the_next_run_sends_nothing(tmp_path, duckdb_2):
    folder = project(tmp_path, rows=30, days=3)
    first = lsq(folder, "demo")
    assert first.returncode == 0, first.stdout + first.stderr
    file = folder / "data" / "warehouse.duckdb"
    written = counts(file)
    assert written["push_journal"] and written["opportunity_state"] and written["sync_runs"], written
    export = tmp_path / "export-1.5"
    with duckdb.connect(str(file), read_only=True) as conn:
        conn.execute(f"EXPORT DATABASE '{export}' (FORMAT parquet)")
    file.unlink()
    run_duckdb_2(duckdb_2, BUILD_OLD_FILE, str(file), str(export))  # the previous release's file
    old_bytes = digest(file)

    with pytest.raises(WarehouseError) as refused:
        with Warehouse(str(file)).connect(read_only=True):
            pass
    assert isinstance(refused.value, NewerDuckDBFile)
    assert_names_the_fix(str(refused.value), file)
    state = lsq(folder, "state")
    assert state.returncode == 2 and "Traceback" not in state.stderr, state.stderr
    assert_names_the_fix(state.stderr.removeprefix("lsq-pipeline state: "), file)

    upgrade = lsq(folder, "warehouse", "upgrade")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    backup = file.with_name(file.name + BACKUP_SUFFIX)
    assert f"The old file is kept (never deleted by lsq-pipeline) at {backup}" in upgrade.stdout
    assert backup.is_file() and digest(backup) == old_bytes  # moved aside untouched
    for table, rows in written.items():
        assert upgrade.stdout.split(f"  {table} ")[1].split()[0] == str(rows), (table, upgrade.stdout)
    assert counts(file) == written
    assert not list(file.parent.glob(".lsq-upgrade-*")), "the work folder (export, DuckDB 2.0.1) is removed"
    with duckdb.connect(str(file), read_only=True) as conn:
        compression = dict(conn.execute(
            "SELECT DISTINCT column_name, compression FROM pragma_storage_info('opportunity_records') "
            "WHERE segment_type = 'VARCHAR' AND column_name = 'lead_fields'").fetchall())
        payloads = conn.execute("SELECT count(*) FROM sync_plan_payloads").fetchone()[0]
    assert compression == {"lead_fields": "ZSTD"}  # the columns' compression survived the export
    assert payloads == written["sync_plan"]  # the view came across too

    again = lsq(folder, "warehouse", "upgrade")
    assert again.returncode == 0 and "already opens with this release's DuckDB: nothing to upgrade" in again.stdout
    assert digest(backup) == old_bytes

    demo = lsq(folder, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Nothing to send: LeadSquared already matches the source (0 write calls)." in demo.stdout
    assert counts(file)["sync_runs"] == written["sync_runs"] + 3  # the history goes on where the old file's ended


def test_an_existing_backup_is_never_overwritten(tmp_path, duckdb_2):
    folder = project(tmp_path, rows=5, days=1)
    file = folder / "data" / "warehouse.duckdb"
    run_duckdb_2(duckdb_2, """
import json, sys
import duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("CREATE TABLE kept AS SELECT 1 AS one")
conn.close()
print(json.dumps({"duckdb": duckdb.__version__}))
""", str(file))
    backup = file.with_name(file.name + BACKUP_SUFFIX)
    backup.write_text("an earlier backup")
    before = digest(file)
    upgrade = lsq(folder, "warehouse", "upgrade")
    assert upgrade.returncode == 2 and "Traceback" not in upgrade.stderr
    assert f"{backup} exists already" in upgrade.stderr and "nothing was changed" in upgrade.stderr
    assert len(upgrade.stderr.strip().splitlines()) == 1, upgrade.stderr
    assert digest(file) == before and backup.read_text() == "an earlier backup"


def test_only_a_newer_storage_version_is_taken_for_the_previous_release(tmp_path):
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_bytes(b"not a database" * 1000)
    with pytest.raises(duckdb.IOException) as other:
        duckdb.connect(str(not_duckdb))
    assert not newer_storage_version(other.value)
    older = duckdb.IOException("Trying to read a database file with version number 39, but we can only read "
                               "versions between 64 and 68.")
    assert not newer_storage_version(older)
