"""A list parameter costs no import-path search per element: DuckDB 1.5 looks for pandas twice for
each element, and a warehouse connection marks a pandas that is not installed as absent once."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

COUNT_PANDAS_LOOKUPS = """
import sys
from pathlib import Path

import duckdb

from lsq_pipeline.warehouse.connection import Warehouse

lookups = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            lookups.append(name)
        return None

sys.meta_path.insert(0, Spy())
ids = [f"APP-{n}" for n in range(2000)]
if sys.argv[1] == "warehouse":
    with Warehouse(str(Path(sys.argv[2]) / "w.duckdb"), "public").connect() as conn:
        print(conn.execute("SELECT len($1)", [ids]).fetchone()[0], len(lookups))
else:
    print(duckdb.connect().execute("SELECT len($1)", [ids]).fetchone()[0], len(lookups))
"""


def _lookups(kind: str, tmp_path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", COUNT_PANDAS_LOOKUPS, kind, str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    elements, lookups = out.stdout.split()
    return int(elements), int(lookups)


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None, reason="pandas is installed: nothing to mark")
def test_a_list_parameter_searches_for_pandas_once_not_per_element(tmp_path):
    assert _lookups("warehouse", tmp_path) == (2000, 1)  # the one look that finds it absent
    elements, lookups = _lookups("plain", tmp_path)
    assert elements == 2000 and lookups >= 2000, lookups  # what a plain DuckDB connection does
