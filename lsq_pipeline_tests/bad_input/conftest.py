"""Fixtures for the bad-input corpus: the sync tests' DuckDB warehouse under tmp_path and demo mapping."""

from lsq_pipeline_tests.sync.conftest import DEMO_MAPPING, conn, mapping  # noqa: F401 (fixtures)
