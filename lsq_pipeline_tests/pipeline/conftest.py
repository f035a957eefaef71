"""Fixtures for whole-flow tests: a pipeline over generated exports, the root's sandbox and the
test's warehouse. Every test here that takes a warehouse runs on both, a DuckDB file and a
PostgreSQL database, unless it is marked `duckdb_only` (and says why)."""

from __future__ import annotations

from datetime import date

import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.harness import Pipeline

FIRST_DAY = date(2026, 11, 1)

duckdb_only = pytest.mark.parametrize("warehouse_backend", ["duckdb"], indirect=True)
"""For a test about the DuckDB file itself, or one whose minutes go to sleeping out a simulated
delay, the same on either warehouse: its docstring says why PostgreSQL is left out."""


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_backend(request) -> str:
    """Where the test's warehouse is: each test runs once on a DuckDB file and once on PostgreSQL
    (`warehouse_target` makes either), unless it parametrizes this fixture itself."""
    return request.param


@pytest.fixture
def make_pipeline(tmp_path, sandbox, warehouse_target):
    """`make_pipeline(rows=..., days=..., dirty_rate=...)` -> a Pipeline over generated exports, on
    the test's warehouse."""

    def make(rows: int = 40, days: int = 1, dirty_rate: float = 0.0, seed: int = 11) -> Pipeline:
        source = tmp_path / "source"
        generate(source, rows=rows, days=days, seed=seed, start_day=FIRST_DAY, dirty_rate=dirty_rate)
        return Pipeline(source_dir=source, warehouse=warehouse_target, sandbox_url=sandbox.url)

    return make
