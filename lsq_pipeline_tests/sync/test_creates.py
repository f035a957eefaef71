"""The create queue shared by the bulk lane and the general lane, and which leads the state knows."""

from __future__ import annotations

import threading
from datetime import date, datetime

from lsq_pipeline.steps.push.creates import CAPTURES_PER_UNIT, CreateQueue, lead_key
from lsq_pipeline.tables.records import PlannedRecord
from lsq_pipeline.tables.opportunities import known_leads


def row(source_id: str, email: str) -> PlannedRecord:
    return PlannedRecord(date(2026, 11, 1), source_id, None, {}, {}, email, {}, None, None, "hash",
                         datetime(2026, 11, 1), "failed-hash")


def ids(rows: list[PlannedRecord]) -> list[str]:
    return [r.source_id for r in rows]


def test_known_leads_go_straight_to_bulk_add_the_rest_wait_for_a_lane() -> None:
    rows = [row(f"A-{n}", f"known{n}@x.example") for n in range(30)] + [row("N-1", "new@x.example")]
    queue = CreateQueue(rows, {f"known{n}@x.example" for n in range(30)})
    assert queue.unknown_leads == 1
    first = queue.take_work()
    assert first.kind == "add" and ids(first.rows) == [f"A-{n}" for n in range(25)]
    second = queue.take_work()  # 5 ready are fewer than a call's worth: the unsent lead is captured first
    assert second.kind == "capture_lead" and ids(second.rows) == ["N-1"]
    third = queue.take_work()  # nothing left for the bulk lane: the 5 go as a short Bulk Add
    assert third.kind == "add" and ids(third.rows) == [f"A-{n}" for n in range(25, 30)]


def test_bulk_lane_takes_leads_from_the_front_general_lane_captures_from_the_back() -> None:
    rows = [row(f"R-{n}", f"lead{n}@x.example") for n in range(120)]
    rows.append(row("R-0b", "LEAD0@x.example"))  # a second record of lead 0 (case-insensitive)
    queue = CreateQueue(rows, set())
    assert queue.unknown_leads == 120
    groups = queue.take_leads()
    assert len(groups) == 50 and ids(groups[0]) == ["R-0", "R-0b"]
    capture = queue.take_work()  # up to CAPTURES_PER_UNIT unsent leads a unit, from the back
    assert capture.kind == "capture_lead" and ids(capture.rows) == ["R-119", "R-118"][:CAPTURES_PER_UNIT]
    queue.leads_sent(groups)  # the 51 records of those leads are ready for Bulk Add
    add = queue.take_work()
    assert add.kind == "add" and ids(add.rows) == ["R-0", "R-0b"] + [f"R-{n}" for n in range(1, 24)]


def test_a_missing_lead_after_bulk_add_is_captured_first_and_a_captured_leads_other_records_follow() -> None:
    rows = [row("R-1", "a@x.example"), row("R-2", "a@x.example"), row("R-3", "b@x.example")]
    queue = CreateQueue(rows, set())
    work = queue.take_work()
    assert work.kind == "capture_lead" and ids(work.rows) == ["R-3", "R-1"] and ids(work.rest) == ["R-2"]
    queue.work_done(work)
    add = queue.take_work()
    assert add.kind == "add" and ids(add.rows) == ["R-2"]
    queue.work_done(add, to_capture=add.rows)
    capture = queue.take_work()
    assert capture.kind == "capture" and ids(capture.rows) == ["R-2"]
    queue.work_done(capture)
    assert queue.take_work() is None and queue.left() == 0


def test_the_general_lane_waits_for_a_bulk_call_in_flight_and_ends_when_all_is_done() -> None:
    queue = CreateQueue([row("R-1", "a@x.example")], set())
    groups = queue.take_leads()
    taken: list = []
    worker = threading.Thread(target=lambda: taken.append(queue.take_work()))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()  # nothing it may do while the lead's bulk call is in the air
    queue.leads_sent(groups)
    worker.join(5)
    assert taken[0].kind == "add" and ids(taken[0].rows) == ["R-1"]
    assert queue.take_leads() == []
    queue.work_done(taken[0])
    assert queue.take_work() is None


def test_abort_stops_both_lanes() -> None:
    queue = CreateQueue([row(f"R-{n}", f"l{n}@x.example") for n in range(3)], set())
    queue.abort()
    assert queue.take_leads() == [] and queue.take_work() is None


def test_known_leads_are_those_with_an_opportunity_or_a_lead_id_in_the_state(conn) -> None:
    conn.execute(
        """
        INSERT INTO opportunity_records (source_id, search_by_value) VALUES
            ('A-1', 'Has.Opp@x.example'), ('A-2', 'has.lead@x.example'), ('A-3', 'failed@x.example')
        """
    )
    conn.execute(
        """
        INSERT INTO opportunity_state (source_id, opportunity_id, lead_id, status) VALUES
            ('A-1', 'opp-1', NULL, 'in_sync'), ('A-2', NULL, 'lead-2', 'failed'), ('A-3', NULL, NULL, 'failed')
        """
    )
    asked = ["has.opp@x.example", "HAS.LEAD@x.example ", "failed@x.example", "new@x.example"]
    assert known_leads(conn, [lead_key(value) for value in asked]) == {"has.opp@x.example", "has.lead@x.example"}
    assert known_leads(conn, []) == set()


def test_a_lead_whose_create_or_capture_went_unanswered_counts_as_known(conn) -> None:
    """That write may have made the lead and an opportunity: the record goes Bulk Add first (the
    duplicate rule answers), never straight to a Capture (which may ignore the rule)."""
    conn.execute("INSERT INTO opportunity_records (source_id, search_by_value) VALUES "
                 "('C-1', 'lost@x.example'), ('C-2', 'answered@x.example'), ('C-3', 'killed@x.example'), "
                 "('C-4', 'in.flight@x.example')")
    conn.execute("INSERT INTO push_journal (source_id, kind, status) VALUES "
                 "('C-1', 'capture', 'unknown'), ('C-2', 'capture', 'failed'), ('C-3', 'create', 'unknown'), "
                 "('C-4', 'create', 'sent')")
    asked = ["lost@x.example", "answered@x.example", "killed@x.example", "in.flight@x.example"]
    assert known_leads(conn, asked) == {"lost@x.example", "killed@x.example", "in.flight@x.example"}
