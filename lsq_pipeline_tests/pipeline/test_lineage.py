"""Lineage from the export files to LeadSquared, the way Dagster shows it: the export files as
observed csv assets, LeadSquared's opportunities and activities as assets of the reconcile step
with the mapping's column schema and column lineage, and a green run whose ERROR check failed
alerting like a failed one."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import dagster as dg

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.test_history import receiver  # noqa: F401 - a fixture

PATH = ["source/applications", "raw_applications", "opportunity_records", "sync_plan", "leadsquared/opportunities",
        "opportunity_state"]


def table_named(pipeline, table: str) -> str:
    """How Dagster names a warehouse table: the DuckDB file's stem or the PostgreSQL database, then its schema."""
    if pipeline.settings().warehouse_location().on_postgres:
        return f"{urlsplit(str(pipeline.warehouse)).path.strip('/')}.public.{table}"
    return f"warehouse.main.{table}"


def test_the_graph_runs_from_the_export_file_to_leadsquared_with_column_lineage(make_pipeline, warehouse_backend):
    pipeline = make_pipeline(rows=5)
    graph = pipeline.definitions().resolve_asset_graph()
    for upstream, downstream in zip(PATH, PATH[1:]):
        node = graph.get(dg.AssetKey.from_user_string(downstream))
        assert dg.AssetKey.from_user_string(upstream) in node.parent_keys, (upstream, downstream)
    opportunities = graph.get(dg.AssetKey(["leadsquared", "opportunities"]))
    assert opportunities.kinds == {"leadsquared", "push"}
    [amount] = opportunities.metadata["dagster/column_lineage"].deps_by_column["mx_Custom_3"]
    assert (amount.asset_key, amount.column_name) == (dg.AssetKey("raw_applications"), "amount")
    columns = {c.name: c for c in opportunities.metadata["dagster/column_schema"].columns}
    assert columns["mx_Custom_3"].type == "number" and columns["mx_Custom_3"].tags == {"owner": "source"}
    assert columns["Owner"].type == "user"
    activities = graph.get(dg.AssetKey(["leadsquared", "activities"]))
    assert "ActivityEvent" in activities.metadata["dagster/column_lineage"].deps_by_column
    source = graph.get(dg.AssetKey(["source", "applications"]))
    assert source.kinds == {"csv", "source"} and not source.is_materializable and source.freshness_policy is not None
    assert graph.get(dg.AssetKey("opportunity_state")).kinds == {warehouse_backend, "reconcile", "leadsquared"}
    assert {node.group_name for node in graph.asset_nodes} == {"default"}  # one group per account
    assert graph.get(dg.AssetKey("raw_events")).metadata["dagster/table_name"] == table_named(pipeline, "raw_events")


def test_the_push_step_materializes_leadsquared_and_the_checks_read_it_back(make_pipeline):
    pipeline = make_pipeline(rows=20)
    result = pipeline.run(FIRST_DAY)
    assert result.success
    pushed = {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
              for m in result.asset_materializations_for_node("push")}
    assert set(pushed) == {"leadsquared/opportunities", "leadsquared/activities"}
    accepted = pipeline.scalar("SELECT count(*) FROM opportunity_state WHERE status = 'in_sync'")
    assert pushed["leadsquared/opportunities"]["run_created"] == accepted == len(pipeline.remote())
    assert pushed["leadsquared/activities"]["run_activities_created"] == len(pipeline.remote("activities"))
    [state] = result.asset_materializations_for_node("opportunity_state")
    assert state.metadata["table_total_opportunities_held"].value == accepted
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()
              if e.asset_key == dg.AssetKey(["leadsquared", "opportunities"])}
    assert set(checks) == {"one_opportunity_per_record", "pushed_records_in_sync"}
    assert all(check.passed for check in checks.values())


def test_each_export_file_is_reported_once_per_version_by_the_arrival_sensor(make_pipeline):
    pipeline = make_pipeline(rows=10, days=2)
    pipeline.overrides = {"file_settle_seconds": 0}  # reported as soon as seen (settling: test_file_sensor)
    defs = pipeline.definitions()
    sensor = defs.resolve_sensor_def("source_files_arrived")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    def tick(cursor):
        context = dg.build_sensor_context(instance=pipeline.instance, cursor=cursor, repository_def=defs.get_repository_def(),
                                          resources={"default_source": defs.resources["default_source"]})
        return sensor.evaluate_tick(context)

    first = tick(None)
    reported = {(e.asset_key.to_user_string(), e.partition): e.metadata for e in first.asset_events}
    assert set(reported) == {(f"source/{name}", day) for name in ("applications", "events")
                             for day in (FIRST_DAY.isoformat(), "2026-11-02")}
    path = pipeline.source_dir / FIRST_DAY.isoformat() / "events.csv"
    assert reported[("source/events", FIRST_DAY.isoformat())]["size_bytes"].value == path.stat().st_size
    assert not tick(first.cursor).asset_events  # nothing new
    later = time.time() + 5
    os.utime(path, (later, later))
    [again] = tick(first.cursor).asset_events
    assert (again.asset_key, again.partition) == (dg.AssetKey(["source", "events"]), FIRST_DAY.isoformat())


def test_a_green_run_whose_error_check_failed_alerts_and_is_recorded_as_check_failed(
    make_pipeline, receiver, monkeypatch  # noqa: F811 - the fixture
):
    url, received = receiver
    monkeypatch.setenv("LSQ_TEST_ALERT_WEBHOOK", url)
    pipeline = make_pipeline(rows=20)
    pipeline.overrides = {"alert_webhook_env": "LSQ_TEST_ALERT_WEBHOOK"}
    assert pipeline.run(FIRST_DAY).success
    with pipeline.settings().warehouse_location().connect() as conn:  # the last record claims the first one's opportunity
        [(claimed,)] = conn.execute(
            """UPDATE opportunity_state SET opportunity_id = (
                   SELECT arg_min(opportunity_id, source_id) FROM opportunity_state WHERE opportunity_id IS NOT NULL)
               WHERE source_id = (SELECT max(source_id) FROM opportunity_state WHERE opportunity_id IS NOT NULL)"""
        ).fetchall()
    assert claimed == 1
    result = pipeline.run(FIRST_DAY)
    assert result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "one_opportunity_per_record"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name="record_successful_runs", dagster_event=success, dagster_instance=pipeline.instance,
        dagster_run=pipeline.instance.get_run_by_id(result.run_id),
    )
    pipeline.definitions().resolve_sensor_def("record_successful_runs")(context)
    [(status, reason)] = pipeline.query("SELECT status, reason FROM sync_runs WHERE run_id = $1", [result.run_id])
    assert status == "check_failed" and "one_opportunity_per_record" in reason
    [alert] = received
    assert alert["run_id"] == result.run_id and alert["status"] == "check_failed"
