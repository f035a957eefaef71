"""Create Leads in Bulk and Create or Update Leads in Bulk, over HTTP against the sandbox: one
outcome per call whatever the answer's shape, lost answers re-sent without a second lead, and the
leads then found by Bulk Add."""

from __future__ import annotations

import pytest

from lsq_pipeline.leadsquared import LeadAttribute
from lsq_pipeline_tests.leadsquared.conftest import inspect, loan, make_client


def leads_by_email(server) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for lead in inspect(server, "leads")["Leads"]:
        grouped.setdefault(lead["Fields"]["EmailAddress"].lower(), []).append(lead)
    return grouped


@pytest.mark.parametrize("profile", ["documented", "terse"])
def test_creates_50_a_call_one_outcome_per_call_and_bulk_add_finds_the_leads(profile, start_sandbox) -> None:
    emails = [f"bulk{n}@example.com" for n in range(120)]
    server = start_sandbox(profile=profile)
    with make_client(server.url) as client:
        outcomes = client.create_leads([{"EmailAddress": email, "FirstName": f"N{n}"} for n, email in enumerate(emails)])
        assert [(o.status, o.first, o.count) for o in outcomes] == [("answered", 0, 50), ("answered", 50, 50), ("answered", 100, 20)]
        assert inspect(server, "stats")["Calls"]["LeadBulkCreate"] == 3
        held = leads_by_email(server)
        assert set(held) == set(emails) and all(len(leads) == 1 for leads in held.values())
        results = client.add_opportunities("EmailAddress", [loan(f"APP-{n}", email) for n, email in enumerate(emails)])
        assert all(result.ok and not result.already_existed for result in results)


def test_a_lead_sent_again_is_not_created_again(start_sandbox) -> None:
    server = start_sandbox()
    with make_client(server.url) as client:
        lead = [LeadAttribute(attribute="EmailAddress", value="again@example.com"), LeadAttribute(attribute="Phone", value="+91-9876543210")]
        assert client.create_leads([lead])[0].status == "answered"
        again = client.create_leads([lead, {"EmailAddress": "AGAIN@example.com"}, {"EmailAddress": "other@example.com"}])
        assert [o.status for o in again] == ["answered"]  # the sandbox refuses the known lead row by row
        assert {email: len(leads) for email, leads in leads_by_email(server).items()} == {"again@example.com": 1, "other@example.com": 1}


def test_lost_answers_are_re_sent_and_no_lead_is_doubled(start_sandbox) -> None:
    emails = [f"lost{n}@example.com" for n in range(400)]
    server = start_sandbox(lost_response_rate=0.5, seed=7)
    with make_client(server.url, max_retries=8) as client:
        outcomes = client.create_leads([{"EmailAddress": email} for email in emails])
        stats = inspect(server, "stats")
        assert stats["LostResponses"] > 0 and client.stats().retries > 0
        assert stats["Calls"]["LeadBulkCreate"] > len(outcomes) == 8  # re-sent after lost answers
        held = leads_by_email(server)
        assert all(len(leads) == 1 for leads in held.values())
        answered = {n for o in outcomes if o.status == "answered" for n in range(o.first, o.first + o.count)}
        assert {emails[n] for n in answered} <= set(held)


def test_leads_refused_row_by_row_or_unanswered_are_reported_not_raised(start_sandbox) -> None:
    server = start_sandbox()
    with make_client(server.url) as client:
        # The sandbox refuses such leads row by row (undocumented): the call is answered.
        outcomes = client.create_leads([{"FirstName": "No unique field"}, {"EmailAddress": "ok@example.com"}])
        assert [(o.status, o.count) for o in outcomes] == [("answered", 2)]
        assert list(leads_by_email(server)) == ["ok@example.com"]
    server = start_sandbox(fault_rate=1.0, seed=3)
    with make_client(server.url, max_retries=2) as client:
        outcomes = client.create_leads([{"EmailAddress": f"f{n}@example.com"} for n in range(60)])
        assert [(o.status, o.first, o.count) for o in outcomes] == [("unknown", 0, 50), ("unknown", 50, 10)]
        assert all(o.exception_type == "TransientError" and "gave up" in o.exception_message for o in outcomes)


def test_create_or_update_matches_on_search_by_and_updates(start_sandbox) -> None:
    server = start_sandbox()
    with make_client(server.url) as client:
        assert client.create_leads([{"EmailAddress": "up@example.com", "FirstName": "Old"}])[0].status == "answered"
        leads = [{"EmailAddress": "up@example.com", "FirstName": "New"}] + [{"EmailAddress": f"u{n}@example.com"} for n in range(30)]
        outcomes = client.create_or_update_leads(leads, search_by="EmailAddress")
        assert [(o.status, o.count) for o in outcomes] == [("answered", 25), ("answered", 6)]
        held = leads_by_email(server)
        assert len(held) == 31 and held["up@example.com"][0]["Fields"]["FirstName"] == "New"
