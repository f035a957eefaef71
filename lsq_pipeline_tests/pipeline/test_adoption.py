"""Adoption: the mapping's `on_existing` and `keep_owner` against the sandbox's rules for
OverwriteFields, UpdateEmptyFields and DoNotChangeOwner, over real HTTP. Opportunities made before
this tool (created here with the client, straight in the sandbox) meet the sync's creates; what
LeadSquared holds afterwards, the state (`in_sync`, no drift) and a later source change (an
ordinary update of the changed fields only) are checked; `keep` also with lost answers."""

from __future__ import annotations

import csv
import json

import pytest

from lsq_pipeline.leadsquared import LeadSquaredClient
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline
from lsq_pipeline_tests.pipeline.test_modes_and_ownership import change_source, with_mapping

SALES_OWNER = "96105aa0-61f2-11ea-8109-022edb41208c"  # george.bailey@example.com: a user the export never names
ASKED_BEFORE = "111111"  # the amount sales entered in LeadSquared before this tool


def applications(pipeline: Pipeline) -> list[dict[str, str]]:
    """The first day's applications, one row per application id (its last)."""
    path = pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return list({row["application_id"]: row for row in csv.DictReader(handle)}.values())


def made_before_this_tool(pipeline: Pipeline, records: list[dict[str, str]]) -> None:
    """Opportunities of these records made in LeadSquared by hand, before any sync: their lead (by
    email), the application id the duplicate rule matches on, an amount of their own, the owner
    sales assigned; applicant name (mx_Custom_4) and stage (mx_Custom_5) left empty."""
    with LeadSquaredClient(pipeline.sandbox_url, SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, rate_limit_calls=0) as client:
        for _ in range(10):  # a sandbox that loses answers: capture again those not there yet
            missing = [record for record in records if record["application_id"] not in pipeline.remote_by_source()]
            if not missing:
                break
            client.capture_opportunities([
                {"LeadDetails": [{"Attribute": "EmailAddress", "Value": record["email"].strip().lower()},
                                 {"Attribute": "SearchBy", "Value": "EmailAddress"}],
                 "Opportunity": {"OpportunityEventCode": 12002, "Fields": [
                     {"SchemaName": "mx_Custom_1", "Value": record["application_id"]},
                     {"SchemaName": "mx_Custom_2", "Value": "Education Loan"},
                     {"SchemaName": "mx_Custom_3", "Value": ASKED_BEFORE},
                     {"SchemaName": "Owner", "Value": SALES_OWNER}]}}
                for record in missing])
    assert sorted(held(pipeline)) == sorted(record["application_id"] for record in records)


def adoption_mapping(on_existing: str | None, keep_owner: bool | None):
    def change(opportunity: dict) -> None:
        if on_existing is not None:
            opportunity["on_existing"] = on_existing
        if keep_owner is not None:
            opportunity["keep_owner"] = keep_owner
    return change


def source_fields(pipeline: Pipeline, source_id: str) -> dict[str, str]:
    return json.loads(pipeline.scalar(
        "SELECT fields FROM opportunity_records WHERE source_id = $1 ORDER BY source_updated_at DESC LIMIT 1",
        [source_id]))


