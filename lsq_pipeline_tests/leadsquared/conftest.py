"""Fixtures for the client tests: a sandbox with leads, over real HTTP, and helpers to seed and inspect a sandbox."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from lsq_pipeline.leadsquared import CaptureRequest, LeadSquaredClient, OpportunityAdd, fields_from_dict
from lsq_pipeline.sandbox import RunningSandbox

ACCESS_KEY = "sandbox-access-key"
SECRET_KEY = "sandbox-secret-key"
EVENT_CODE = 12002
"""The demo's Loan Application type: duplicate rule on mx_Custom_1, status comments on."""
LEAD_EMAILS = [f"applicant{n}@example.com" for n in range(3)]


def make_client(url: str, **options: Any) -> LeadSquaredClient:
    options.setdefault("rate_limit_calls", 0)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_max", 0.05)
    options.setdefault("max_in_flight", 8)
    return LeadSquaredClient(url, options.pop("access_key", ACCESS_KEY), options.pop("secret_key", SECRET_KEY), **options)


def inspect(server: Any, what: str) -> Any:
    """GET /sandbox/<what> (opportunities, stats, activities, leads)."""
    response = requests.get(
        f"{server.url}/sandbox/{what}",
        headers={"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def opportunities_of(server: Any) -> list[dict]:
    """Every opportunity the sandbox holds, flattened: {"id", "lead_id", <field>: <value>...}."""
    return [
        {**opp["Fields"], "id": opp["ProspectOpportunityId"], "lead_id": opp["ProspectId"]}
        for opp in inspect(server, "opportunities")["Opportunities"]
    ]


def loan(application_id: str, email: str = LEAD_EMAILS[0], **extra: Any) -> OpportunityAdd:
    """A valid Bulk Add item of the demo type."""
    values = {"mx_Custom_1": application_id, "mx_Custom_2": "Home Loan", "mx_Custom_3": "250000", **extra}
    return OpportunityAdd(search_by_value=email, event_code=EVENT_CODE, fields=fields_from_dict(values))


def capture(email: str, application_id: str) -> CaptureRequest:
    return CaptureRequest.model_validate(
        {
            "LeadDetails": [
                {"Attribute": "EmailAddress", "Value": email},
                {"Attribute": "FirstName", "Value": "Test"},
                {"Attribute": "SearchBy", "Value": "EmailAddress"},
            ],
            "Opportunity": {
                "OpportunityEventCode": EVENT_CODE,
                "Fields": fields_from_dict({"mx_Custom_1": application_id, "mx_Custom_2": "Auto Loan", "mx_Custom_3": "90000"}),
            },
        }
    )


def seed_leads(client: LeadSquaredClient, emails: list[str] = LEAD_EMAILS) -> None:
    """Create the leads (each with one opportunity `SEED-<n>`) through Capture. The client does
    not re-send a capture of unknown outcome; these tests' sandbox (documented profile) applies
    the duplicate rule to Capture, so sending it again here answers the one that landed."""
    pending = dict(enumerate(emails))
    for _ in range(10):
        results = client.capture_opportunities([capture(email, f"SEED-{n}") for n, email in pending.items()])
        assert all(result.ok or result.outcome_unknown for result in results), results
        pending = {n: email for (n, email), result in zip(pending.items(), results) if not result.ok}
        if not pending:
            return
    raise AssertionError(f"could not seed {pending}")


@pytest.fixture
def open_sandbox(start_sandbox) -> RunningSandbox:
    """A sandbox without rate limit, with three leads."""
    server = start_sandbox()
    with make_client(server.url) as client:
        seed_leads(client)
    return server
