"""Sync modes (upsert, update_only, create_only) and per-field ownership (owner: crm, on_drift:
repair), over real HTTP against the sandbox: what the plan, LeadSquared and the state table show."""

from __future__ import annotations

import json

import requests
import yaml

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import MAPPING, Pipeline, rewrite_rows

NEWER = "2026-11-01T23:30:00Z"  # a later version of a first-day record


def with_mapping(pipeline: Pipeline, change) -> Pipeline:
    """The pipeline with the demo mapping changed by `change(opportunity_section)`."""
    data = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    change(data["opportunity"])
    folder = pipeline.source_dir.parent  # the test's own, whichever warehouse it runs on
    path = folder / f"mapping-{len(list(folder.glob('mapping-*')))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    pipeline.mapping = path
    return pipeline


def set_mode(mode: str):
    return lambda opportunity: opportunity.update(mode=mode)


def set_field(name: str, **spec: str):
    return lambda opportunity: opportunity["fields"][name].update(spec)


def change_source(pipeline: Pipeline, source_id: str, **values: str) -> None:
    """A later version of one record in the first day's export (`updated_at` is mapped too)."""
    applications = pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv"
    rewrite_rows(applications, lambda row: {**row, "updated_at": NEWER, **values}
                 if row["application_id"] == source_id else row)


def edit_in_leadsquared(pipeline: Pipeline, opportunity_id: str, fields: dict[str, str]) -> None:
    """A person changes the opportunity in LeadSquared, behind the pipeline's back."""
    answer = requests.post(f"{pipeline.sandbox_url}/sandbox/opportunities/{opportunity_id}",
                           json={"Fields": fields}, headers=pipeline.key_headers(), timeout=10)
    assert answer.status_code == 200


def one_record(pipeline: Pipeline) -> tuple[str, str]:
    return pipeline.query("SELECT source_id, opportunity_id FROM opportunity_state "
                          "WHERE status = 'in_sync' ORDER BY source_id LIMIT 1")[0]


def remote_fields(pipeline: Pipeline, source_id: str) -> dict[str, str]:
    [opportunity] = pipeline.remote_by_source()[source_id]
    return opportunity["Fields"]


def write_calls(pipeline: Pipeline) -> int:
    calls = pipeline.stats()["Calls"]
    return sum(count for endpoint, count in calls.items() if "Get" not in endpoint)


def test_update_only_never_creates_and_says_why(make_pipeline):
    pipeline = with_mapping(make_pipeline(rows=20, days=1), set_mode("update_only"))
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.remote() == [] and write_calls(pipeline) == 0
    plan = pipeline.query("SELECT DISTINCT action, reason FROM sync_plan")
    assert plan == [("skipped", "mode update_only: no opportunity for this record, and this mode never creates")]
    states = pipeline.query("SELECT DISTINCT status, error, opportunity_id FROM opportunity_state")
    assert states == [("skipped", plan[0][1], None)]

    # Created once under upsert, a record's later version is updated under update_only.
    with_mapping(pipeline, set_mode("upsert"))
    assert pipeline.run(FIRST_DAY).success
    source_id, _ = one_record(pipeline)
    with_mapping(pipeline, set_mode("update_only"))
    change_source(pipeline, source_id, amount="123456")
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.scalar("SELECT action FROM sync_plan WHERE source_id = $1", [source_id]) == "update"
    assert remote_fields(pipeline, source_id)["mx_Custom_3"] == "123456"
    assert pipeline.scalar("SELECT status FROM opportunity_state WHERE source_id = $1", [source_id]) == "in_sync"


def test_create_only_never_updates_and_says_why(make_pipeline):
    pipeline = with_mapping(make_pipeline(rows=20, days=1), set_mode("create_only"))
    assert pipeline.run(FIRST_DAY).success
    created = len(pipeline.remote())
    assert created > 0 and pipeline.scalar("SELECT count(*) FROM sync_plan WHERE action = 'create'") == created
    source_id, _ = one_record(pipeline)
    sent_amount = remote_fields(pipeline, source_id)["mx_Custom_3"]
    change_source(pipeline, source_id, amount="123456")
    before = write_calls(pipeline)

    dry = pipeline.run(FIRST_DAY, job="dry_run_job")
    assert dry.success
    assert pipeline.query("SELECT action, reason FROM sync_plan WHERE source_id = $1", [source_id]) == [
        ("skipped", "mode create_only: the opportunity exists, and this mode never updates")]
    planned = dry.asset_materializations_for_node("sync_plan")[0].metadata
    assert planned["planned_skipped"].value == 1 and planned["mode"].value == "create_only"

    assert pipeline.run(FIRST_DAY).success
    assert write_calls(pipeline) == before
    assert remote_fields(pipeline, source_id)["mx_Custom_3"] == sent_amount
    assert pipeline.query("SELECT status, error FROM opportunity_state WHERE source_id = $1", [source_id]) == [
        ("skipped", "mode create_only: the opportunity exists, and this mode never updates")]