def held(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    """source id -> the fields of its one opportunity in LeadSquared (fails on a doubled one)."""
    grouped = pipeline.remote_by_source()
    assert all(len(opportunities) == 1 for opportunities in grouped.values()), "an opportunity was doubled"
    return {source_id: opportunities[0]["Fields"] for source_id, opportunities in grouped.items()}


def assert_all_in_sync(pipeline: Pipeline) -> None:
    assert pipeline.query("SELECT DISTINCT status FROM opportunity_state") == [("in_sync",)]
    assert pipeline.scalar("SELECT count(*) FROM opportunity_state WHERE drift IS NOT NULL "
                           "OR len(coalesce(drift_fields, [])) > 0") == 0


# on_existing, keep_owner -> (amount, applicant name, owner) an adopted opportunity holds: its own ("before"),
# the source's ("source"), or none ("empty").
ADOPTIONS = {
    ("overwrite", False): ("source", "source", "source"),  # the default: today's behaviour
    ("overwrite", True): ("source", "source", "before"),
    ("fill_empty", False): ("before", "source", "before"),  # the owner was not empty
    ("fill_empty", True): ("before", "source", "before"),
    ("keep", False): ("before", "empty", "before"),
}


@pytest.mark.parametrize(("on_existing", "keep_owner"), list(ADOPTIONS))
def test_a_create_meeting_an_opportunity_made_before_follows_the_mapping(make_pipeline, on_existing, keep_owner):
    pipeline = with_mapping(make_pipeline(rows=16, days=1), adoption_mapping(on_existing, keep_owner))
    records = applications(pipeline)
    adopted = [record["application_id"] for record in records[:4]]
    made_before_this_tool(pipeline, records[:4])

    assert pipeline.run(FIRST_DAY).success
    opportunities = held(pipeline)
    assert len(opportunities) == len(records)
    expected = dict(zip(("mx_Custom_3", "mx_Custom_4", "Owner"), ADOPTIONS[on_existing, keep_owner]))
    before = {"mx_Custom_3": ASKED_BEFORE, "mx_Custom_4": None, "Owner": SALES_OWNER}
    for source_id in adopted:
        source = source_fields(pipeline, source_id)
        for name, whose in expected.items():
            want = {"source": source[name], "before": before[name], "empty": None}[whose]
            assert opportunities[source_id].get(name) == want, (source_id, name, whose)
    for record in records[4:]:  # created by the sync: the source's values, whatever on_existing says
        source_id = record["application_id"]
        assert opportunities[source_id]["mx_Custom_3"] == source_fields(pipeline, source_id)["mx_Custom_3"]
    # What LeadSquared holds after the adoption is the baseline: nothing is drift.
    assert_all_in_sync(pipeline)
    adoptions = pipeline.query("SELECT source_id, on_existing, keep_owner, kept_fields FROM opportunity_adoption "
                               "ORDER BY source_id")
    if (on_existing, keep_owner) == ("overwrite", False):
        assert adoptions == []  # what LeadSquared holds is what was sent, as before these options
    else:
        assert [row[:3] for row in adoptions] == [(source_id, on_existing, keep_owner) for source_id in sorted(adopted)]
        for source_id, _, _, kept in adoptions:
            kept = json.loads(kept)
            assert {name for name, whose in expected.items() if whose != "source"} <= set(kept)
            assert all(opportunities[source_id].get(name, "") == value for name, value in kept.items())
    # The same export again: nothing to send, nothing drifts.
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.query("SELECT DISTINCT action FROM sync_plan") == [("unchanged",)]
    assert_all_in_sync(pipeline)

    # A later change in the source goes out as an ordinary update of the changed fields only.
    source_id = adopted[0]
    change_source(pipeline, source_id, amount="4242")
    assert pipeline.run(FIRST_DAY).success
    [payload] = [json.loads(row[0]) for row in pipeline.query(
        "SELECT payload FROM push_journal WHERE kind = 'update' AND source_id = $1", [source_id])]
    assert sorted(field["SchemaName"] for field in payload["Fields"]) == ["mx_Custom_3", "mx_Custom_7"]
    after = held(pipeline)[source_id]
    assert after["mx_Custom_3"] == "4242"
    assert after.get("mx_Custom_4") == opportunities[source_id].get("mx_Custom_4")
    assert after["Owner"] == opportunities[source_id]["Owner"]
    assert_all_in_sync(pipeline)
    if adoptions:
        kept = json.loads(pipeline.scalar("SELECT kept_fields FROM opportunity_adoption WHERE source_id = $1",
                                          [source_id]))
        assert "mx_Custom_3" not in kept  # the source's again


def test_a_field_changed_in_leadsquared_after_the_adoption_is_drift(make_pipeline):
    from lsq_pipeline_tests.pipeline.test_modes_and_ownership import edit_in_leadsquared

    pipeline = with_mapping(make_pipeline(rows=6, days=1), adoption_mapping("keep", None))
    records = applications(pipeline)
    made_before_this_tool(pipeline, records[:1])
    assert pipeline.run(FIRST_DAY).success
    source_id = records[0]["application_id"]
    opportunity_id = pipeline.scalar("SELECT opportunity_id FROM opportunity_state WHERE source_id = $1", [source_id])
    edit_in_leadsquared(pipeline, opportunity_id, {"mx_Custom_3": "999"})
    assert pipeline.run(FIRST_DAY, full=True).success
    status, drift = pipeline.query("SELECT status, drift FROM opportunity_state WHERE source_id = $1", [source_id])[0]
    assert status == "drifted"
    assert json.loads(drift)["mx_Custom_3"]["sent"] == ASKED_BEFORE  # the baseline: what LeadSquared kept
    assert json.loads(drift)["mx_Custom_3"]["held"] == "999"


def unanswered_journal_rows(pipeline: Pipeline) -> list[tuple[str, str, str, dict]]:
    """(source id, kind, status, flags) of every create and Capture, in the order they were sent."""
    rows = pipeline.query("""SELECT source_id, kind, status, error, payload FROM push_journal
                             WHERE kind IN ('create', 'capture') ORDER BY sent_at, batch_id""")
    return [(source_id, kind, status, error, json.loads(payload)) for source_id, kind, status, error, payload in rows]


def lost(status: str, error: str | None) -> bool:
    """A journal row whose answer never came: the create may have landed."""
    return status in ("unknown", "sent") or (
        status == "failed" and (error or "").split(":")[0] in ("TransientError", "RateLimitedError"))


def test_keep_with_lost_answers_adopts_and_resolves_our_own_creates_with_overwrite(tmp_path, start_sandbox,
                                                                                   warehouse_target):
    losing_sandbox = start_sandbox(lost_response_rate=0.3, seed=7)
    source = tmp_path / "source"
    generate(source, rows=40, days=1, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    # Without leads in bulk every new record goes Bulk Add (no lead) -> Capture, whose lost answers
    # are never re-sent: the record goes back to Bulk Add, a create of our own.
    pipeline = Pipeline(source_dir=source, warehouse=warehouse_target, sandbox_url=losing_sandbox.url,
                        leads_in_bulk=False, overrides={"max_attempts": 10, "retry_backoff_seconds": 0.01})
    with_mapping(pipeline, adoption_mapping("keep", True))
    records = applications(pipeline)
    before = [record["application_id"] for record in records[::3]]
    made_before_this_tool(pipeline, records[::3])

    for _ in range(6):  # a record whose answers were all lost is failed (retryable) and sent by the next run
        pipeline.run(FIRST_DAY)
        if pipeline.query("SELECT DISTINCT status FROM opportunity_state") == [("in_sync",)]:
            break
    assert pipeline.stats()["LostResponses"] > 0
    assert_all_in_sync(pipeline)
    opportunities = held(pipeline)
    assert len(opportunities) == len(records)

    unanswered: set[str] = set()
    resolved_as_ours = 0
    for source_id, kind, status, error, payload in unanswered_journal_rows(pipeline):
        flags = payload["Opportunity"] if kind == "capture" else payload
        # A create after an unanswered one of the same record is ours: OverwriteFields, whatever on_existing says.
        ours = source_id in unanswered
        assert flags["OverwriteFields"] is ours, (source_id, kind, status)
        assert flags.get("DoNotChangeOwner") is (None if ours else True)
        resolved_as_ours += ours and status == "ok"
        if lost(status, error):
            unanswered.add(source_id)
    assert resolved_as_ours > 0
    adopted = pipeline.query("SELECT source_id FROM opportunity_adoption WHERE kept_fields::VARCHAR <> '{}'")
    for source_id in before:
        source = source_fields(pipeline, source_id)
        if source_id in unanswered:  # our own create may have met it: resolved with OverwriteFields
            assert opportunities[source_id]["mx_Custom_3"] == source["mx_Custom_3"]
            assert opportunities[source_id]["Owner"] == source["Owner"]
        else:  # adopted (lost answers re-sent by the client with the same flags): kept as it was, owner included
            assert opportunities[source_id]["mx_Custom_3"] == ASKED_BEFORE
            assert opportunities[source_id]["Owner"] == SALES_OWNER
            assert (source_id,) in adopted
    for record in records:  # the others hold the source's values, however their answers went
        source_id = record["application_id"]
        if source_id not in before:
            assert opportunities[source_id]["mx_Custom_3"] == source_fields(pipeline, source_id)["mx_Custom_3"]
            assert (source_id,) not in adopted


def test_a_create_whose_answer_was_lost_is_ours_whatever_on_existing_says(tmp_path, start_sandbox, warehouse_target):
    """Decided up front: an unanswered create in the journal makes the record's next create ours
    (OverwriteFields), even if that lost create had met an opportunity made before this tool."""
    sandbox = start_sandbox(seed=3)
    source = tmp_path / "source"
    generate(source, rows=8, days=1, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    pipeline = Pipeline(source_dir=source, warehouse=warehouse_target, sandbox_url=sandbox.url,
                        overrides={"max_retries": 1, "retry_backoff_seconds": 0.01})
    with_mapping(pipeline, adoption_mapping("keep", None))
    records = applications(pipeline)
    made_before_this_tool(pipeline, records[:2])
    options = sandbox.server.options
    sandbox.server.options = options.model_copy(update={"lost_response_rate": 1.0, "fault_endpoints": ["BulkAdd"]})
    pipeline.run(FIRST_DAY)  # every Bulk Add is carried out, and its answer lost
    sandbox.server.options = options
    first = {source_id: (status, flags) for source_id, _, status, error, flags in unanswered_journal_rows(pipeline)
             if lost(status, error)}
    assert {record["application_id"] for record in records[:2]} <= set(first)
    assert all(flags["OverwriteFields"] is False for _, flags in first.values())
    # The lost creates met the opportunities made before and kept them ...
    assert all(held(pipeline)[record["application_id"]]["mx_Custom_3"] == ASKED_BEFORE for record in records[:2])

    assert pipeline.run(FIRST_DAY).success
    # ... but the next create cannot know that: ours, with OverwriteFields, the source's values.
    for record in records[:2]:
        source_id = record["application_id"]
        creates = [flags for sid, _, status, _, flags in unanswered_journal_rows(pipeline)
                   if sid == source_id and status == "ok"]
        assert [flags["OverwriteFields"] for flags in creates] == [True]
        assert held(pipeline)[source_id]["mx_Custom_3"] == source_fields(pipeline, source_id)["mx_Custom_3"]
    assert_all_in_sync(pipeline)
    assert pipeline.query("SELECT * FROM opportunity_adoption") == []
