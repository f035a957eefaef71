"""Records gone from a snapshot: which synced records a snapshot lacks, the share the check weighs,
how the state marks them and brings them back, and that the plan never sends anything for them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from lsq_pipeline.steps.gone import back_in_source, gone_records, gone_share, settle_gone
from lsq_pipeline.steps.plan import plan_days

from .conftest import DAY, good_application, good_event

DAY2 = DAY + timedelta(days=1)
DAY3 = DAY + timedelta(days=2)


def _synced(conn, status: str = "in_sync") -> None:
    """Every record of the state's latest versions synced, as the push and the read-back leave them."""
    conn.execute(f"""
        INSERT OR REPLACE INTO opportunity_state (source_id, opportunity_id, event_code, sent_hash, sent_fields,
            source_updated_at, status, last_synced_at)
        SELECT source_id, 'OPP-' || source_id, 12002, record_hash, fields, source_updated_at, '{status}', now()
        FROM opportunity_records
        QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY source_updated_at DESC, day DESC) = 1""")


def _state(conn) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in conn.execute(
        "SELECT source_id, status, opportunity_id, error, read_back_since IS NOT NULL FROM opportunity_state"
    ).fetchall()}


def _apps(*ids: str) -> list[dict]:
    return [good_application(application_id=source_id, email=f"{source_id.lower()}@mail.example")
            for source_id in ids]


def test_a_synced_record_the_next_snapshot_lacks_is_gone_and_keeps_its_opportunity(conn, load_day, mapping):
    load_day(DAY, _apps("APP-1", "APP-2", "APP-3", "APP-4"))
    _synced(conn)
    sent_before = conn.execute("SELECT sent_fields FROM opportunity_state WHERE source_id = 'APP-2'").fetchone()
    load_day(DAY2, _apps("APP-1", "APP-3", "APP-4"))

    assert gone_records(conn, [DAY2]) == ["APP-2"]
    share = gone_share(conn, [DAY2])
    assert (share.gone, share.known, share.share) == (1, 4, 0.25)
    planned = plan_days(conn, [DAY2], mapping, snapshot=True)
    assert planned["unchanged"] == 3 and planned["create"] + planned["update"] == 0
    assert conn.execute("SELECT count(*) FROM sync_plan WHERE source_id = 'APP-2'").fetchone()[0] == 0

    summary = settle_gone(conn, [DAY2])
    assert (summary.gone_from_source, summary.back_in_source) == (1, 0)
    status, opportunity_id, error, _ = _state(conn)["APP-2"]
    assert (status, opportunity_id) == ("gone_from_source", "OPP-APP-2")
    assert error == "not in the source's snapshot of 2026-11-02"
    assert conn.execute("SELECT sent_fields FROM opportunity_state WHERE source_id = 'APP-2'").fetchone() == sent_before
    assert {source_id: row[0] for source_id, row in _state(conn).items() if source_id != "APP-2"} == {
        "APP-1": "in_sync", "APP-3": "in_sync", "APP-4": "in_sync"}
    # Gone once: the next snapshot without it neither counts it again nor changes its row.
    load_day(DAY3, _apps("APP-1", "APP-3", "APP-4"))
    assert gone_share(conn, [DAY3]) == type(share)(0, 3)
    assert settle_gone(conn, [DAY3]).gone_from_source == 0


def test_a_row_rejected_in_the_snapshot_is_still_in_the_source(conn, load_day):
    load_day(DAY, _apps("APP-1", "APP-2"))
    _synced(conn)
    load_day(DAY2, [*_apps("APP-1"), good_application(application_id="APP-2", email="not-an-email")])
    assert conn.execute("SELECT count(*) FROM rejects WHERE source_id = 'APP-2'").fetchone()[0] > 0
    assert gone_records(conn, [DAY2]) == []


def test_records_never_synced_are_never_gone(conn, load_day):
    load_day(DAY, _apps("APP-1"))
    _synced(conn)
    conn.execute("""INSERT INTO opportunity_state (source_id, event_code, status, error, last_synced_at) VALUES
                    ('APP-8', 12002, 'rejected', 'email: bad', now()), ('APP-9', 12002, 'failed', 'timeout', now())""")
    load_day(DAY2, _apps("APP-1"))
    assert gone_records(conn, [DAY2]) == []
    assert gone_share(conn, [DAY2]).known == 1


