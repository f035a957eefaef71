"""The state tables' owner: recovery touches only rows of runs that are not alive; a split
batch's rows are `split` and its halves name it."""

from __future__ import annotations

from lsq_pipeline.leadsquared import ActivityAdd, OpportunityUpdate
from lsq_pipeline.tables import journal
from lsq_pipeline.tables.records import JournalEntry
from lsq_pipeline.mapping import Adoption
from lsq_pipeline.tables.statuses import Kind, Sent

UPDATE = OpportunityUpdate(opportunity_id="OPP-1", event_code=12002)


def _sent(conn, run_id: str, kind: str, key: str) -> JournalEntry:
    payload = ActivityAdd(activity_event=102, owner_email=f"{key}@x.example") if kind == "activity" else UPDATE
    entry = JournalEntry(Kind(kind), None, f"APP-{key}", payload, event_id=f"EVT-{key}" if kind == "activity" else None,
                         batch_id=journal.new_batch_id(), opportunity_id="OPP-1" if kind == "activity" else None)
    journal.record_sent(conn, run_id, [entry])
    return entry


def _statuses(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT run_id || ':' || coalesce(event_id, source_id), status FROM push_journal").fetchall())


def test_only_rows_of_runs_that_are_not_alive_become_unknown(conn):
    _sent(conn, "live", "create", "1")
    _sent(conn, "live", "activity", "2")
    _sent(conn, "dead", "create", "3")
    _sent(conn, "dead", "activity", "4")
    _sent(conn, "mine", "update", "5")  # this run's own earlier attempt of the step died
    asked = []

    def alive(run_id: str) -> bool:
        asked.append(run_id)
        return run_id == "live"

    counts = journal.mark_interrupted(conn, "mine", alive)
    assert counts == {"create": 1, "activity": 1, "update": 1}
    assert _statuses(conn) == {
        "live:APP-1": "sent", "live:EVT-2": "sent",
        "dead:APP-3": "unknown", "dead:EVT-4": "unknown", "mine:APP-5": "unknown",
    }
    assert sorted(asked) == ["dead", "live"]
    # The dead run's activity is reported unknown (never re-sent), on its opportunity; the live one's is untouched.
    assert conn.execute("SELECT event_id, opportunity_id, status FROM activity_state").fetchall() == [
        ("EVT-4", "OPP-1", "unknown")]


def test_nothing_is_touched_when_every_run_with_rows_in_the_air_is_alive(conn):
    _sent(conn, "live", "create", "1")
    assert journal.mark_interrupted(conn, "mine", lambda run_id: True) == {}
    assert _statuses(conn) == {"live:APP-1": "sent"}


def test_a_split_batch_is_marked_and_its_halves_name_it(conn):
    batch = [JournalEntry(Kind.UPDATE, None, f"APP-{i}", UPDATE, batch_id="whole") for i in range(4)]
    journal.record_sent(conn, "run", batch)
    journal.record_split(conn, "run", batch, "MXInvalidFieldValueException: bad value (whole call)")
    half = [JournalEntry(Kind.UPDATE, None, "APP-0", UPDATE, batch_id="half")]
    journal.record_sent(conn, "run", half, parent_batch_id="whole")
    rows = conn.execute(
        "SELECT batch_id, status, parent_batch_id, error FROM push_journal WHERE source_id = 'APP-0' ORDER BY batch_id"
    ).fetchall()
    assert rows == [("half", "sent", "whole", None),
                    ("whole", "split", None, "MXInvalidFieldValueException: bad value (whole call)")]


def test_a_split_half_keeps_everything_but_its_batch_and_answer():
    """A create that meets an opportunity in a split half is the adoption its payload asks for,
    as it would have been in the whole batch."""
    whole = JournalEntry(Kind.CREATE, None, "APP-1", UPDATE, batch_id="whole", opportunity_id="OPP-1",
                         adoption=Adoption("keep", keep_owner=True), error="refused whole")
    whole.status = Sent.SPLIT
    half = whole.resent()
    assert (half.kind, half.source_id, half.payload, half.opportunity_id, half.adoption) == (
        whole.kind, whole.source_id, whole.payload, whole.opportunity_id, whole.adoption)
    assert (half.batch_id, half.status, half.error) == ("", Sent.SENT, None)
