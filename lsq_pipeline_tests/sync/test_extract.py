"""Extract: the shipped demo days load; every kind of bad file fails its day with a clear message."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest

from lsq_pipeline.warehouse.connection import NUL_STORED_AS
from lsq_pipeline.steps.extract import SourceFileError, extract_day, extract_days

from .conftest import DAY, DEMO_SOURCE, good_application, good_event, write_day

HEADER = "application_id,applicant_name,email,phone,product,amount,stage,owner_email,created_at,updated_at"
EVENTS_HEADER = "event_id,application_id,event_type,occurred_at,owner_email,note,detail\n"


def _rows(conn, table: str = "raw_applications") -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_every_demo_day_loads_as_written(conn):
    days = sorted(date.fromisoformat(p.name) for p in DEMO_SOURCE.iterdir())
    assert len(days) == 14
    for day in days:
        counts = extract_day(conn, DEMO_SOURCE, day)
        with (DEMO_SOURCE / day.isoformat() / "events.csv").open(encoding="utf-8", newline="") as handle:
            expected_events = list(csv.DictReader(handle))
        assert counts["events"] == len(expected_events) and counts["warnings"] == []
        loaded = conn.execute(
            "SELECT event_id, note FROM raw_events WHERE day = ? ORDER BY row_number", [day]).fetchall()
        assert loaded == [(e["event_id"], e["note"] or None) for e in expected_events]
    assert _rows(conn) == 400


def test_rerunning_a_day_replaces_it(conn, tmp_path: Path):
    write_day(tmp_path, DAY, [good_application(), good_application(application_id="APP-2")])
    extract_day(conn, tmp_path, DAY)
    write_day(tmp_path, DAY, [good_application()])
    assert extract_day(conn, tmp_path, DAY)["applications"] == 1
    assert _rows(conn) == 1


def _write_raw(tmp_path: Path, applications: bytes, events: bytes = EVENTS_HEADER.encode()) -> None:
    day_dir = tmp_path / DAY.isoformat()
    day_dir.mkdir(parents=True, exist_ok=True)
    (day_dir / "applications.csv").write_bytes(applications)
    (day_dir / "events.csv").write_bytes(events)


ROW = "APP-1,Asha Nair,asha@mail.example,9876543210,Home Loan,100,New,priya.sharma@lendco.example,2026-11-01T10:00:00Z,2026-11-01T10:00:00Z"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "file is empty"),
        ((HEADER.replace(",stage", "") + "\n").encode(), "missing required columns: stage"),
        ((HEADER.replace(",", ";") + "\n" + ROW.replace(",", ";") + "\n").encode(), "wrong delimiter"),
        ((HEADER + "\n" + ROW.replace("Asha", "Ren\u00e9") + "\n").encode("latin-1"), "not UTF-8 \\(CSV Error on Line: 2\\)"),
        ((HEADER + "\n" + ROW + ",extra,values\n").encode(), "cannot be read as CSV"),
    ],
    ids=["empty", "missing-column", "wrong-delimiter", "latin-1", "ragged-row"],
)
def test_bad_file_fails_its_day_and_loads_nothing(conn, tmp_path: Path, content: bytes, problem: str):
    write_day(tmp_path, DAY - timedelta(days=1), [good_application()])
    extract_day(conn, tmp_path, DAY - timedelta(days=1))
    _write_raw(tmp_path, content)
    with pytest.raises(SourceFileError, match=problem) as caught:
        extract_day(conn, tmp_path, DAY)
    assert "applications.csv" in str(caught.value)
    assert _rows(conn) == 1, "the other day stays, nothing of the bad day is loaded"


def test_bad_events_file_rolls_back_the_applications_of_the_day(conn, tmp_path: Path):
    _write_raw(tmp_path, (HEADER + "\n" + ROW + "\n").encode(), b"")
    with pytest.raises(SourceFileError, match="events.csv: file is empty"):
        extract_day(conn, tmp_path, DAY)
    _write_raw(tmp_path, (HEADER + "\n" + ROW + "\n").encode(), (EVENTS_HEADER + 'E1,APP-1,"x\n').encode())
    with pytest.raises(SourceFileError, match="events.csv"):
        extract_day(conn, tmp_path, DAY)
    assert _rows(conn) == 0 and _rows(conn, "raw_events") == 0


def test_missing_day_folder_and_missing_file(conn, tmp_path: Path):
    with pytest.raises(SourceFileError, match="no source folder for 2026-11-01"):
        extract_day(conn, tmp_path, DAY)
    (tmp_path / DAY.isoformat()).mkdir()
    (tmp_path / DAY.isoformat() / "applications.csv").write_text(HEADER + "\n", encoding="utf-8")
    with pytest.raises(SourceFileError, match="events.csv: file is missing"):
        extract_day(conn, tmp_path, DAY)


def test_bom_crlf_quotes_and_newlines_inside_fields(conn, tmp_path: Path):
    row = ROW.replace("Asha Nair", '"Nair, ""Asha""\r\nJr"')
    _write_raw(tmp_path, ("\ufeff" + HEADER + "\r\n" + row + "\r\n").encode("utf-8"))
    assert extract_day(conn, tmp_path, DAY)["applications"] == 1
    assert conn.execute("SELECT application_id, applicant_name, updated_at FROM raw_applications").fetchone() == (
        "APP-1", 'Nair, "Asha"\r\nJr', "2026-11-01T10:00:00Z")


def test_extra_columns_are_ignored_with_a_warning(conn, tmp_path: Path):
    _write_raw(tmp_path, (HEADER + ",branch\n" + ROW + ",Pune\n").encode())
    counts = extract_day(conn, tmp_path, DAY)
    assert counts["applications"] == 1
    assert counts["warnings"] == [f"{tmp_path / DAY.isoformat() / 'applications.csv'}: extra columns ignored: branch"]


def test_nul_byte_is_loaded_and_rejected_later(conn, warehouse, tmp_path: Path):
    """PostgreSQL text holds no NUL byte: there it is stored as the symbol validation also rejects."""
    _write_raw(tmp_path, (HEADER + "\n" + ROW.replace("Asha Nair", "Asha\x00Nair") + "\n").encode())
    assert extract_day(conn, tmp_path, DAY)["applications"] == 1
    nul = NUL_STORED_AS if warehouse.on_postgres else "\x00"
    assert conn.execute("SELECT applicant_name FROM raw_applications").fetchone()[0] == f"Asha{nul}Nair"


def test_header_only_file_is_an_empty_day(conn, tmp_path: Path):
    write_day(tmp_path, DAY, [good_application()], [])
    assert extract_day(conn, tmp_path, DAY)["events"] == 0
    write_day(tmp_path, DAY, [good_application()], [good_event()])
    assert extract_day(conn, tmp_path, DAY)["events"] == 1


def test_days_loaded_together_number_each_files_records_from_one(conn, tmp_path: Path):
    """Files with the same header are read in one statement; row_number still restarts per file."""
    days = [DAY + timedelta(days=i) for i in range(3)]
    for day, n in zip(days, (3, 0, 2)):
        write_day(tmp_path, day, [good_application(application_id=f"APP-{day.day}-{i}") for i in range(1, n + 1)])
    conn.execute("CALL enable_logging('QueryLog')")
    loaded = extract_days(conn, tmp_path, days)
    reads = [query for (query,) in conn.execute(
        "SELECT message FROM duckdb_logs WHERE type = 'QueryLog' AND message LIKE '%read_csv(%'").fetchall()]
    assert len(reads) == 2 and all("file_index" in query for query in reads), reads  # one a table
    assert [loaded[day]["applications"] for day in days] == [3, 0, 2]
    assert conn.execute("SELECT source_file, row_number, application_id FROM raw_applications ORDER BY ALL").fetchall() == [
        ("2026-11-01/applications.csv", 1, "APP-1-1"), ("2026-11-01/applications.csv", 2, "APP-1-2"),
        ("2026-11-01/applications.csv", 3, "APP-1-3"),
        ("2026-11-03/applications.csv", 1, "APP-3-1"), ("2026-11-03/applications.csv", 2, "APP-3-2")]


def test_days_whose_files_differ_in_column_order_and_line_ends(conn, tmp_path: Path):
    """Files with different header lines are read one by one, each by its own header."""
    other = DAY + timedelta(days=1)
    write_day(tmp_path, DAY, [good_application()])
    write_day(tmp_path, other, [])
    values = dict(zip(HEADER.split(","), ROW.replace("APP-1", "APP-2").split(",")))
    names = [*reversed(values), "branch"]
    (tmp_path / other.isoformat() / "applications.csv").write_bytes(
        (",".join(names) + "\r\n" + ",".join(values.get(name, "Pune") for name in names) + "\r\n").encode())
    extract_days(conn, tmp_path, [DAY, other])
    assert conn.execute("SELECT day, row_number, application_id, email FROM raw_applications ORDER BY day").fetchall() == [
        (DAY, 1, "APP-1", "asha@mail.example"), (other, 1, "APP-2", "asha@mail.example")]


def test_a_bad_file_among_days_is_named_and_no_day_loads(conn, tmp_path: Path):
    other = DAY + timedelta(days=1)
    write_day(tmp_path, DAY, [good_application()])
    write_day(tmp_path, other, [good_application()])
    with (tmp_path / other.isoformat() / "applications.csv").open("a", encoding="utf-8") as handle:
        handle.write(ROW + ",extra\n")
    with pytest.raises(SourceFileError, match="cannot be read as CSV") as caught:
        extract_days(conn, tmp_path, [DAY, other])
    assert caught.value.path == tmp_path / other.isoformat() / "applications.csv"
    assert _rows(conn) == 0
