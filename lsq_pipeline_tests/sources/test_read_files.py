"""Export folders with Parquet files beside CSV: read with the same checks, typed values as text."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.steps.read_files import SourceFileError
from lsq_pipeline.warehouse.schema import EVENT_COLUMNS, ensure_schema

from .test_read_tables import APPLICATIONS

DAY = date(2026, 1, 1)


@pytest.fixture
def wh(tmp_path):
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_schema(conn)
    yield conn
    conn.close()


def _day(tmp_path, select: str):
    folder = tmp_path / "source" / DAY.isoformat()
    folder.mkdir(parents=True)
    duckdb.execute(f"COPY ({select}) TO '{folder / 'applications.parquet'}' (FORMAT parquet)")
    (folder / "events.csv").write_text(",".join(EVENT_COLUMNS) + "\n", encoding="utf-8")
    return tmp_path / "source"


def test_a_parquet_day_is_read_as_text(wh, tmp_path):
    counts = extract_day(wh, _day(tmp_path, APPLICATIONS), DAY)
    assert (counts["applications"], counts["events"]) == (5, 0)
    assert wh.execute("SELECT source_file, row_number, amount, updated_at FROM raw_applications ORDER BY row_number "
                      "LIMIT 1").fetchall() == [("2026-01-01/applications.parquet", 1, "150000", "2026-01-01 10:00:00")]


def test_a_parquet_file_lacking_a_column_is_named(wh, tmp_path):
    source = _day(tmp_path, f"SELECT * EXCLUDE (email) FROM ({APPLICATIONS})")
    with pytest.raises(SourceFileError, match=r"applications.parquet: missing required columns: email"):
        extract_day(wh, source, DAY)


def test_csv_and_parquet_of_one_day_are_refused(wh, tmp_path):
    source = _day(tmp_path, APPLICATIONS)
    (source / DAY.isoformat() / "applications.csv").write_text("application_id\n", encoding="utf-8")
    with pytest.raises(SourceFileError, match="both applications.csv and applications.parquet: keep one of them"):
        extract_day(wh, source, DAY)
