"""Rewriting a warehouse file of the previous release (`lsq-pipeline warehouse upgrade`).

The previous release ran DuckDB 2.0.1; the `postgres` extra pins DuckDB 1.5.5 (the postgres
extension's PyPI wheel exists for no other), which cannot read a file DuckDB 2.x wrote. So the
file is exported by the DuckDB that wrote it and imported by the installed one: DuckDB 2.0.1 is installed with pip into a
throwaway folder, a subprocess that imports it from there runs `EXPORT DATABASE` (Parquet) on the
old file read-only, and this process moves the old file aside (kept, never deleted), makes the new
file with `Warehouse.connect` (this release's file settings), runs `IMPORT DATABASE`, checks that
every table holds the rows the export wrote, then `ensure_schema`.

DuckDB 1.5.5 imports 2.0.1's export as it is, the view `sync_plan_payloads` and the columns'
`USING COMPRESSION ZSTD` included (tested by lsq_pipeline_tests/cli/test_warehouse_upgrade.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lsq_pipeline.warehouse.connection import NewerDuckDBFile, Warehouse, WarehouseError, first_line
from lsq_pipeline.warehouse.sql import identifier, literal
from lsq_pipeline.warehouse.schema import ensure_schema

OLD_DUCKDB = "duckdb==2.0.1"
"""The DuckDB of the previous release, which wrote the files to upgrade."""
BACKUP_SUFFIX = ".duckdb-2.0.bak"
"""The old file moves to `warehouse.duckdb.duckdb-2.0.bak` (its WAL, if any, beside it as `...bak.wal`)."""

EXPORT_SCRIPT = """
import json, sys
import duckdb
source, folder = sys.argv[1], sys.argv[2]
conn = duckdb.connect(source, read_only=True)
tables = [row[0] for row in conn.execute(
    "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
    "AND schema_name = 'main' ORDER BY table_name").fetchall()]
rows = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}
escaped = folder.replace("'", "''")
conn.execute(f"EXPORT DATABASE '{escaped}' (FORMAT parquet)")
conn.close()
print(json.dumps({"duckdb": duckdb.__version__, "rows": rows}))
"""
"""Run by DuckDB 2.0.1: the file's row counts per table (its `main` schema), then the export."""


class UpgradeFailed(WarehouseError):
    """The upgrade did not happen; the old file is where it was. The message names why."""


@dataclass(frozen=True)
class UpgradeResult:
    upgraded: bool
    """False: the file already opens with this DuckDB, nothing was done."""
    backup: Path | None = None
    rows: dict[str, int] | None = None
    """Rows per table, as the export wrote them and the new file holds them."""
    migrated: tuple[str, ...] = ()
    """Schema steps `ensure_schema` applied after the import (a file of an older schema)."""


def needs_upgrade(warehouse: Warehouse) -> bool:
    """Whether the file was written by a newer DuckDB (opened read-only to find out)."""
    try:
        with warehouse.connect(read_only=True):
            return False
    except NewerDuckDBFile:
        return True


def backup_path(file: Path) -> Path:
    return file.with_name(file.name + BACKUP_SUFFIX)


def upgrade_warehouse(warehouse: Warehouse, log: Callable[[str], None] = print) -> UpgradeResult:
    """Rewrite the DuckDB file of `warehouse` (written by DuckDB 2.x) as a DuckDB 1.5.5 file holding
    the same tables and rows; the old file is kept as `<file>.duckdb-2.0.bak`. Nothing is done to a
    file this DuckDB opens already. Raises `UpgradeFailed` (the old file back in its place)."""
    file = Path(warehouse.target)
    if warehouse.on_postgres:
        raise UpgradeFailed(f"{warehouse.describe()} is PostgreSQL, not a DuckDB file: nothing to upgrade")
    if not file.is_file():
        raise UpgradeFailed(f"there is no DuckDB warehouse at {file}: nothing to upgrade")
    if not needs_upgrade(warehouse):
        return UpgradeResult(upgraded=False)
    backup, wal = backup_path(file), file.with_name(file.name + ".wal")
    if backup.exists():
        raise UpgradeFailed(f"{backup} exists already (an earlier upgrade's backup?): move it away, then run "
                            f"the upgrade again; nothing was changed")
    with tempfile.TemporaryDirectory(prefix=".lsq-upgrade-", dir=file.parent) as work:
        export = Path(work) / "export"
        rows = _export_with_old_duckdb(file, export, Path(work) / "duckdb-2.0", log)
        log(f"exported {len(rows)} tables, {sum(rows.values())} rows, with DuckDB 2.0.1 into {export}")
        file.rename(backup)
        if wal.exists():
            wal.rename(backup.with_name(backup.name + ".wal"))  # where DuckDB 2.0.1 looks for the backup's WAL
        try:
            migrated = _import(warehouse, export, rows)
        except BaseException as error:
            file.unlink(missing_ok=True)
            file.with_name(file.name + ".wal").unlink(missing_ok=True)
            backup.rename(file)
            if backup.with_name(backup.name + ".wal").exists():
                backup.with_name(backup.name + ".wal").rename(wal)
            if isinstance(error, UpgradeFailed):
                raise
            if isinstance(error, duckdb.Error):
                raise UpgradeFailed(f"DuckDB {duckdb.__version__} could not import the export of {file}: "
                                    f"{first_line(error)}; the old file is back in its place") from error
            raise
    return UpgradeResult(upgraded=True, backup=backup, rows=rows, migrated=tuple(migrated))


def _export_with_old_duckdb(file: Path, export: Path, packages: Path, log: Callable[[str], None]) -> dict[str, int]:
    """`EXPORT DATABASE` of the file by DuckDB 2.0.1, pip-installed into `packages` (removed with
    the work folder). Returns the row counts per table the old DuckDB read."""
    log(f"installing {OLD_DUCKDB} into a throwaway folder (pip --target), to read the old file")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--target", str(packages), OLD_DUCKDB], capture_output=True, text=True, timeout=900)
    if pip.returncode != 0 or not (packages / "duckdb").is_dir():
        raise UpgradeFailed(f"pip could not install {OLD_DUCKDB} (needed once, to read {file}; is PyPI reachable?): "
                            f"{_last_line(pip.stderr or pip.stdout)}; nothing was changed")
    env = {**os.environ, "PYTHONPATH": str(packages), "PYTHONNOUSERSITE": "1"}
    run = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(file), str(export)],
                         capture_output=True, text=True, env=env, timeout=None)
    if run.returncode != 0:
        raise UpgradeFailed(f"DuckDB 2.0.1 could not export {file}: {_last_line(run.stderr)}; nothing was changed")
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    if not answer["duckdb"].startswith("2."):
        raise UpgradeFailed(f"the export ran DuckDB {answer['duckdb']}, not {OLD_DUCKDB}; nothing was changed")
    return answer["rows"]


def _import(warehouse: Warehouse, export: Path, rows: dict[str, int]) -> list[str]:
    """A new file, made as every warehouse file is, with the export imported, its row counts
    checked against `rows`, and brought to this release's schema."""
    with warehouse.connect() as conn:
        conn.execute(f"IMPORT DATABASE {literal(str(export))}")
        held = {table: conn.execute(f"SELECT count(*) FROM {identifier(table)}").fetchone()[0] for table in rows}
        if held != rows:
            wrong = ", ".join(f"{table} {held[table]} of {count}" for table, count in rows.items()
                              if held[table] != count)
            raise UpgradeFailed(f"the import of {warehouse.target} does not hold the rows the export wrote ({wrong}); "
                                f"the old file is back in its place")
        return ensure_schema(conn)




def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
