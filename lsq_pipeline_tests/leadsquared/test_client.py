"""The client over real HTTP against the sandbox: splitting, order, partial failures, rate limit,
retries, no duplicates on lost answers, typed errors."""

from __future__ import annotations

import threading

import pytest
import requests

from lsq_pipeline.leadsquared import (
    ActivityAdd,
    AuthenticationError,
    LeadSquaredAPIError,
    NotFoundError,
    OpportunityUpdate,
    TransientError,
    fields_from_dict,
)
from lsq_pipeline_tests.leadsquared.conftest import (
    ACCESS_KEY,
    EVENT_CODE,
    LEAD_EMAILS,
    SECRET_KEY,
    capture,
    inspect,
    loan,
    make_client,
    opportunities_of,
    seed_leads,
)


def _update(opportunity_id: str, stage: str = "Under Review") -> OpportunityUpdate:
    return OpportunityUpdate(opportunity_id=opportunity_id, event_code=EVENT_CODE, fields=fields_from_dict({"mx_Custom_5": stage}))


def test_splits_at_25_and_2000_and_keeps_input_order(open_sandbox) -> None:
    with make_client(open_sandbox.url) as client:
        added = client.add_opportunities("EmailAddress", [loan(f"APP-{n}", LEAD_EMAILS[n % 3]) for n in range(60)])
        assert [result.ok for result in added] == [True] * 60
        ids = [result.opportunity_id for result in added]
        assert len(set(ids)) == 60
        held = {opp["mx_Custom_1"]: opp for opp in opportunities_of(open_sandbox)}
        for n, opportunity_id in enumerate(ids):  # the n-th result is the n-th item's opportunity
            assert held[f"APP-{n}"]["id"] == opportunity_id

        updated = client.update_opportunities([_update(opportunity_id) for opportunity_id in ids])
        assert all(result.ok for result in updated)
        assert [result.opportunity_id for result in updated] == ids

        unknown = [f"00000000-0000-0000-0000-{n:012d}" for n in range(4440)]
        wanted = unknown[:2000] + ids[::-1] + unknown[2000:]
        records = client.get_opportunities(EVENT_CODE, wanted, ["mx_Custom_1", "mx_Custom_5", "ModifiedOn"])
        assert [record.opportunity_id for record in records] == ids[::-1]
        assert all(record["mx_Custom_5"] == "Under Review" for record in records)

        stats = client.stats().per_endpoint
        assert (stats["bulk_add"].calls, stats["bulk_update"].calls, stats["get_by_ids"].calls) == (3, 3, 3)
        assert (stats["bulk_update"].items, stats["get_by_ids"].items) == (60, 4500)
    server_calls = inspect(open_sandbox, "stats")["Calls"]
    assert (server_calls["BulkAdd"], server_calls["BulkUpdate"], server_calls["GetOpportunitiesById"]) == (3, 3, 3)


def test_partial_failures_come_back_per_item_in_order(open_sandbox) -> None:
    with make_client(open_sandbox.url) as client:
        items = [loan(f"OK-{n}") for n in range(30)]
        items[3] = loan("NO-LEAD", "nobody@example.com")
        items[7] = loan("BAD-AMOUNT", mx_Custom_3="a lot")
        items[26] = loan("NO-COMMENT", Status="Won")
        items[28] = loan("SEED-0")  # duplicate of the seeded opportunity on lead 0
        results = client.add_opportunities("EmailAddress", items)
        failed = {n: result for n, result in enumerate(results) if not result.ok}
        assert sorted(failed) == [3, 7, 26]
        assert all(result.exception_type and result.exception_type.startswith("MX") for result in failed.values())
        assert results[28].already_existed and results[28].opportunity_id
        assert not any(result.already_existed for n, result in enumerate(results) if n != 28)

        good = [result.opportunity_id for result in results if result.ok]
        updates = [_update(opportunity_id) for opportunity_id in good[:10]]
        updates.insert(4, _update("11111111-2222-3333-4444-555555555555"))
        answers = client.update_opportunities(updates)
        assert [result.ok for result in answers] == [True] * 4 + [False] + [True] * 6
        assert answers[4].exception_type == "MXRecordNotFoundException"


