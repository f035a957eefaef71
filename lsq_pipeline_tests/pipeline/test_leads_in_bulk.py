"""Leads in bulk through the whole flow: new leads are created with Create Leads in Bulk, known
leads are not asked about, and a lead LeadSquared will not create falls back to Capture."""

from __future__ import annotations

import csv
from datetime import timedelta

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline

DAY2 = FIRST_DAY + timedelta(days=1)


def test_new_leads_are_created_in_bulk_then_known_ones_are_not_asked_about(make_pipeline):
    pipeline = make_pipeline(rows=160, days=1)
    assert pipeline.run(FIRST_DAY).success
    records = pipeline.scalar("SELECT count(DISTINCT source_id) FROM opportunity_records")
    calls = pipeline.stats()["Calls"]
    assert calls.get("LeadBulkCreate", 0) >= 2
    assert calls.get("Capture", 0) <= records - 100  # two bulk calls of 50 leads took part
    assert dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY ALL")) == {"in_sync": records}
    emails = [lead["Fields"]["EmailAddress"] for lead in pipeline.remote("leads")]
    assert len(emails) == len(set(emails)) == records
    push = pipeline.query("SELECT kind, status, count(*) FROM push_journal WHERE kind <> 'activity' GROUP BY ALL")
    assert {(kind, status) for kind, status, _ in push} <= {("create", "ok"), ("capture", "ok"), ("create", "failed")}

    # Day 2: a new application on a known lead's email, and one whose new lead has the phone of
    # another lead (LeadSquared will not create it: its record goes to Capture, which refuses it).
    with (pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv").open(newline="", encoding="utf-8") as f:
        day1 = list(csv.DictReader(f))
    known, phone_owner = day1[0], next(row for row in day1[1:] if row["phone"])
    stamp = {"created_at": "2026-11-02T09:00:00Z", "updated_at": "2026-11-02T09:00:00Z"}
    new_rows = [
        {**known, **stamp, "application_id": "APP-KNOWN-LEAD"},
        {**phone_owner, **stamp, "application_id": "APP-TAKEN-PHONE", "email": "someone.new@mail.example"},
    ]
    (pipeline.source_dir / DAY2.isoformat()).mkdir()
    with (pipeline.source_dir / DAY2.isoformat() / "applications.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(day1[0]))
        writer.writeheader()
        writer.writerows(new_rows)
    (pipeline.source_dir / DAY2.isoformat() / "events.csv").write_text(
        (pipeline.source_dir / FIRST_DAY.isoformat() / "events.csv").read_text(encoding="utf-8").splitlines()[0] + "\n",
        encoding="utf-8",
    )
    before = pipeline.stats()["Calls"]
    second = pipeline.run(DAY2)
    assert second.success
    after = pipeline.stats()["Calls"]
    assert after.get("LeadBulkCreate", 0) - before.get("LeadBulkCreate", 0) <= 1  # only the new email's lead
    journal = pipeline.query(
        "SELECT source_id, kind, status, error FROM push_journal WHERE run_id = $1 ORDER BY ALL", [second.run_id]
    )
    assert [(s, k, st) for s, k, st, _ in journal if s == "APP-KNOWN-LEAD"] == [("APP-KNOWN-LEAD", "create", "ok")]
    captured = [(st, e) for s, k, st, e in journal if s == "APP-TAKEN-PHONE" and k == "capture"]
    assert len(captured) == 1 and captured[0][0] == "failed" and "Phone" in captured[0][1]
    status, error = pipeline.query("SELECT status, error FROM opportunity_state WHERE source_id = 'APP-TAKEN-PHONE'")[0]
    assert status == "failed" and "Phone" in error
    assert "someone.new@mail.example" not in {lead["Fields"]["EmailAddress"] for lead in pipeline.remote("leads")}


def test_with_leads_in_bulk_off_a_missing_lead_goes_from_bulk_add_to_capture(tmp_path, sandbox, warehouse_target):
    source = tmp_path / "source"
    generate(source, rows=40, days=1, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    pipeline = Pipeline(source, warehouse_target, sandbox.url, leads_in_bulk=False)
    assert pipeline.run(FIRST_DAY).success
    records = pipeline.scalar("SELECT count(DISTINCT source_id) FROM opportunity_records")
    calls = pipeline.stats()["Calls"]
    assert "LeadBulkCreate" not in calls and calls["Capture"] == records
    assert calls["BulkAdd"] == -(-records // 25)  # every record tried Bulk Add first
    assert dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY ALL")) == {"in_sync": records}
