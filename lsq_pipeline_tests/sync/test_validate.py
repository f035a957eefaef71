"""Normalise and validate: one test per rule; every reject names the field and says why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.mapping import FieldSpec
from lsq_pipeline.steps.transform import transform_days

from .conftest import DAY, good_application, good_event, write_day


@pytest.fixture
def run(conn, tmp_path: Path, mapping):
    """Write, extract and transform one day; return (accepted fields by id, rejects as (field, reason))."""

    def run_day(applications, events=None, day=DAY):
        write_day(tmp_path, day, applications, events)
        extract_day(conn, tmp_path, day)
        transform_days(conn, [day], mapping)
        accepted = {
            source_id: json.loads(fields)
            for source_id, fields in conn.execute(
                "SELECT source_id, fields FROM opportunity_records WHERE day = ?", [day]).fetchall()
        }
        rejects = conn.execute(
            "SELECT field, reason FROM rejects WHERE day = ? ORDER BY row_number, field", [day]).fetchall()
        return accepted, rejects

    return run_day


def _reject(run, **changes) -> list[tuple[str, str]]:
    accepted, rejects = run([good_application(**changes)])
    assert accepted == {}
    return rejects


def test_a_good_row_is_sent_exactly_so(run, conn):
    accepted, rejects = run([good_application(email=" Asha@Mail.Example ", stage="under review")])
    assert rejects == []
    assert accepted["APP-1"] == {
        "mx_Custom_1": "APP-1", "mx_Custom_2": "Home Loan", "mx_Custom_3": "2500000",
        "mx_Custom_4": "Asha Nair", "mx_Custom_5": "Under Review", "mx_Custom_6": "2026-11-01 04:30:00",
        "mx_Custom_7": "2026-11-01 04:35:00", "Status": "Open",
        "Owner": "0b6f2c1e-1a2b-4c3d-8e9f-000000000001", "mx_Custom_19": "Stage: Under Review",
    }
    row = conn.execute("SELECT search_by_value, lead_fields, note, source_updated_at, record_hash, "
                       "md5(CAST(fields AS VARCHAR)) FROM opportunity_records").fetchone()
    assert row[0] == "asha@mail.example"
    assert json.loads(row[1]) == {"EmailAddress": "asha@mail.example", "Phone": "+91-9876543210",
                                  "FirstName": "Asha", "LastName": "Nair"}
    assert row[2] == "Loan application APP-1: Home Loan"
    assert row[3] == datetime(2026, 11, 1, 4, 35)
    assert row[4] == row[5]


def test_missing_optional_values_leave_their_keys_out_of_compact_json(run, conn):
    accepted, rejects = run([good_application(phone="", stage="", created_at="", applicant_name='Ásha "Ji"')])
    assert rejects == []
    lead_fields, fields = conn.execute("SELECT lead_fields, fields FROM opportunity_records").fetchone()
    assert lead_fields == r'{"EmailAddress":"asha@mail.example","FirstName":"Ásha","LastName":"\"Ji\""}'  # no Phone
    assert fields == json.dumps(accepted["APP-1"], ensure_ascii=False, separators=(",", ":"))
    assert list(accepted["APP-1"]) == ["mx_Custom_1", "mx_Custom_2", "mx_Custom_3", "mx_Custom_4", "mx_Custom_7",
                                       "Owner"]
    assert accepted["APP-1"]["mx_Custom_4"] == 'Ásha "Ji"'


def test_emails_are_lowercased_and_checked(run):
    assert _reject(run, email="asha at mail.example") == [("email", "not a valid email address")]
    assert _reject(run, email="") == [("email", "required value missing")]


@pytest.mark.parametrize("phone", ["9876543210", "+91 98765 43210", "098765-43210", "+91-9876543210", "919876543210",
                                   "09876543210", "00919876543210", "+919876543210", "(+91) 98765.43210"])
def test_indian_phones_take_one_format(run, conn, phone):
    accepted, rejects = run([good_application(phone=phone)])
    assert rejects == [] and accepted
    assert conn.execute("SELECT lead_fields->>'Phone' FROM opportunity_records").fetchone()[0] == "+91-9876543210"


def test_other_phones_are_rejected(run, conn):
    assert _reject(run, phone="+1 415 555 0100")[0][0] == "phone"
    assert _reject(run, phone="12345") == [("phone", "not an Indian 10-digit phone number (+91, 0 prefixes allowed)")]
    assert conn.execute("SELECT value FROM rejects").fetchone()[0] == "12345"


@pytest.mark.parametrize(("stamp", "utc"), [
    ("2026-11-01T10:05:00Z", "2026-11-01 10:05:00"),
    ("2026-11-01T10:05:00+05:30", "2026-11-01 04:35:00"),
    ("2026-11-01T10:05:00-08:00", "2026-11-01 18:05:00"),
    ("2026-11-01 10:05:00Z", "2026-11-01 10:05:00"),
    ("2026-11-01T10:05:00-0300", "2026-11-01 13:05:00"),
    ("2026-11-01 10:05:00", "2026-11-01 10:05:00"),
    ("2026-11-01T10:05:00.123Z", "2026-11-01 10:05:00"),
])
def test_dates_become_utc(run, stamp, utc):
    accepted, _ = run([good_application(updated_at=stamp)])
    assert accepted["APP-1"]["mx_Custom_7"] == utc


@pytest.mark.parametrize(("stamp", "utc"), [
    ("2026-11-01T10:05", "2026-11-01 10:05:00"),
    ("2026-11-01", "2026-11-01 00:00:00"),
    ("2026-11-01+05:30", "2026-10-31 18:30:00"),
    ("2026-11-01T10:05:00+0530", "2026-11-01 04:35:00"),
    ("2026-11-01T10:05:00+05:30", "2026-11-01 04:35:00"),
    ("2026-11-01T10:05:00Z", "2026-11-01 10:05:00"),
])
def test_naive_and_short_dates_are_utc_whatever_the_session_time_zone(run, conn, stamp, utc):
    conn.execute("SET TimeZone = 'America/Los_Angeles'")
    accepted, _ = run([good_application(updated_at=stamp)])
    assert accepted["APP-1"]["mx_Custom_7"] == utc


@pytest.mark.parametrize("stamp", ["01/11/2026 10:05", "2026-13-01T10:00:00Z", "2026-02-30T10:00:00Z", "yesterday"])
def test_other_date_formats_are_rejected(run, stamp):
    assert _reject(run, updated_at=stamp) == [
        ("updated_at", "not an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS with Z or an offset)")]


def test_future_dates_are_rejected(run):
    accepted, rejects = run([good_application(created_at="2026-11-02T23:59:59Z")])
    assert accepted and rejects == []
    assert _reject(run, created_at="2026-11-03T00:00:00Z") == [
        ("created_at", "in the future: after the end of the day following the file's day")]


@pytest.mark.parametrize(("amount", "reason"), [
    ("25,00,000", "thousands separators are not allowed: plain decimal expected"),
    ("2,500,000.00", "thousands separators are not allowed: plain decimal expected"),
    ("ten lakh", "not a plain decimal number"),
    ("-5000", "must be greater than 0"),
    ("0", "must be greater than 0"),
    ("", "required value missing"),
])
def test_bad_amounts_are_rejected(run, amount, reason):
    assert _reject(run, amount=amount) == [("amount", reason)]


def test_amounts_become_plain_decimals(run):
    accepted, _ = run([good_application(amount="0025000.50")])
    assert accepted["APP-1"]["mx_Custom_3"] == "25000.5"


def test_text_over_the_maximum_length(run):
    assert _reject(run, applicant_name="A" * 101) == [("applicant_name", "longer than 100 characters (101)")]
    assert _reject(run, application_id="X" * 51)[0] == ("application_id", "longer than 50 characters (51)")


def formula_reason(field: str) -> str:
    return (f"{field}: looks like a spreadsheet formula (starts with = or @, or with + or - and is not a number); "
            "refused by formula_guard: reject")


@pytest.mark.parametrize("name", ["=HYPERLINK(\"x\")", "+cmd", "-2+3", "@SUM(A1)", "+", "-()"])
def test_formula_like_text_is_rejected(run, name):
    # applicant_name feeds FirstName, LastName and mx_Custom_4: the reject names the first that refuses it.
    assert _reject(run, applicant_name=name) == [("applicant_name", formula_reason("FirstName"))]
    assert _reject(run, applicant_name="+91 98765 x") == [("applicant_name", formula_reason("mx_Custom_4"))]


@pytest.fixture
def phone_as_text(mapping):
    """The demo mapping with the phone also sent as text (`mx_Custom_4: {column: phone, max_length: 20}`),
    `formula_guard` on it as given; `lead_phone=False`: without the lead's Phone (type phone), which
    refuses anything but an Indian number on its own."""

    def make(lead_phone: bool = True, **guard: str):
        opportunity = mapping.opportunity
        fields = {**opportunity.fields, "mx_Custom_4": FieldSpec(column="phone", max_length=20, **guard)}
        lead = opportunity.lead
        if not lead_phone:
            lead = lead.model_copy(update={"capture_fields": {
                name: spec for name, spec in lead.capture_fields.items() if name != "Phone"}})
        opportunity = opportunity.model_copy(update={"fields": fields, "lead": lead})
        return mapping.model_copy(update={"opportunity": opportunity})

    return make


def _phone_run(conn, tmp_path, mapping, phones: list[str]) -> tuple[dict[str, str], list[tuple]]:
    rows = [good_application(application_id=f"APP-{n}", phone=phone) for n, phone in enumerate(phones)]
    write_day(tmp_path, DAY, rows)
    extract_day(conn, tmp_path, DAY)
    transform_days(conn, [DAY], mapping)
    accepted = {source_id: json.loads(fields)["mx_Custom_4"] for source_id, fields in
                conn.execute("SELECT source_id, fields FROM opportunity_records").fetchall()}
    rejects = conn.execute("SELECT source_id, field, reason, value FROM rejects ORDER BY row_number").fetchall()
    return accepted, rejects


def test_an_indian_phone_number_in_a_text_field_is_data(conn, tmp_path, phone_as_text):
    phones = ["+91-98765-43210", "+91 98765 43210", "(+91) 98765 43210", "0091 98765.43210", "98765-43210"]
    accepted, rejects = _phone_run(conn, tmp_path, phone_as_text(), phones)
    assert rejects == []
    assert accepted == {f"APP-{n}": phone for n, phone in enumerate(phones)}


@pytest.mark.parametrize("text", ["+1 (415) 555-0100", "-12.5", "+7", "-(12) 4.5"])
def test_a_number_with_a_sign_is_data_whatever_the_field(conn, tmp_path, phone_as_text, text):
    accepted, rejects = _phone_run(conn, tmp_path, phone_as_text(lead_phone=False), [text])
    assert (accepted, rejects) == ({"APP-0": text}, [])


def test_the_guard_per_field_reject_quote_off(conn, tmp_path, phone_as_text):
    texts = ["=1+2", "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3", "+91-98765-43210"]
    accepted, rejects = _phone_run(conn, tmp_path, phone_as_text(lead_phone=False), texts)
    assert accepted == {"APP-4": "+91-98765-43210"}
    assert rejects == [(f"APP-{n}", "phone", formula_reason("mx_Custom_4"), text) for n, text in enumerate(texts[:4])]

    accepted, rejects = _phone_run(conn, tmp_path, phone_as_text(lead_phone=False, formula_guard="quote"), texts)
    assert rejects == []
    assert accepted == {"APP-0": "'=1+2", "APP-1": "'@SUM(A1)", "APP-2": "'+cmd|' /C calc'!A0", "APP-3": "'-2+3",
                        "APP-4": "+91-98765-43210"}

    accepted, rejects = _phone_run(conn, tmp_path, phone_as_text(lead_phone=False, formula_guard="off"), texts)
    assert rejects == []
    assert accepted == {f"APP-{n}": text for n, text in enumerate(texts)}


def test_a_quoted_value_counts_its_quote_against_the_maximum_length(conn, tmp_path, phone_as_text):
    mapping = phone_as_text(lead_phone=False, formula_guard="quote")
    accepted, rejects = _phone_run(conn, tmp_path, mapping, ["=" + "1" * 19, "=" + "1" * 18])
    assert accepted == {"APP-1": "'=" + "1" * 18}
    assert rejects == [("APP-0", "phone", "longer than 20 characters (21)", "=" + "1" * 19)]


def test_nul_bytes_are_rejected_naming_the_field(run, conn):
    assert _reject(run, applicant_name="Asha\x00Nair") == [("applicant_name", "contains a NUL byte")]
    assert conn.execute("SELECT value FROM rejects").fetchone()[0] == "Asha\u2400Nair"


def test_emoji_and_non_ascii_pass_unchanged(run):
    names = ["Zoë Müller", "अर्जुन शर्मा", "Ananya Rao 🙂"]
    accepted, rejects = run([good_application(application_id=f"APP-{i}", applicant_name=n) for i, n in enumerate(names)])
    assert rejects == []
    assert [accepted[f"APP-{i}"]["mx_Custom_4"] for i in range(3)] == names


def test_unknown_dropdown_values(run):
    assert _reject(run, product="Gold Loan") == [
        ("product", "not one of the options: Personal Loan, Home Loan, Auto Loan, Business Loan, Education Loan")]
    assert _reject(run, stage="Pending Approval")[0][0] == "stage"


def test_stage_maps_onto_status(run):
    accepted, _ = run([good_application(application_id="A", stage="Disbursed"),
                       good_application(application_id="B", stage="Rejected")])
    assert (accepted["A"]["Status"], accepted["A"]["mx_Custom_5"], accepted["B"]["Status"]) == ("Won", "Disbursed", "Lost")


def test_unknown_or_missing_owner(run):
    assert _reject(run, owner_email="former.officer@lendco.example") == [
        ("owner_email", "unknown owner: not one of the LeadSquared users in the mapping")]
    assert _reject(run, owner_email="") == [("owner_email", "required value missing")]


def test_missing_required_values(run):
    assert _reject(run, application_id="  ", product="") == [
        ("application_id", "required value missing"), ("product", "required value missing")]


def test_one_reject_row_per_bad_column(run, conn):
    assert _reject(run, email="x", amount="1,000", stage="??") == [
        ("amount", "thousands separators are not allowed: plain decimal expected"),
        ("email", "not a valid email address"),
        ("stage", "not one of the options: New, Documents Pending, Under Review, Approved, Disbursed, Rejected")]
    assert conn.execute("SELECT DISTINCT source_id, source_file, row_number FROM rejects").fetchall() == [
        ("APP-1", "2026-11-01/applications.csv", 1)]


def test_latest_version_in_a_day_wins(run, conn):
    accepted, rejects = run([
        good_application(amount="300", updated_at="2026-11-01T12:00:00Z"),
        good_application(amount="100", updated_at="2026-11-01T09:00:00Z"),  # older, later in the file
        good_application(application_id="APP-2", amount="1"),
        good_application(application_id="APP-2", amount="2"),  # same updated_at: the last row wins
    ])
    assert rejects == []
    assert (accepted["APP-1"]["mx_Custom_3"], accepted["APP-2"]["mx_Custom_3"]) == ("300", "2")
    assert conn.execute("SELECT count(*) FROM opportunity_records").fetchone()[0] == 2


def test_a_bad_latest_version_is_rejected_and_the_older_superseded(run, conn):
    accepted, rejects = run([good_application(amount="100", updated_at="2026-11-01T09:00:00Z"),
                             good_application(amount="oops", updated_at="2026-11-01T12:00:00Z")])
    assert accepted == {} and rejects == [("amount", "not a plain decimal number")]


def test_events_are_mapped_to_activities(run, conn):
    events = [good_event(), good_event(event_id="EVT-2", event_type="document_collected", detail="PAN Card", note=""),
              good_event(event_id="EVT-3", event_type="meeting_held", detail="", note="Met, all good")]
    run([good_application()], events)
    rows = conn.execute("SELECT event_id, activity_event, fields, note, occurred_at FROM activity_records "
                        "ORDER BY event_id").fetchall()
    assert [(r[0], r[1], json.loads(r[2]), r[3]) for r in rows] == [
        ("EVT-1", 211, {"mx_Custom_1": "742"}, "Score pulled"),
        ("EVT-2", 208, {"mx_Custom_1": "PAN Card"}, None),
        ("EVT-3", 102, {}, "Met, all good")]
    assert rows[0][4] == datetime(2026, 11, 1, 11, 0)


def test_bad_events_are_rejected_with_reasons(run):
    _, rejects = run([good_application()], [
        good_event(event_id="E1", event_type="call_logged"),
        good_event(event_id="E2", occurred_at="01.11.2026 10:00"),
        good_event(event_id="E3", application_id="APP-404"),
        good_event(event_id="E4", detail="high"),
        good_event(event_id="E5", event_type="document_collected", detail=""),
        good_event(event_id="E6", owner_email="someone@else.example"),
    ])
    assert rejects == [
        ("event_type", "unknown event type (known: document_collected, meeting_held, credit_check)"),
        ("occurred_at", "not an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS with Z or an offset)"),
        ("application_id", "no accepted application with this id (on any day)"),
        ("detail", "not a plain decimal number"),
        ("detail", "required value missing"),
        ("owner_email", "unknown owner: not one of the LeadSquared users in the mapping"),
    ]


def test_events_of_an_application_accepted_on_an_earlier_day(run, conn):
    run([good_application()])
    next_day = DAY + timedelta(days=1)
    _, rejects = run([good_application(application_id="APP-9", email="bad")],
                     [good_event(occurred_at="2026-11-02T08:00:00Z")], day=next_day)
    assert rejects == [("email", "not a valid email address")]
    assert conn.execute("SELECT day, event_id FROM activity_records").fetchall() == [(next_day, "EVT-1")]


def test_rerunning_a_day_replaces_its_rows(run, conn):
    run([good_application(amount="bad")])
    run([good_application()])
    assert conn.execute("SELECT (SELECT count(*) FROM rejects), (SELECT count(*) FROM opportunity_records)"
                        ).fetchone() == (0, 1)