def test_no_429_with_many_concurrent_callers(start_sandbox) -> None:
    server = start_sandbox(rate_limit_calls=10, rate_limit_seconds=1.0)
    with make_client(server.url, rate_limit_calls=10, rate_limit_seconds=1.0, max_in_flight=16) as client:
        seed_leads(client)
        errors: list[BaseException] = []

        def caller(n: int) -> None:
            try:
                # each caller: 2 calls of reads, all threads at once
                client.get_opportunities(EVENT_CODE, [f"{n}-{i}" for i in range(2001)], ["ModifiedOn"])
            except BaseException as error:  # noqa: BLE001
                errors.append(error)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(14)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        stats = client.stats()
        assert stats.calls == 3 + 28
        assert stats.rate_limited == 0
        assert stats.window_wait_seconds > 0
    assert inspect(server, "stats")["RateLimited"] == 0


@pytest.mark.parametrize("status", [429, 200])
def test_recovers_from_rate_limit_spent_by_another_client(status: int, start_sandbox) -> None:
    server = start_sandbox(rate_limit_calls=10, rate_limit_seconds=1.0, rate_limit_status=status)
    with make_client(server.url) as seeder:
        seed_leads(seeder)
    opportunity_ids = [opp["id"] for opp in opportunities_of(server)]
    with make_client(server.url, rate_limit_calls=10, rate_limit_seconds=1.0) as client:
        # another script of the same account spends the whole window
        for _ in range(10):
            requests.post(
                server.url + "/v2/OpportunityManagement.svc/GetOpportunitiesById",
                json={"SearchParameters": [{"EventCode": "12002", "ProspectActivityId": ["x"], "Columns": {"Include_CSV": "Owner"}}]},
                headers={"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY},
                timeout=5,
            )
        results = client.update_opportunities([_update(opportunity_ids[n % 3]) for n in range(75)])
        assert all(result.ok for result in results)
        stats = client.stats()
        assert stats.rate_limited >= 1
        assert stats.per_endpoint["bulk_update"].items == 75


def test_recovers_from_5xx_and_dropped_connections(start_sandbox) -> None:
    server = start_sandbox(fault_rate=0.35, seed=7)
    with make_client(server.url, max_retries=8) as client:
        seed_leads(client)
        added = client.add_opportunities("EmailAddress", [loan(f"F-{n}", LEAD_EMAILS[n % 3]) for n in range(100)])
        assert all(result.ok for result in added)
        ids = [result.opportunity_id for result in added]
        assert all(result.ok for result in client.update_opportunities([_update(i, "Approved") for i in ids]))
        records = client.get_opportunities(EVENT_CODE, ids, ["mx_Custom_5"])
        assert {record["mx_Custom_5"] for record in records} == {"Approved"} and len(records) == 100
        assert client.stats().retries > 0
    assert len(opportunities_of(server)) == 103


def test_lost_answers_on_creates_make_no_duplicate(start_sandbox) -> None:
    server = start_sandbox(lost_response_rate=0.5, seed=11)
    with make_client(server.url, max_retries=10) as client:
        seeded = client.capture_opportunities([capture(email, f"SEED-{n}") for n, email in enumerate(LEAD_EMAILS)])
        assert all(result.ok or result.outcome_unknown for result in seeded)
        seeded_leads = {lead["Fields"].get("EmailAddress") for lead in inspect(server, "leads")["Leads"]}
        missing = [email for email in LEAD_EMAILS if email not in seeded_leads]
        assert all(r.ok for r in client.capture_opportunities([capture(e, f"SEED-{e}") for e in missing]) or [])
        results = client.add_opportunities("EmailAddress", [loan(f"L-{n}", LEAD_EMAILS[n % 3]) for n in range(100)])
        captured = client.capture_opportunities([capture(f"new{n}@example.com", f"C-{n}") for n in range(10)])
        assert client.stats().retries > 0
    held = {opp["id"]: opp for opp in opportunities_of(server)}
    # Bulk Add: every lost answer resolved by the duplicate rule.
    assert all(result.ok for result in results)
    by_application: dict[str, list[str]] = {}
    for opportunity_id, opp in held.items():
        by_application.setdefault(opp["mx_Custom_1"], []).append(opportunity_id)
    for n, result in enumerate(results):
        assert by_application[f"L-{n}"] == [result.opportunity_id]
    # Capture: a lost answer is reported, never re-sent, so never a second opportunity.
    assert all(result.ok or result.outcome_unknown for result in captured)
    assert any(result.outcome_unknown for result in captured + seeded)
    for n, result in enumerate(captured):
        assert len(by_application.get(f"C-{n}", [])) <= 1
        if result.ok:
            assert by_application[f"C-{n}"] == [result.opportunity_id]


def test_lost_answers_on_activities_are_reported_not_resent(start_sandbox) -> None:
    server = start_sandbox(lost_response_rate=0.5, seed=3)
    with make_client(server.url, max_retries=10) as client:
        seed_leads(client, LEAD_EMAILS[:1])  # lost answers here are captures that landed
        opportunity_id = next(opp["id"] for opp in opportunities_of(server) if opp["mx_Custom_1"] == "SEED-0")
        meeting = ActivityAdd(activity_event=102, owner_email="sri.sudhan@example.com", note="Meeting completed")
        results = client.add_activities(opportunity_id, [meeting] * 200)
    unknown = [result for result in results if result.outcome_unknown]
    created = [result for result in results if result.ok]
    assert unknown and created and len(unknown) + len(created) == 200
    assert all(result.activity_id for result in created)
    posted = [a for a in _activities(server) if a["ActivityEvent"] == 102]
    assert len(created) <= len(posted) <= 200  # never more than sent: nothing re-sent


def test_typed_errors_are_not_retried(open_sandbox) -> None:
    with make_client(open_sandbox.url, secret_key="wrong-secret") as client:
        with pytest.raises(AuthenticationError, match="bulk_update: HTTP 401"):
            client.update_opportunities([_update("x")])
        assert client.stats().calls == 1
    with make_client(open_sandbox.url) as client:
        with pytest.raises(LeadSquaredAPIError) as raised:
            client.add_opportunities("NoSuchLeadField", [loan("E-1")])
        assert raised.value.exception_type and raised.value.exception_type.startswith("MX")
        assert "bulk_add: HTTP 500" in str(raised.value)
        assert client.stats().calls == 1
        assert client.stats().retries == 0
    with make_client(open_sandbox.url + "/no/such/api") as client:
        with pytest.raises(NotFoundError):
            client.update_opportunities([_update("x")])
        assert client.stats().calls == 1


def test_permanent_error_in_one_call_keeps_the_others_results(open_sandbox) -> None:
    with make_client(open_sandbox.url) as client:
        # A capture refused as a whole (500 MX) is that item's failed result; the others go on.
        bad = capture("bad@example.com", "X-1")
        bad.opportunity.overwrite_fields = True
        bad.opportunity.update_empty_fields = True
        results = client.capture_opportunities([capture("a@example.com", "X-0"), bad, capture("b@example.com", "X-2")])
        assert [result.ok for result in results] == [True, False, True]
        assert results[1].exception_type == "MXInvalidInputException"


def test_transient_exhaustion_raises_transient_error(start_sandbox) -> None:
    server = start_sandbox(fault_rate=1.0, seed=1)
    with make_client(server.url, max_retries=2) as client:
        with pytest.raises(TransientError, match="gave up after 3 attempts"):
            client.update_opportunities([_update("x")])
        assert client.stats().calls == 3


# --- helpers ----------------------------------------------------------------------------------


def _activities(server) -> list[dict]:
    return inspect(server, "activities")["Activities"]
