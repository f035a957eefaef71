"""Fixtures for the bad-input corpus: a DuckDB warehouse under tmp_path and the demo mapping."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from lsq_pipeline.sync.mapping import Mapping, load_mapping
from lsq_pipeline.sync.warehouse import ensure_schema

DEMO_MAPPING = Path(__file__).resolve().parents[2] / "data" / "mapping.yaml"


@pytest.fixture
def conn(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def mapping() -> Mapping:
    return load_mapping(DEMO_MAPPING)