def test_a_field_the_crm_owns_is_sent_on_create_only_and_never_drifts(make_pipeline):
    pipeline = with_mapping(make_pipeline(rows=20, days=1), set_field("mx_Custom_3", owner="crm"))
    assert pipeline.run(FIRST_DAY).success
    source_id, opportunity_id = one_record(pipeline)
    sent = json.loads(pipeline.scalar("SELECT sent_fields FROM opportunity_state WHERE source_id = $1", [source_id]))
    assert remote_fields(pipeline, source_id)["mx_Custom_3"] == sent["mx_Custom_3"]  # sent on create

    edit_in_leadsquared(pipeline, opportunity_id, {"mx_Custom_3": "999"})  # the sales team's figure
    updated_at = pipeline.scalar("SELECT source_updated_at FROM opportunity_state WHERE source_id = $1", [source_id])
    # Only the CRM-owned field changed (same version time: updated_at is a mapped field too).
    change_source(pipeline, source_id, amount="123456", updated_at=updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    before = write_calls(pipeline)
    assert pipeline.run(FIRST_DAY, full=True).success
    assert pipeline.scalar("SELECT action FROM sync_plan WHERE source_id = $1", [source_id]) == "unchanged"
    assert write_calls(pipeline) == before
    state = pipeline.query("SELECT status, drift_fields, drift FROM opportunity_state WHERE source_id = $1",
                           [source_id])[0]
    assert state == ("in_sync", [], None)

    change_source(pipeline, source_id, amount="123456", stage="Approved")  # a source-owned field changes too
    assert pipeline.run(FIRST_DAY).success
    payload = json.loads(pipeline.scalar("SELECT fields FROM sync_plan WHERE source_id = $1", [source_id]))
    assert "mx_Custom_3" not in payload and payload["mx_Custom_5"] == "Approved"
    held = remote_fields(pipeline, source_id)
    assert held["mx_Custom_3"] == "999" and held["mx_Custom_5"] == "Approved"
    state = pipeline.query("SELECT status, sent_fields->>'mx_Custom_3' FROM opportunity_state WHERE source_id = $1",
                           [source_id])[0]
    assert state == ("in_sync", sent["mx_Custom_3"])  # what was sent, not the source's unsent value


def test_repair_sends_a_changed_field_again_and_report_keeps_the_details(make_pipeline):
    pipeline = with_mapping(make_pipeline(rows=20, days=1), set_field("mx_Custom_4", on_drift="repair"))
    assert pipeline.run(FIRST_DAY).success
    repaired_id, repaired_opportunity = one_record(pipeline)
    reported_id, reported_opportunity = pipeline.query(
        "SELECT source_id, opportunity_id FROM opportunity_state WHERE status = 'in_sync' AND source_id <> $1 "
        "ORDER BY source_id LIMIT 1", [repaired_id])[0]
    name_sent = remote_fields(pipeline, repaired_id)["mx_Custom_4"]
    product_sent = remote_fields(pipeline, reported_id)["mx_Custom_2"]
    edit_in_leadsquared(pipeline, repaired_opportunity, {"mx_Custom_4": "Someone Else"})
    edit_in_leadsquared(pipeline, reported_opportunity, {"mx_Custom_2": "Gold Loan"})

    result = pipeline.run(FIRST_DAY, full=True)
    assert result.success
    assert remote_fields(pipeline, repaired_id)["mx_Custom_4"] == name_sent  # sent again
    assert remote_fields(pipeline, reported_id)["mx_Custom_2"] == "Gold Loan"  # reported, left alone
    status, drift, repaired = pipeline.query(
        "SELECT status, drift, repaired_fields FROM opportunity_state WHERE source_id = $1", [repaired_id])[0]
    assert status == "pending" and repaired == ["mx_Custom_4"]
    detail = json.loads(drift)["mx_Custom_4"]
    assert detail["sent"] == name_sent and detail["held"] == "Someone Else" and detail["modified_on"]
    status, drift, fields = pipeline.query(
        "SELECT status, drift, drift_fields FROM opportunity_state WHERE source_id = $1", [reported_id])[0]
    assert status == "drifted" and fields == ["mx_Custom_2"]
    assert json.loads(drift)["mx_Custom_2"]["sent"] == product_sent
    assert json.loads(drift)["mx_Custom_2"]["held"] == "Gold Loan"
    metadata = result.asset_materializations_for_node("opportunity_state")[0].metadata
    assert metadata["run_repaired"].value == 1 and metadata["run_drifted"].value == 1
    assert "Someone Else" in metadata["run_drift_details"].value and "Gold Loan" in metadata["run_drift_details"].value

    assert pipeline.run(FIRST_DAY).success  # the next run reads the repaired row back
    assert pipeline.query("SELECT status, drift, repaired_fields FROM opportunity_state WHERE source_id = $1",
                          [repaired_id])[0] == ("in_sync", None, ["mx_Custom_4"])
