"""Plan: create / update (changed fields only, plus the status comment) / unchanged / stale, against hand-written state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from lsq_pipeline.steps.plan import plan_days

from .conftest import DAY, good_application, good_event

DAY2 = DAY + timedelta(days=1)


def _mark_synced(conn, source_id: str = "APP-1", opportunity_id: str | None = "OPP-1") -> None:
    """Write the state row as reconcile would after sending the record's current fields."""
    conn.execute("""
        INSERT OR REPLACE INTO opportunity_state (source_id, opportunity_id, event_code, sent_hash, sent_fields,
            source_updated_at, status, last_synced_at)
        SELECT source_id, ?, 12002, record_hash, fields, source_updated_at, 'in_sync', now()
        FROM opportunity_records WHERE source_id = ?
        QUALIFY row_number() OVER (ORDER BY source_updated_at DESC) = 1""", [opportunity_id, source_id])


def _plan(conn) -> dict[str, tuple]:
    rows = conn.execute("SELECT source_id, action, opportunity_id, fields, full_fields FROM sync_plan_payloads").fetchall()
    return {r[0]: (r[1], r[2], json.loads(r[3]) if r[3] else None, json.loads(r[4])) for r in rows}


def test_new_records_are_created_with_all_fields(conn, load_day, mapping):
    load_day(DAY, [good_application()])
    assert plan_days(conn, [DAY], mapping) == {
        "create": 1, "update": 0, "unchanged": 0, "stale": 0, "refused": 0, "skipped": 0, "activities": 0
    }
    action, opportunity_id, fields, full = _plan(conn)["APP-1"]
    assert (action, opportunity_id) == ("create", None) and fields == full and fields["mx_Custom_19"] == "Stage: New"
    row = conn.execute("SELECT search_by_value, owner_email, note, record_hash IS NOT NULL, lead_fields "
                       "FROM sync_plan_payloads").fetchone()
    assert row[:4] == ("asha@mail.example", "priya.sharma@lendco.example", "Loan application APP-1: Home Loan", True)


def test_a_state_row_without_opportunity_id_is_created_again(conn, load_day, mapping):
    load_day(DAY, [good_application()])
    _mark_synced(conn, opportunity_id=None)
    assert plan_days(conn, [DAY], mapping)["create"] == 1


def test_unchanged_records_send_nothing(conn, load_day, mapping):
    load_day(DAY, [good_application()])
    _mark_synced(conn)
    load_day(DAY2, [good_application()])  # the same version exported again the next day
    assert plan_days(conn, [DAY2], mapping)["unchanged"] == 1
    assert _plan(conn)["APP-1"][:3] == ("unchanged", "OPP-1", None)


def test_update_sends_only_the_changed_fields(conn, load_day, mapping):
    load_day(DAY, [good_application()])
    _mark_synced(conn)
    load_day(DAY2, [good_application(amount="2600000", updated_at="2026-11-02T09:00:00Z")])
    assert plan_days(conn, [DAY2], mapping)["update"] == 1
    action, opportunity_id, fields, full = _plan(conn)["APP-1"]
    assert (action, opportunity_id) == ("update", "OPP-1")
    assert fields == {"mx_Custom_3": "2600000", "mx_Custom_7": "2026-11-02 09:00:00"}
    assert full["mx_Custom_2"] == "Home Loan" and len(full) == 10


def test_status_change_carries_the_status_comment(conn, load_day, mapping):
    load_day(DAY, [good_application(stage="Approved")])
    _mark_synced(conn)
    load_day(DAY2, [good_application(stage="Disbursed", updated_at="2026-11-02T09:00:00Z")])
    plan_days(conn, [DAY2], mapping)
    assert _plan(conn)["APP-1"][2] == {"mx_Custom_5": "Disbursed", "mx_Custom_7": "2026-11-02 09:00:00",
                                       "Status": "Won", "mx_Custom_19": "Stage: Disbursed"}


def _update_after_sending(conn, load_day, mapping, sent_differently: dict) -> dict:
    """Plan a record whose last sent fields differed from its current ones by `sent_differently`."""
    load_day(DAY, [good_application()])
    _mark_synced(conn)
    conn.execute("UPDATE opportunity_state SET sent_fields = json_merge_patch(sent_fields, ?), sent_hash = 'old'",
                 [json.dumps(sent_differently)])
    plan_days(conn, [DAY], mapping)
    return _plan(conn)["APP-1"][2]


