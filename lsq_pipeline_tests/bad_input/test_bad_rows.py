"""Corpus: one day of dirty rows (`corpus/rows/`). Every bad row is rejected with the field and the
reason listed in `<file>.expected.csv`; every good row is accepted, exactly as written; none is lost."""

from __future__ import annotations

import csv
import json

import duckdb
import pytest

from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.mapping import load_mapping
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.schema import ensure_schema

from .conftest import DEMO_MAPPING
from .corpus import DAY, ROWS, expected_rejects, place

APPLICATION_REJECTS = expected_rejects("applications")
EVENT_REJECTS = expected_rejects("events")


def _source(name: str) -> list[dict[str, str]]:
    with (ROWS / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


APPLICATIONS = _source("applications.csv")
EVENTS = _source("events.csv")
GOOD_IDS = sorted({row["application_id"] for row in APPLICATIONS if row["application_id"].startswith("OK-")})
GOOD_EVENT_IDS = sorted({row["event_id"] for row in EVENTS if row["event_id"].startswith("E-OK-")})


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """The rows corpus extracted and transformed once: (connection, counts)."""
    folder = tmp_path_factory.mktemp("rows")
    place(folder / "source", DAY, ROWS / "applications.csv", ROWS / "events.csv")
    conn = duckdb.connect(str(folder / "warehouse.duckdb"))
    ensure_schema(conn)
    extract_day(conn, folder / "source", DAY)
    counts = transform_days(conn, [DAY], load_mapping(DEMO_MAPPING))
    yield conn, counts
    conn.close()


def _rejects(conn, source_file: str, id_column: str) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for source_id, field, reason in conn.execute(f"""
            SELECT r.{id_column}, j.field, j.reason FROM rejects j
            JOIN raw_{source_file} r USING (day, source_file, row_number)""").fetchall():
        found.setdefault(source_id, set()).add((field, reason))
    return found


def test_the_corpus_lists_a_reject_for_every_bad_row():
    assert set(APPLICATION_REJECTS) == {r["application_id"] for r in APPLICATIONS if r["application_id"].startswith("REJ-")}
    assert set(EVENT_REJECTS) == {r["event_id"] for r in EVENTS if r["event_id"].startswith("E-REJ-")}


@pytest.mark.parametrize("source_id", sorted(APPLICATION_REJECTS))
def test_bad_application_row_is_rejected_naming_the_field(day, source_id):
    conn, _ = day
    assert _rejects(conn, "applications", "application_id").get(source_id) == APPLICATION_REJECTS[source_id]


@pytest.mark.parametrize("event_id", sorted(EVENT_REJECTS))
def test_bad_event_row_is_rejected_naming_the_field(day, event_id):
    conn, _ = day
    assert _rejects(conn, "events", "event_id").get(event_id) == EVENT_REJECTS[event_id]


@pytest.mark.parametrize("source_id", GOOD_IDS)
def test_good_application_row_is_accepted_as_written(day, source_id):
    conn, _ = day
    rows = conn.execute("SELECT fields FROM opportunity_records WHERE source_id = ?", [source_id]).fetchall()
    assert len(rows) == 1
    latest = [row for row in APPLICATIONS if row["application_id"] == source_id][0]  # first = newest in the file
    assert json.loads(rows[0][0])["mx_Custom_4"] == latest["applicant_name"]


def test_no_accepted_record_is_lost_and_none_is_counted_twice(day):
    conn, counts = day
    accepted = {row[0] for row in conn.execute("SELECT source_id FROM opportunity_records").fetchall()}
    assert accepted == set(GOOD_IDS)
    assert counts["accepted"] == len(GOOD_IDS)
    assert counts["rejected"] == len(APPLICATION_REJECTS)
    assert counts["superseded"] == 2, "the older row of each duplicated id"
    assert counts["accepted"] + counts["rejected"] + counts["superseded"] == len(APPLICATIONS)
    events = {row[0] for row in conn.execute("SELECT event_id FROM activity_records").fetchall()}
    assert events == set(GOOD_EVENT_IDS)
    assert counts["events_accepted"] + counts["events_rejected"] + counts["events_superseded"] == len(EVENTS)


def test_emoji_and_non_ascii_pass_unchanged_to_the_accepted_record(day):
    conn, _ = day
    sent = dict(conn.execute("SELECT source_id, fields->>'mx_Custom_4' FROM opportunity_records").fetchall())
    assert sent["OK-emoji"] == "Ananya Rao \U0001F642"
    assert sent["OK-emoji-zwj-sequence"] == "Meera \U0001F469\u200D\U0001F4BB Iyer"
    assert sent["OK-devanagari-and-accents"] == "\u0905\u0930\u094d\u091c\u0941\u0928 Zo\u00eb M\u00fcller"
    note = conn.execute("SELECT note FROM activity_records WHERE event_id = 'E-OK-emoji-note'").fetchone()[0]
    assert note == "Docs in \U0001F4C4"


def test_duplicate_id_in_one_file_the_latest_wins_not_a_reject(day):
    conn, _ = day
    assert conn.execute("SELECT fields->>'mx_Custom_3' FROM opportunity_records WHERE source_id = 'OK-duplicate-id'"
                        ).fetchall() == [("111",)]
    assert conn.execute("SELECT note FROM activity_records WHERE event_id = 'E-OK-duplicate-id'").fetchall() == [
        ("second",)]


def test_quotes_newlines_padding_and_case_are_normalised_or_kept_as_written(day):
    conn, _ = day
    fields = json.loads(conn.execute(
        "SELECT fields FROM opportunity_records WHERE source_id = 'OK-padded-values'").fetchone()[0])
    assert (fields["mx_Custom_2"], fields["mx_Custom_5"], fields["Status"]) == ("Home Loan", "Under Review", "Open")
    assert conn.execute("SELECT search_by_value FROM opportunity_records WHERE source_id = 'OK-padded-values'"
                        ).fetchone()[0] == "asha@mail.example"
    note = conn.execute("SELECT note FROM activity_records WHERE event_id = "
                        "'E-OK-meeting-note-with-quotes-and-newline'").fetchone()[0]
    assert note == 'Met at "Pune" branch\nall good'
    assert conn.execute("SELECT fields->>'mx_Custom_3' FROM opportunity_records WHERE source_id = "
                        "'OK-leading-zeros-decimal'").fetchone()[0] == "25000.5"
