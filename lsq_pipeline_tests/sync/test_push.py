"""The push without Dagster: a warehouse (a DuckDB file, and a PostgreSQL database), the sandbox
over real HTTP, the demo mapping. Creates,
updates and activities land once, the journal and the state say so, a re-run sends nothing, and a
call refused whole is split down to its bad row."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from lsq_pipeline.leadsquared import LeadSquaredClient
from lsq_pipeline.sandbox.account import SeedLead, load_account
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from lsq_pipeline.warehouse.connection import Warehouse
from lsq_pipeline.steps.extract import extract_days
from lsq_pipeline.steps.plan import plan_days
from lsq_pipeline.steps.push.push import Pusher, PushSummary
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.schema import ensure_schema
from lsq_pipeline_tests.sync.conftest import DAY, good_application, good_event, write_day

APPLICATIONS = [
    good_application(application_id=f"APP-{n}", email=f"applicant{n}@mail.example", applicant_name=name,
                     phone=f"+91 98765 4321{n}")
    for n, name in enumerate(["Asha Nair", "Ravi Kumar", "Meena Iyer", "Kabir Shah"], start=1)
]
EVENTS = [good_event(event_id="EVT-1", application_id="APP-1"),
          good_event(event_id="EVT-2", application_id="APP-2", event_type="meeting_held", detail="")]


def _push(warehouse: Warehouse, source: Path, mapping, url: str, days: list[date],
          leads_in_bulk: bool = True) -> PushSummary:
    """Extract, transform and plan `days` from `source`, then push them as one run."""
    with warehouse.connect() as conn:
        ensure_schema(conn)
        extract_days(conn, source, days)
        transform_days(conn, days, mapping)
        plan_days(conn, days, mapping)
    client = LeadSquaredClient(url, SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, rate_limit_calls=0,
                               backoff_base=0.01, backoff_max=0.05)
    with client:
        return Pusher(warehouse.connect, client, mapping, uuid.uuid4().hex, leads_in_bulk=leads_in_bulk).push(days)


def _query(warehouse: Warehouse, sql: str) -> list[tuple]:
    with warehouse.connect() as conn:
        return conn.execute(sql).fetchall()


def _remote(url: str, what: str) -> list[dict]:
    answer = requests.get(f"{url}/sandbox/{what}", timeout=10,
                          headers={"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": SANDBOX_SECRET_KEY})
    answer.raise_for_status()
    return answer.json()[what.capitalize()]


def _by_source(url: str) -> dict[str, dict]:
    """The sandbox's opportunities by the source id they carry (mx_Custom_1); one each, asserted."""
    opportunities = _remote(url, "opportunities")
    by_source = {o["Fields"]["mx_Custom_1"]: o for o in opportunities}
    assert len(by_source) == len(opportunities), "a record got two opportunities"
    return by_source


