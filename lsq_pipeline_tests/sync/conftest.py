"""Fixtures for the sync tests: a warehouse (a DuckDB file under tmp_path, and a PostgreSQL database),
the demo mapping, and a day of rows written, extracted and transformed."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from lsq_pipeline.mapping import Mapping, load_mapping
from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.connection import Warehouse
from lsq_pipeline.warehouse.schema import APPLICATION_COLUMNS, EVENT_COLUMNS, ensure_schema

REPO = Path(__file__).resolve().parents[2]
DEMO_SOURCE = REPO / "data" / "source"
DEMO_MAPPING = REPO / "data" / "mapping.yaml"
DAY = date(2026, 11, 1)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path: Path) -> Warehouse:
    """The warehouse each sync test runs on: a DuckDB file, and a new PostgreSQL database."""
    if request.param == "duckdb":
        return Warehouse(str(tmp_path / "warehouse.duckdb"))
    return Warehouse(request.getfixturevalue("postgres_url"), schema="acme")


@pytest.fixture
def conn(warehouse: Warehouse):
    with warehouse.connect() as connection:
        ensure_schema(connection)
        yield connection


@pytest.fixture(scope="session")
def mapping() -> Mapping:
    return load_mapping(DEMO_MAPPING)


@pytest.fixture
def load_day(conn, tmp_path: Path, mapping):
    """Write one day's applications (and events) under tmp_path, extract it and transform it, as a
    run does before it plans; a snapshot is loaded the same way, filed under the run's day."""
    def load(day: date, applications: list[dict], events: list[dict] | None = None) -> None:
        write_day(tmp_path, day, applications, events)
        extract_day(conn, tmp_path, day)
        transform_days(conn, [day], mapping)
    return load


def good_application(**changes: str) -> dict[str, str]:
    """A valid application row of DAY; keyword arguments replace columns."""
    row = {
        "application_id": "APP-1", "applicant_name": "Asha Nair", "email": "asha@mail.example",
        "phone": "+91 98765 43210", "product": "Home Loan", "amount": "2500000", "stage": "New",
        "owner_email": "priya.sharma@lendco.example", "created_at": "2026-11-01T10:00:00+05:30",
        "updated_at": "2026-11-01T10:05:00+05:30",
    }
    row.update(changes)
    return row


def good_event(**changes: str) -> dict[str, str]:
    row = {
        "event_id": "EVT-1", "application_id": "APP-1", "event_type": "credit_check",
        "occurred_at": "2026-11-01T11:00:00Z", "owner_email": "priya.sharma@lendco.example",
        "note": "Score pulled", "detail": "742",
    }
    row.update(changes)
    return row


def write_day(source_dir: Path, day: date, applications: list[dict], events: list[dict] | None = None) -> Path:
    """Write one day folder with the given rows (csv module: quoting as a real export)."""
    day_dir = source_dir / day.isoformat()
    day_dir.mkdir(parents=True, exist_ok=True)
    for name, columns, rows in (("applications.csv", APPLICATION_COLUMNS, applications),
                                ("events.csv", EVENT_COLUMNS, events or [])):
        with (day_dir / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return day_dir
