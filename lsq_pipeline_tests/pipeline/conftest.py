"""Fixtures for whole-flow tests: a pipeline over generated exports, the root's sandbox and the
test's warehouse."""

from __future__ import annotations

from datetime import date

import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.harness import Pipeline

FIRST_DAY = date(2026, 11, 1)


@pytest.fixture
def make_pipeline(tmp_path, sandbox, warehouse_target):
    """`make_pipeline(rows=..., days=..., dirty_rate=...)` -> a Pipeline over generated exports, on
    the test's warehouse (a DuckDB file unless the test asks for PostgreSQL too)."""

    def make(rows: int = 40, days: int = 1, dirty_rate: float = 0.0, seed: int = 11) -> Pipeline:
        source = tmp_path / "source"
        generate(source, rows=rows, days=days, seed=seed, start_day=FIRST_DAY, dirty_rate=dirty_rate)
        return Pipeline(source_dir=source, warehouse=warehouse_target, sandbox_url=sandbox.url)

    return make
