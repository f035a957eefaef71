"""Fixtures for the bad-input corpus: the sync tests' warehouse (a DuckDB file, and PostgreSQL) and demo mapping."""

from lsq_pipeline_tests.sync.conftest import DEMO_MAPPING, conn, mapping, warehouse  # noqa: F401 (fixtures)
