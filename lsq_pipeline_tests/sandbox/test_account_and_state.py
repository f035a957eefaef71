"""The account definition, the rate limiter's window and the journal, each on its own."""

from __future__ import annotations

import pytest

from lsq_pipeline.sandbox import AccountError, SandboxBackend, load_account
from lsq_pipeline.sandbox.account import STATUS_COMMENT_FIELD
from lsq_pipeline.sandbox.rate_limit import SlidingWindowLimiter
from lsq_pipeline_tests.sandbox.conftest import EXAMPLES_ACCOUNT, loan_row


def test_default_account_knows_the_pages_and_the_demo():
    account = load_account()
    assert {t.event_code for t in account.opportunity_types} >= {12000, 12001, 12002, 12003, 12114}
    assert {t.event_code for t in account.activity_types} >= {102, 208, 211}
    assert account.user_by_email("sri.sudhan@example.com").id == "d5d08e32-5ca9-11ea-8dd7-029e1407a868"
    assert account.user_by_id("96105aa0-61f2-11ea-8109-022edb41208c") is not None
    loan = account.opportunity_type(12002)
    assert loan.status_comments and loan.duplicate_rule == ["mx_Custom_1"]
    assert loan.field(STATUS_COMMENT_FIELD).max_length == 200
    assert [f.schema_name for f in loan.fields if f.mandatory] == ["mx_Custom_1", "mx_Custom_2", "mx_Custom_3"]
    assert account.leads == [] and account.opportunities == []
    assert account.unique_lead_fields == ["EmailAddress", "Phone", "Mobile"]


@pytest.mark.parametrize("text, key", [
    ("users: []", "users"),
    ("users: [{id: u, email: e}]\nopportunity_types: [{event_code: abc}]", "opportunity_types.0.event_code"),
    ("users: [{id: u, email: e}]\nopportunity_types: [{event_code: 1, fields: [{schema_name: a, data_type: Dropdown}]}]",
     "opportunity_types.0.fields.0"),
    ("users: [{id: u, email: e}]\nopportunity_types: [{event_code: 1, duplicate_rule: [mx_Custom_9]}]",
     "mx_Custom_9"),
    ("users: [{id: u, email: e}]\ncolour: blue", "colour"),
    ("users: [{id: u, email: e}]\nopportunities: [{id: o, lead_id: nobody, event_code: 1}]", "nobody"),
])
def test_invalid_account_names_the_key(tmp_path, text, key):
    path = tmp_path / "account.yaml"
    path.write_text(text)
    with pytest.raises(AccountError, match=key.replace(".", r"\.")):
        load_account(path)


def test_missing_account_file(tmp_path):
    with pytest.raises(AccountError, match="cannot read"):
        load_account(tmp_path / "none.yaml")


def test_sliding_window_log():
    now = [0.0]
    limiter = SlidingWindowLimiter(3, 5, clock=lambda: now[0])
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    now[0] = 4.9
    assert limiter.try_acquire() is False  # refused calls did not extend anything, the first 3 still count
    now[0] = 5.0
    assert limiter.try_acquire() is True and limiter.try_acquire() is True
    assert SlidingWindowLimiter(0, 5).try_acquire() is True


def test_journal_replays_and_skips_a_torn_last_line(tmp_path):
    state = tmp_path / "state.jsonl"
    backend = SandboxBackend(EXAMPLES_ACCOUNT, state)
    created = backend.bulk_add("EmailAddress", [loan_row()])["Response"][0]["ProspectOpportunityId"]
    backend.close()
    with state.open("a") as journal:
        journal.write('{"t": "opp", "v": {"id": "half')  # a crash mid-write
    again = SandboxBackend(EXAMPLES_ACCOUNT, state)
    assert created in again.opportunities and len(again.opportunities) == 6
    again.close()
    assert "half" not in state.read_text()  # compacted at start


def test_journal_holds_many_opportunities(tmp_path):
    state = tmp_path / "state.jsonl"
    backend = SandboxBackend(EXAMPLES_ACCOUNT, state)
    for batch in range(40):
        rows = [loan_row(app_id=f"B{batch}-{i}") for i in range(25)]
        assert all(r["OpportunityCreated"] for r in backend.bulk_add("EmailAddress", rows)["Response"])
    backend.close()
    assert len(SandboxBackend(EXAMPLES_ACCOUNT, state).opportunities) == 5 + 1000


def test_a_call_counts_at_its_arrival_even_when_asked_about_late():
    """Threads reach the window out of arrival order: each call is judged at its own arrival, and
    a call asked about after a later one shares a window with it."""
    limiter = SlidingWindowLimiter(2, 5, clock=lambda: 100.0)
    assert limiter.try_acquire(at=10.0) and limiter.try_acquire(at=12.0)
    assert limiter.try_acquire(at=11.0) is False  # 10.0 and 12.0 are within 5 s of it
    assert limiter.try_acquire(at=15.5) is True  # its window (10.5, 15.5] holds 12.0 only
    assert limiter.try_acquire(at=16.0) is False  # 12.0 and 15.5
    assert limiter.try_acquire(at=17.1) is True  # 12.0 has left: 15.5 alone


def test_a_call_asked_about_late_is_refused_only_when_one_window_would_hold_too_many():
    """A late-judged call between two bursts more than a window apart fits when no single window
    holds it and a full burst: the server counts arrivals, not the order threads reach it."""
    limiter = SlidingWindowLimiter(3, 5, clock=lambda: 100.0)
    for at in (10.0, 10.1, 15.4, 15.5):
        assert limiter.try_acquire(at=at)
    # (10.0..15.5) spans more than 5 s: windows holding 12.0 hold 10.0, 10.1 or 15.4, 15.5, never all four.
    assert limiter.try_acquire(at=12.0) is True
    assert limiter.try_acquire(at=12.5) is False  # (7.5, 12.5] now holds 10.0, 10.1 and 12.0
