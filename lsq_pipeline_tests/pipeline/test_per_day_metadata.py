"""A range backfill is one run, yet each day's materialization carries that day's own figures:
exactly one materialization per asset per day, the days differ where the days differ and sum to
the run's totals; run-wide figures are named run_*, whole-table ones table_total_*."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import dagster as dg

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY

DAYS = [FIRST_DAY + timedelta(days=n) for n in range(3)]


def test_a_three_day_backfill_gives_each_day_its_own_counts(make_pipeline):
    pipeline = make_pipeline(rows=60, days=3, dirty_rate=0.05)
    result = pipeline.run(DAYS[0], DAYS[-1])
    assert result.success
    events = [e.event_specific_data.materialization for e in result.all_events
              if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    by_key = Counter((m.asset_key.to_user_string(), m.partition) for m in events)
    assert set(by_key.values()) == {1}  # one materialization per asset per day
    assert {day for _, day in by_key} == {day.isoformat() for day in DAYS}

    def figures(asset: str) -> dict[str, dict[str, object]]:
        return {m.partition: {k: v.value for k, v in m.metadata.items()} for m in events
                if m.asset_key == dg.AssetKey.from_user_string(asset)}

    for table in ("raw_applications", "opportunity_records", "rejects", "sync_plan"):
        rows = dict(pipeline.query(f"SELECT CAST(day AS VARCHAR), count(*) FROM {table} GROUP BY ALL"))
        assert {day: f["dagster/row_count"] for day, f in figures(table).items()} == {
            day.isoformat(): rows.get(day.isoformat(), 0) for day in DAYS}, table

    plan = figures("sync_plan")
    creates = [plan[day.isoformat()]["planned_create"] for day in DAYS]
    assert len(set(creates)) > 1 and sum(creates) == pipeline.scalar("SELECT count(*) FROM sync_plan WHERE action = 'create'")

    pushed = figures("leadsquared/opportunities")
    succeeded = [pushed[day.isoformat()]["succeeded_create"] + pushed[day.isoformat()]["succeeded_capture"] for day in DAYS]
    assert sum(succeeded) == pipeline.scalar("SELECT count(*) FROM opportunity_state WHERE status = 'in_sync'")
    assert len(set(succeeded)) > 1
    assert {f["run_api_calls"] for f in pushed.values()} == {pushed[DAYS[0].isoformat()]["run_api_calls"]}
    assert sum(f["errors"] for f in pushed.values()) == pipeline.scalar(
        "SELECT count(*) FROM sync_errors WHERE run_id = $1", [result.run_id])
    activities = figures("leadsquared/activities")
    assert sum(f["succeeded_activity"] for f in activities.values()) == len(pipeline.remote("activities"))

    state = figures("opportunity_state")
    assert all("dagster/row_count" not in f and f["table_total_rows"] == pipeline.scalar(
        "SELECT count(*) FROM opportunity_state") for f in state.values())
    # ... and where the records of each day (their latest version) stand: every status counted, the
    # days summing to the table.
    statuses = dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))
    for status in ("in_sync", "rejected", "pending", "failed"):
        assert sum(f[f"day_{status}"] for f in state.values()) == statuses.get(status, 0), status
    assert len({f["day_in_sync"] for f in state.values()}) > 1