def test_an_empty_snapshot_lacks_every_known_record(conn, load_day):
    load_day(DAY, _apps("APP-1", "APP-2"))
    _synced(conn)
    load_day(DAY2, [])
    share = gone_share(conn, [DAY2])
    assert (share.gone, share.known, share.share) == (2, 2, 1.0)


def test_a_first_snapshot_has_nothing_to_lose(conn, load_day):
    load_day(DAY, _apps("APP-1"))
    assert gone_share(conn, [DAY]).share == 0.0


def test_a_gone_record_back_unchanged_sends_nothing_and_waits_for_the_read_back(conn, load_day, mapping):
    load_day(DAY, _apps("APP-1", "APP-2"))
    _synced(conn)
    load_day(DAY2, _apps("APP-1"))
    settle_gone(conn, [DAY2])

    load_day(DAY3, _apps("APP-1", "APP-2"))
    assert back_in_source(conn, [DAY3]) == ["APP-2"]
    planned = plan_days(conn, [DAY3], mapping, snapshot=True)
    assert conn.execute("SELECT action, opportunity_id FROM sync_plan WHERE source_id = 'APP-2'").fetchall() == [
        ("unchanged", "OPP-APP-2")]
    assert planned["create"] + planned["update"] == 0
    summary = settle_gone(conn, [DAY3])
    assert (summary.gone_from_source, summary.back_in_source) == (0, 1)
    assert _state(conn)["APP-2"] == ("pending", "OPP-APP-2", None, True)


def test_a_gone_record_back_changed_is_updated_with_its_changed_fields_only(conn, load_day, mapping):
    load_day(DAY, _apps("APP-1", "APP-2"))
    _synced(conn)
    load_day(DAY2, _apps("APP-1"))
    settle_gone(conn, [DAY2])

    changed = good_application(application_id="APP-2", email="app-2@mail.example", amount="2600000",
                               updated_at="2026-11-03T09:00:00Z")
    load_day(DAY3, [*_apps("APP-1"), changed])
    plan_days(conn, [DAY3], mapping, snapshot=True)
    [(action, opportunity_id, fields)] = conn.execute(
        "SELECT action, opportunity_id, fields FROM sync_plan_payloads WHERE source_id = 'APP-2'").fetchall()
    assert (action, opportunity_id) == ("update", "OPP-APP-2")
    assert json.loads(fields) == {"mx_Custom_3": "2600000", "mx_Custom_7": "2026-11-03 09:00:00"}
    # The push wrote it (pending, as after any write): the reconcile step leaves that row as it is.
    conn.execute("UPDATE opportunity_state SET status = 'pending', error = NULL, read_back_since = now() "
                 "WHERE source_id = 'APP-2'")
    assert settle_gone(conn, [DAY3]).back_in_source == 0
    assert _state(conn)["APP-2"][0] == "pending"


@pytest.mark.parametrize("status", ["missing", "failed"])
def test_a_snapshot_never_retries_a_record_it_lacks(conn, load_day, mapping, status):
    load_day(DAY, _apps("APP-1", "APP-2"))
    _synced(conn, status)
    conn.execute("UPDATE opportunity_state SET error = 'timeout', attempts = 1")
    load_day(DAY2, _apps("APP-1"))
    plan_days(conn, [DAY2], mapping, snapshot=True)
    assert conn.execute("SELECT source_id FROM sync_plan").fetchall() == [("APP-1",)]
    # Daily exports are not whole: there the record is retried from its latest version.
    plan_days(conn, [DAY2], mapping)
    assert sorted(conn.execute("SELECT source_id FROM sync_plan").fetchall()) == [("APP-1",), ("APP-2",)]


def test_the_events_of_a_record_gone_from_the_snapshot_are_not_planned(conn, load_day, mapping):
    load_day(DAY, _apps("APP-1", "APP-2"))
    _synced(conn)
    events = [good_event(event_id="EVT-1", application_id="APP-1"), good_event(event_id="EVT-2", application_id="APP-2")]
    load_day(DAY2, _apps("APP-1"), events)
    assert plan_days(conn, [DAY2], mapping, snapshot=True)["activities"] == 1
    assert conn.execute("SELECT event_id FROM activity_plan").fetchall() == [("EVT-1",)]
    assert plan_days(conn, [DAY2], mapping)["activities"] == 2  # daily exports: every event of the day
