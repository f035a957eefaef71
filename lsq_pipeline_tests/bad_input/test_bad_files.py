"""Corpus: every bad file fails its own day with a message naming the file and the problem, and
nothing else: the days around it load, and nothing of the bad day is half-loaded."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from lsq_pipeline.steps.extract import SourceFileError, extract_day

from .corpus import BAD_FILES, DAY, GOOD_FILES, ROWS, names, place

GOOD_DAY_FILE = GOOD_FILES / "crlf_line_ends.csv"  # two good rows

# corpus file -> the problem the message must state
PROBLEMS = {
    "empty": "file is empty (no header row)",
    "missing_column": "missing required columns: phone",
    "column_given_twice": "columns given twice: email",
    "semicolon_delimiter": "(the header has one column: wrong delimiter? comma expected)",
    "tab_delimiter": "(the header has one column: wrong delimiter? comma expected)",
    "latin1_encoding": "not UTF-8 (CSV Error on Line: 3): export it as UTF-8",
    "cp1252_encoding": "not UTF-8 (CSV Error on Line: 2): export it as UTF-8",
    "utf16_encoding": "not UTF-8: byte 0xff in the header",
    "unquoted_thousands_separator": "cannot be read as CSV: record 2 (line 3) has 12 fields, the header has 10",
    "row_with_too_few_fields": "cannot be read as CSV: record 2 (line 3) has 9 fields, the header has 10",
    "unterminated_quote": "cannot be read as CSV: line 3: unexpected end of data",
    "mixed_line_ends": "cannot be read as CSV: line ends mix CRLF and LF: export it with one kind of line end",
    "header_name_misspelt": "missing required columns: owner_email",
}


def _days_loaded(conn, table: str) -> dict:
    return dict(conn.execute(f"SELECT day, count(*) FROM {table} GROUP BY day").fetchall())


def test_every_bad_file_of_the_corpus_has_an_expected_problem():
    assert set(PROBLEMS) == set(names(BAD_FILES))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_bad_applications_file_fails_its_day_only(conn, tmp_path: Path, name: str):
    before, after = DAY - timedelta(days=1), DAY + timedelta(days=1)
    for day in (before, after):
        place(tmp_path, day, GOOD_DAY_FILE)
    bad = place(tmp_path, DAY, BAD_FILES / f"{name}.csv", ROWS / "events.csv")

    extract_day(conn, tmp_path, before)
    with pytest.raises(SourceFileError) as caught:
        extract_day(conn, tmp_path, DAY)
    extract_day(conn, tmp_path, after)

    assert caught.value.path == bad / "applications.csv"
    message = str(caught.value)
    assert message.startswith(f"{bad / 'applications.csv'}: ") and message.endswith(PROBLEMS[name])
    assert _days_loaded(conn, "raw_applications") == {before: 2, after: 2}
    assert _days_loaded(conn, "raw_events") == {}, "the bad day's good events.csv is not loaded either"


@pytest.mark.parametrize("name", ["empty", "missing_column", "semicolon_delimiter", "latin1_encoding", "unterminated_quote"])
def test_bad_events_file_fails_its_day_and_rolls_back_its_applications(conn, tmp_path: Path, name: str):
    bad = place(tmp_path, DAY, GOOD_DAY_FILE, BAD_FILES / f"{name}.csv")
    with pytest.raises(SourceFileError, match=re.escape(f"{bad / 'events.csv'}: ")):
        extract_day(conn, tmp_path, DAY)
    assert _days_loaded(conn, "raw_applications") == {} and _days_loaded(conn, "raw_events") == {}


def test_bad_file_on_rerun_keeps_the_days_earlier_load(conn, tmp_path: Path):
    place(tmp_path, DAY, GOOD_DAY_FILE)
    extract_day(conn, tmp_path, DAY)
    place(tmp_path, DAY, BAD_FILES / "mixed_line_ends.csv")
    with pytest.raises(SourceFileError, match="line ends mix CRLF and LF"):
        extract_day(conn, tmp_path, DAY)
    assert _days_loaded(conn, "raw_applications") == {DAY: 2}, "the failed re-run deleted nothing"