def test_status_comment_is_added_even_when_its_text_did_not_change(conn, load_day, mapping):
    assert _update_after_sending(conn, load_day, mapping, {"Status": "Lost"}) == {
        "Status": "Open", "mx_Custom_19": "Stage: New"}


def test_a_field_no_longer_mapped_is_cleared(conn, load_day, mapping):
    assert _update_after_sending(conn, load_day, mapping, {"mx_Custom_8": "x"}) == {"mx_Custom_8": ""}


def test_an_older_version_than_the_synced_one_is_stale(conn, load_day, mapping):
    load_day(DAY2, [good_application(amount="900", updated_at="2026-11-02T09:00:00Z")])
    _mark_synced(conn)
    load_day(DAY, [good_application(amount="100")])  # backfill of an earlier day, run afterwards
    assert plan_days(conn, [DAY], mapping)["stale"] == 1
    assert _plan(conn)["APP-1"][:3] == ("stale", "OPP-1", None)


def test_latest_version_across_the_planned_days(conn, load_day, mapping):
    load_day(DAY, [good_application(amount="100")])
    load_day(DAY2, [good_application(amount="200", updated_at="2026-11-02T09:00:00Z")])
    assert plan_days(conn, [DAY, DAY2], mapping)["create"] == 1
    assert conn.execute("SELECT day, fields->>'mx_Custom_3' FROM sync_plan_payloads").fetchone() == (DAY2, "200")


def test_replanning_replaces_the_days_rows(conn, load_day, mapping):
    load_day(DAY, [good_application()])
    plan_days(conn, [DAY], mapping)
    _mark_synced(conn)
    plan_days(conn, [DAY], mapping)
    assert conn.execute("SELECT action FROM sync_plan_payloads").fetchall() == [("unchanged",)]


def test_activities_already_created_are_not_planned_again(conn, load_day, mapping):
    load_day(DAY, [good_application()], [good_event(), good_event(event_id="EVT-2")])
    conn.execute("INSERT INTO activity_state VALUES ('EVT-1', 'APP-1', 'OPP-1', 'ACT-1', 'created', NULL, ?)",
                 [datetime(2026, 11, 1, 12)])
    conn.execute("INSERT INTO activity_state VALUES ('EVT-2', 'APP-1', 'OPP-1', NULL, 'failed', 'boom', NULL)")
    assert plan_days(conn, [DAY], mapping)["activities"] == 1
    assert conn.execute("SELECT event_id, activity_event FROM activity_plan").fetchall() == [("EVT-2", 211)]


def test_a_version_leadsquared_refused_is_not_sent_again_until_it_changes(conn, load_day, mapping):
    load_day(DAY, [good_application()])
    conn.execute("""
        INSERT INTO opportunity_state (source_id, event_code, status, error, failed_hash, last_synced_at)
        SELECT source_id, 12002, 'failed', 'MXDuplicateEntryException: A Lead with same Phone already exists',
               md5(concat_ws('|', record_hash, lead_fields::VARCHAR)), now()
        FROM opportunity_records""")
    assert plan_days(conn, [DAY], mapping)["refused"] == 1
    assert _plan(conn)["APP-1"][:3] == ("refused", None, None)
    load_day(DAY2, [good_application(phone="+91 90000 00009")])  # only the lead's phone changed
    assert plan_days(conn, [DAY2], mapping)["create"] == 1


def test_a_version_replaced_after_the_plan_is_never_sent_under_the_old_decision(conn, load_day, mapping):
    load_day(DAY, [good_application(amount="100")])
    plan_days(conn, [DAY], mapping)
    assert conn.execute("SELECT fields->>'mx_Custom_3' FROM sync_plan_payloads").fetchall() == [("100",)]
    load_day(DAY, [good_application(amount="300")])  # the day transformed again before the push
    assert conn.execute("SELECT action FROM sync_plan").fetchall() == [("create",)]
    assert conn.execute("SELECT count(*) FROM sync_plan_payloads").fetchone()[0] == 0
    plan_days(conn, [DAY], mapping)
    assert conn.execute("SELECT fields->>'mx_Custom_3' FROM sync_plan_payloads").fetchall() == [("300",)]
