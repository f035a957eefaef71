"""The whole flow against the sandbox over real HTTP, on a real DuckDB file and on a real
PostgreSQL database."""

from __future__ import annotations

import json
from datetime import timedelta

import requests

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import rewrite_rows

DAY2 = FIRST_DAY + timedelta(days=1)
DAY3 = FIRST_DAY + timedelta(days=2)


def accepted_ids(pipeline) -> set[str]:
    return {row[0] for row in pipeline.query("SELECT DISTINCT source_id FROM opportunity_records")}


def journal_of(pipeline, result) -> list[tuple]:
    return pipeline.query(
        "SELECT kind, status, source_id, payload FROM push_journal WHERE run_id = $1", [result.run_id]
    )


def test_first_run_creates_second_updates_only_what_changed_third_sends_nothing(make_pipeline):
    pipeline = make_pipeline(rows=40, days=1)
    first = pipeline.run(FIRST_DAY)
    assert first.success
    ids = accepted_ids(pipeline)
    assert len(ids) >= 30
    remote = pipeline.remote_by_source()
    assert set(remote) == ids
    assert all(len(opportunities) == 1 for opportunities in remote.values())
    states = dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))
    assert states == {"in_sync": len(ids)}

    # Change one application's amount in the export, with a newer updated_at.
    changed_id = sorted(ids)[0]

    def bump(row):
        if row["application_id"] == changed_id:
            row["amount"] = "123456"
            row["updated_at"] = "2026-11-01T23:59:00Z"
        return row

    rewrite_rows(pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv", bump)
    calls_before = pipeline.stats()
    second = pipeline.run(FIRST_DAY)
    assert second.success
    sent = journal_of(pipeline, second)
    assert [(kind, status, source_id) for kind, status, source_id, _ in sent] == [("update", "ok", changed_id)]
    sent_fields = {f["SchemaName"] for f in json.loads(sent[0][3])["Fields"]}
    assert sent_fields == {"mx_Custom_3", "mx_Custom_7"}
    assert pipeline.remote_by_source()[changed_id][0]["Fields"]["mx_Custom_3"] == "123456"
    assert pipeline.scalar("SELECT status FROM opportunity_state WHERE source_id = $1", [changed_id]) == "in_sync"

    third = pipeline.run(FIRST_DAY)
    assert third.success
    assert journal_of(pipeline, third) == []
    calls_after = pipeline.stats()
    writes = ("BulkAdd", "BulkUpdate", "Capture", "BulkActivities")
    third_writes = {name: calls_after["Calls"].get(name, 0) - calls_before["Calls"].get(name, 0) for name in writes}
    assert third_writes == {"BulkAdd": 0, "BulkUpdate": 1, "Capture": 0, "BulkActivities": 0}
    assert len(pipeline.remote()) == len(ids)


def test_range_backfill_is_one_run_and_ends_with_latest_versions(make_pipeline):
    pipeline = make_pipeline(rows=90, days=3)
    result = pipeline.run(FIRST_DAY, DAY3)
    assert result.success
    ids = accepted_ids(pipeline)
    remote = pipeline.remote_by_source()
    assert set(remote) == ids and all(len(v) == 1 for v in remote.values())
    latest = pipeline.query(
        """SELECT source_id, fields FROM opportunity_records
           QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY source_updated_at DESC, day DESC) = 1"""
    )
    for source_id, fields in latest:
        held = remote[source_id][0]["Fields"]
        for name, value in json.loads(fields).items():
            if name != "mx_Custom_19":
                assert held.get(name) == value, (source_id, name)
    assert pipeline.scalar("SELECT count(*) FROM opportunity_state WHERE status = 'in_sync'") == len(ids)


def test_days_out_of_order_never_push_an_older_version(make_pipeline):
    pipeline = make_pipeline(rows=90, days=3)
    assert pipeline.run(DAY3).success
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.run(DAY2).success
    remote = pipeline.remote_by_source()
    assert all(len(v) == 1 for v in remote.values())
    latest = dict(
        pipeline.query(
            """SELECT source_id, fields FROM opportunity_records
               QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY source_updated_at DESC, day DESC) = 1"""
        )
    )
    for source_id, fields in latest.items():
        assert remote[source_id][0]["Fields"]["mx_Custom_7"] == json.loads(fields)["mx_Custom_7"], source_id
    stale = pipeline.scalar("SELECT count(*) FROM sync_plan WHERE action = 'stale'")
    assert stale > 0


def test_dirty_rows_are_rejected_with_field_and_reason(make_pipeline):
    pipeline = make_pipeline(rows=120, days=1, dirty_rate=0.3)
    assert pipeline.run(FIRST_DAY).success
    rejects = pipeline.query("SELECT source_id, field, reason FROM rejects")
    assert len(rejects) >= 10
    assert all(field and reason for _, field, reason in rejects)
    rejected_only = {
        row[0]
        for row in pipeline.query("SELECT source_id FROM opportunity_state WHERE status = 'rejected'")
    }
    assert rejected_only
    assert not rejected_only & set(pipeline.remote_by_source())
    for source_id in rejected_only:
        error = pipeline.scalar("SELECT error FROM opportunity_state WHERE source_id = $1", [source_id])
        assert ":" in error  # "<field>: <reason>"


def test_drift_behind_the_pipelines_back_is_found_by_a_full_reconcile(make_pipeline):
    pipeline = make_pipeline(rows=20, days=1)
    assert pipeline.run(FIRST_DAY).success
    source_id, opportunity_id = pipeline.query(
        "SELECT source_id, opportunity_id FROM opportunity_state ORDER BY source_id LIMIT 1"
    )[0]
    edit = requests.post(
        f"{pipeline.sandbox_url}/sandbox/opportunities/{opportunity_id}",
        json={"Fields": {"mx_Custom_3": "1"}},
        headers=pipeline.key_headers(),
        timeout=10,
    )
    assert edit.status_code == 200
    result = pipeline.run(FIRST_DAY, full=True)
    assert result.success
    status, drift = pipeline.query(
        "SELECT status, drift_fields FROM opportunity_state WHERE source_id = $1", [source_id]
    )[0]
    assert status == "drifted" and drift == ["mx_Custom_3"]
    checks = {
        evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()
    }
    assert checks["pushed_records_in_sync"] is False
    assert checks["one_opportunity_per_record"] is True


def test_dry_run_plans_and_sends_nothing(make_pipeline):
    pipeline = make_pipeline(rows=30, days=1)
    result = pipeline.run(FIRST_DAY, job="dry_run_job")
    assert result.success
    assert pipeline.scalar("SELECT count(*) FROM sync_plan WHERE action = 'create'") == len(accepted_ids(pipeline))
    assert pipeline.remote() == []
    assert sum(pipeline.stats()["Calls"].values()) == 0


def test_a_refused_record_is_not_resent_until_its_source_changes(make_pipeline):
    pipeline = make_pipeline(rows=20, days=1)
    applications = pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv"
    import csv

    rows = list(csv.DictReader(applications.open(encoding="utf-8")))
    first, second = rows[0], next(r for r in rows[1:] if r["email"] != rows[0]["email"])
    # Two new leads with one phone: LeadSquared refuses the second lead (phone is a unique field).
    rewrite_rows(applications, lambda r: {**r, "phone": first["phone"]} if r["application_id"] == second["application_id"] else r)
    assert pipeline.run(FIRST_DAY).success
    failed = pipeline.query(
        "SELECT source_id, error FROM opportunity_state WHERE status = 'failed' AND source_id IN ($1, $2)",
        [first["application_id"], second["application_id"]],
    )
    assert len(failed) == 1 and "Phone" in failed[0][1]
    refused_id = failed[0][0]

    before = pipeline.stats()
    again = pipeline.run(FIRST_DAY)
    assert again.success
    assert pipeline.scalar("SELECT count(*) FROM sync_plan WHERE action = 'refused'") == 1
    assert journal_of(pipeline, again) == []
    assert pipeline.stats()["TotalCalls"] - before["TotalCalls"] == 0

    rewrite_rows(applications, lambda r: {**r, "phone": "+91-9000000001", "updated_at": "2026-11-01T23:30:00Z"}
                 if r["application_id"] == refused_id else r)
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.scalar("SELECT status FROM opportunity_state WHERE source_id = $1", [refused_id]) == "in_sync"
    assert len(pipeline.remote_by_source()[refused_id]) == 1