@pytest.mark.timeout(120)
def test_creates_updates_and_activities_land_once_and_a_rerun_sends_nothing(tmp_path, warehouse, mapping, sandbox):
    write_day(tmp_path / "source", DAY, APPLICATIONS, EVENTS)
    first = _push(warehouse, tmp_path / "source", mapping, sandbox.url, [DAY])

    assert (first.created + first.captured, first.already_existed, first.failed) == (4, 0, 0), first.errors
    assert (first.activities_created, first.activities_failed, first.records_waiting) == (2, 0, 0)
    remote = _by_source(sandbox.url)
    assert sorted(remote) == ["APP-1", "APP-2", "APP-3", "APP-4"]
    assert remote["APP-1"]["Fields"]["mx_Custom_3"] == "2500000"
    state = dict(_query(warehouse, "SELECT source_id, (status, lower(opportunity_id)) FROM opportunity_state"))
    assert state == {s: ("pending", o["ProspectOpportunityId"].lower()) for s, o in remote.items()}
    journal = _query(warehouse, "SELECT kind, status, source_id FROM push_journal WHERE kind IN ('create', 'capture')")
    assert sorted(source for _, status, source in journal if status == "ok") == ["APP-1", "APP-2", "APP-3", "APP-4"]
    assert {status for _, status, _ in journal} <= {"ok", "failed"}  # a Bulk Add row without a lead went to Capture
    activities = _query(warehouse, "SELECT event_id, status, opportunity_id FROM activity_state ORDER BY event_id")
    assert activities == [("EVT-1", "created", remote["APP-1"]["ProspectOpportunityId"]),
                          ("EVT-2", "created", remote["APP-2"]["ProspectOpportunityId"])]
    credit_check = json.loads(_query(warehouse, "SELECT payload FROM push_journal WHERE event_id = 'EVT-1'")[0][0])
    assert credit_check == {"ActivityEvent": 211, "ActivityOwnerEmail": "priya.sharma@lendco.example",
                            "ActivityNote": "Score pulled", "Fields": [{"SchemaName": "mx_Custom_1", "Value": "742"}]}
    assert len(_remote(sandbox.url, "activities")) == 2

    journal_rows = len(_query(warehouse, "SELECT * FROM push_journal"))
    again = _push(warehouse, tmp_path / "source", mapping, sandbox.url, [DAY])
    assert again.writes == again.failed == again.lead_calls == 0
    assert len(_query(warehouse, "SELECT * FROM push_journal")) == journal_rows
    assert len(_remote(sandbox.url, "activities")) == 2 and _by_source(sandbox.url).keys() == remote.keys()

    later = DAY + timedelta(days=1)
    changed = {**APPLICATIONS[1], "amount": "900000", "updated_at": "2026-11-02T09:00:00+05:30"}
    write_day(tmp_path / "source", later, [changed])
    update = _push(warehouse, tmp_path / "source", mapping, sandbox.url, [later])
    assert (update.updated, update.created + update.captured, update.failed) == (1, 0, 0)
    assert _by_source(sandbox.url)["APP-2"]["Fields"]["mx_Custom_3"] == "900000"
    [(payload,)] = _query(warehouse, "SELECT payload FROM push_journal WHERE kind = 'update' AND status = 'ok'")
    payload = json.loads(payload)
    assert payload["ProspectOpportunityId"] == remote["APP-2"]["ProspectOpportunityId"]
    sent = {field["SchemaName"]: field["Value"] for field in payload["Fields"]}
    assert sent["mx_Custom_3"] == "900000" and "mx_Custom_1" not in sent and "mx_Custom_4" not in sent


def _account_with_short_names(emails: list[str]):
    """The default account with Applicant Name (mx_Custom_4) at most 12 characters, and the leads."""
    account = load_account()
    types = [t.model_copy(update={"fields": [f.model_copy(update={"max_length": 12}) if f.schema_name == "mx_Custom_4"
                                             else f for f in t.fields]}) if t.event_code == 12002 else t
             for t in account.opportunity_types]
    leads = [SeedLead(id=str(uuid.uuid4()), fields={"EmailAddress": email}) for email in emails]
    return account.model_copy(update={"opportunity_types": types, "leads": leads})


@pytest.mark.timeout(120)
def test_a_call_refused_whole_is_split_down_to_its_bad_row(tmp_path, warehouse, mapping, start_sandbox):
    rows = [*APPLICATIONS, good_application(application_id="APP-9", email="applicant9@mail.example",
                                            applicant_name="Parvathi Subramaniam", phone="+91 98765 43219")]
    write_day(tmp_path / "source", DAY, rows)
    account = _account_with_short_names([row["email"] for row in rows])
    # The terse profile refuses a whole Bulk Add for one bad value.
    sandbox = start_sandbox(account=account, profile="terse")
    summary = _push(warehouse, tmp_path / "source", mapping, sandbox.url, [DAY], leads_in_bulk=False)
    remote = _by_source(sandbox.url)

    assert sorted(remote) == ["APP-1", "APP-2", "APP-3", "APP-4"]
    # One Bulk Add of APP-1..4 and APP-9 refused whole: halves of 2 (landed) and 3 (refused), of
    # 1 (landed) and 2 (refused), of 1 and 1: APP-9 alone is refused, its own failure.
    assert (summary.created, summary.failed, summary.split_calls) == (4, 1, 3)
    [(status, error)] = _query(warehouse, "SELECT status, error FROM opportunity_state WHERE source_id = 'APP-9'")
    assert status == "failed" and "mx_Custom_4" in error
    journal = _query(warehouse, "SELECT batch_id, parent_batch_id, source_id, status FROM push_journal")
    split = {batch for batch, _, _, status in journal if status == "split"}
    assert len(split) == 3 and all(status != "sent" for *_, status in journal)
    halves = {batch: parent for batch, parent, _, _ in journal if parent is not None}
    assert len(halves) == 6 and set(halves.values()) == split
    finals = sorted((source, status) for _, _, source, status in journal if status in ("ok", "failed"))
    assert finals == [("APP-1", "ok"), ("APP-2", "ok"), ("APP-3", "ok"), ("APP-4", "ok"), ("APP-9", "failed")]
