"""Generate -> extract -> transform -> plan on a small dirty data set: every raw row is accounted for."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.demo.generate import generate
from lsq_pipeline.steps.plan import plan_days
from lsq_pipeline.steps.transform import transform_days

START = date(2026, 11, 1)


def test_every_raw_row_is_accepted_rejected_or_superseded(conn, tmp_path: Path, mapping):
    generate(tmp_path / "source", 3000, 5, seed=5, start_day=START, dirty_rate=0.08)
    days = [START + timedelta(days=i) for i in range(5)]
    for day in days:
        extract_day(conn, tmp_path / "source", day)
    counts = transform_days(conn, days, mapping)
    assert counts["rejected"] > 100 and counts["superseded"] > 0 and counts["events_rejected"] > 0

    def one(sql: str) -> int:
        return conn.execute(sql).fetchone()[0]

    raw = one("SELECT count(*) FROM raw_applications")
    superseded = raw - one("""SELECT count(*) FROM (SELECT DISTINCT day, trim(application_id) FROM raw_applications
                                                  WHERE nullif(trim(application_id), '') IS NOT NULL)""") \
        - one("SELECT count(*) FROM raw_applications WHERE nullif(trim(application_id), '') IS NULL")
    rejected = one("SELECT count(DISTINCT (day, row_number)) FROM rejects WHERE source_file LIKE '%applications.csv'")
    accepted = one("SELECT count(*) FROM opportunity_records")
    assert accepted + rejected == raw - superseded
    assert (accepted, rejected, superseded) == (counts["accepted"], counts["rejected"], counts["superseded"])
    events_rejected = one("SELECT count(DISTINCT (day, row_number)) FROM rejects WHERE source_file LIKE '%events.csv'")
    assert one("SELECT count(*) FROM activity_records") + events_rejected == one("SELECT count(*) FROM raw_events")

    planned = plan_days(conn, days, mapping)
    assert planned["create"] == one("SELECT count(DISTINCT source_id) FROM opportunity_records")
    assert planned["activities"] == one("SELECT count(*) FROM activity_records")

    conn.execute("""INSERT INTO opportunity_state (source_id, opportunity_id, sent_hash, sent_fields, source_updated_at)
                    SELECT source_id, 'OPP-' || source_id, record_hash, full_fields, source_updated_at FROM sync_plan_payloads""")
    replanned = plan_days(conn, days, mapping)
    assert replanned["unchanged"] == planned["create"] and replanned["update"] == replanned["create"] == 0
