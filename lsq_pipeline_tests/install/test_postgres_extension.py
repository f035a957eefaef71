"""Without the `postgres` extra's wheel, the PostgreSQL warehouse loads DuckDB's extension through
DuckDB's own INSTALL; with neither, it fails in one line naming the extra.

Run in a venv of DuckDB 1.5.5 alone (no extension wheel), the repository's code on PYTHONPATH; the
extension repository is a local folder laid out as DuckDB expects, holding the wheel's build."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, duckdb
from lsq_pipeline.warehouse.connection import WarehouseError, load_postgres_extension
config = {"extension_directory": sys.argv[1]}
if len(sys.argv) > 2:
    config["custom_extension_repository"] = sys.argv[2]
database = duckdb.connect(config=config)
try:
    load_postgres_extension(database)
except WarehouseError as error:
    print("refused:", error)
    sys.exit(0)
print(database.execute("SELECT installed, loaded, installed_from FROM duckdb_extensions() "
                       "WHERE extension_name = 'postgres_scanner'").fetchall())
"""


@pytest.fixture(scope="module")
def venv_without_the_wheel(tmp_path_factory) -> Path:
    """A venv of this DuckDB release and nothing else (pip's cache or the package registry)."""
    venv = tmp_path_factory.mktemp("no-extension-wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"duckdb=={duckdb.__version__}"],
                   check=True, timeout=600, capture_output=True)
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import duckdb_extension_postgres"],
                          capture_output=True).returncode != 0
    return venv


def _load(venv: Path, *args: str) -> str:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT, *args], env={"HOME": os.environ.get("HOME", "/root"), "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_duckdbs_own_install_loads_the_extension_from_its_repository(venv_without_the_wheel, tmp_path):
    spec = importlib.util.find_spec("duckdb_extension_postgres")
    assert spec is not None and spec.origin, "the dev install has the wheel: its build stands in for DuckDB's repository"
    build = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / "postgres.duckdb_extension"
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    repository = tmp_path / "repository"
    layout = repository / f"v{duckdb.__version__}" / platform
    layout.mkdir(parents=True)
    (layout / "postgres_scanner.duckdb_extension").write_bytes(build.read_bytes())
    extensions = tmp_path / "extensions"
    assert _load(venv_without_the_wheel, str(extensions), str(repository)) == f"[(True, True, '{repository}')]"
    assert list(extensions.rglob("postgres_scanner.duckdb_extension"))  # installed where DuckDB was told


def test_with_neither_the_wheel_nor_a_repository_it_fails_in_one_line_naming_the_extra(venv_without_the_wheel, tmp_path):
    answer = _load(venv_without_the_wheel, str(tmp_path / "empty"))
    assert answer.startswith("refused: a PostgreSQL warehouse needs DuckDB's postgres extension")
    assert answer.endswith("pip install 'lsq_pipeline[postgres]'") and "\n" not in answer
