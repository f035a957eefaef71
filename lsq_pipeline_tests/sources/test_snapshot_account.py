"""A snapshot account (a table or query without day_column) in Dagster and on the command line: its
assets and jobs unpartitioned, its schedule one snapshot a tick, no file sensor and no first_day;
eager automation syncs it after its upstream asset materializes; `lsq-pipeline sync` runs a DuckDB
table's snapshot with no day (a second run sends nothing) and refuses days in one line."""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline.demo.project import DATA
from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.orchestration.jobs import PLAN_ASSETS, SEND_ASSETS
from lsq_pipeline.settings import AccountSettings, settings_from
from lsq_pipeline_tests.sources.dg_project import TeamProject

SOURCE = {"applications": {"table": "analytics.loan_applications", "database": "data/analytics.duckdb"},
          "events": {"table": "analytics.loan_events", "database": "data/analytics.duckdb"}}


def snapshot_account(root: Path, source: dict = SOURCE, **attributes) -> AccountSettings:
    """An account reading tables without day_column, and no first_day: a snapshot needs none."""
    return settings_from({"account": "acme", "sandbox": True, "root": root, "mapping": str(DATA / "mapping.yaml"),
                          "warehouse": "data/warehouse.duckdb", "source": source, **attributes})


def acme(name: str) -> dg.AssetKey:
    return dg.AssetKey(["acme", *name.split("/")])


def test_a_snapshot_accounts_assets_and_jobs_are_unpartitioned_and_its_schedule_requests_no_partition(tmp_path):
    defs = build_definitions(snapshot_account(tmp_path))
    graph = defs.resolve_asset_graph()
    for name in (*PLAN_ASSETS, *SEND_ASSETS, "source/applications", "source/events"):
        assert graph.get(acme(name)).partitions_def is None, name
    for job in ("sync_job", "dry_run_job", "retry_job"):
        assert defs.resolve_job_def(f"acme_{job}").partitions_def is None, job

    schedule = defs.resolve_schedule_def("acme_daily_sync_schedule")
    ticks = [dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, day, 3, tzinfo=dt.UTC),
                                       repository_def=defs.get_repository_def()) for day in (2, 3)]
    requests = [request for tick in ticks for request in schedule.evaluate_tick(tick).run_requests]
    assert len(requests) == 2 and all(request.partition_key is None for request in requests)
    assert requests[0].run_key != requests[1].run_key  # one snapshot a tick

    sensors = {sensor.name for sensor in defs.sensors}
    assert "acme_source_files_arrived" not in sensors  # no export files to watch
    assert {"acme_record_successful_runs", "acme_alert_on_failed_runs"} <= sensors
    assert graph.get(acme("source/applications")).freshness_policy is None  # nothing reports a table
    assert graph.get(acme("raw_applications")).freshness_policy is not None  # the extract's is what ages


def test_a_daily_table_account_keeps_its_partitions_and_needs_its_first_day(tmp_path):
    daily = {name: {**source, "day_column": "updated_at"} for name, source in SOURCE.items()}
    defs = build_definitions(snapshot_account(tmp_path, daily, first_day="2026-11-01"))
    assert defs.resolve_job_def("acme_sync_job").partitions_def is not None
    assert "acme_source_files_arrived" not in {sensor.name for sensor in defs.sensors}
    with pytest.raises(Exception, match="first_day is not set"):
        build_definitions(snapshot_account(tmp_path, daily))


def test_eager_syncs_a_snapshot_after_its_upstream_asset_materializes(tmp_path):
    """The applications come from an upstream asset, the events from a table nothing reports. Once
    synced (the first sync is launched by hand or by the schedule: eager never starts what was
    missing when it was turned on), each materialization of the upstream asset requests the sync."""
    source = {**SOURCE, "applications": {"asset": "loan_applications", "database": "data/analytics.duckdb"}}

    @dg.asset(name="loan_applications")
    def loan_applications() -> None:
        """Stands for the team's dbt model."""

    ours = build_definitions(snapshot_account(tmp_path, source, automation_condition="eager"))
    defs = dg.Definitions.merge(ours, dg.Definitions(assets=[loan_applications]))
    instance = dg.DagsterInstance.ephemeral()
    now = dt.datetime(2026, 11, 5, 12, tzinfo=dt.UTC)
    upstream, sync = dg.AssetKey("loan_applications"), [acme(name) for name in (*PLAN_ASSETS, *SEND_ASSETS)]

    def materialize(*keys: dg.AssetKey) -> None:
        for key in keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))

    def evaluate(cursor, minutes: int):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                 evaluation_time=now + dt.timedelta(minutes=minutes))

    materialize(upstream, *sync)  # dbt built the model, then the first sync
    first = evaluate(None, 0)
    second = evaluate(first.cursor, 1)
    assert first.total_requested == second.total_requested == 0  # nothing changed upstream
    materialize(upstream)
    third = evaluate(second.cursor, 2)
    requested = {key for key in sync if third.get_num_requested(key)}
    assert requested == set(sync) - {acme("raw_events")}, requested  # the extract reads both record sets
    materialize(*sync)
    assert evaluate(third.cursor, 3).total_requested == 0  # synced: nothing until the model changes again


@pytest.mark.timeout(300)
def test_the_command_line_refuses_days_for_a_snapshot_account_in_one_line(team):
    team.add_account("acme", {"applications": {"table": "loan_applications", "database": str(team.analytics)}})
    team.run("dg", "check", "defs")  # no first_day: a snapshot has no partitions
    for days in (["--partition", "2026-11-01"], ["--from", "2026-11-01", "--to", "2026-11-02"]):
        refused = team.sync("acme", *days, ok=False)
        assert refused.returncode == 2 and not refused.stdout
        [line] = refused.stderr.strip().splitlines()
        assert "acme" in line and "snapshot" in line and days[0] in line, line


def _analytics_tables(team: TeamProject) -> int:
    """Generated applications (each one's latest version: a snapshot holds a key once) and their
    events as typed tables in the team's analytics.duckdb; returns the applications."""
    exports = team.root / "exports"
    generate(exports, rows=20, days=1, seed=7, start_day=date(2026, 11, 1), dirty_rate=0.0)
    [day] = exports.iterdir()
    with duckdb.connect(str(team.analytics)) as conn:
        conn.execute(f"""CREATE TABLE loan_applications AS SELECT * FROM read_csv('{day / "applications.csv"}')
                         QUALIFY row_number() OVER (PARTITION BY application_id ORDER BY updated_at DESC) = 1""")
        conn.execute(f"CREATE TABLE loan_events AS SELECT * FROM read_csv('{day / 'events.csv'}')")
        return conn.execute("SELECT count(*) FROM loan_applications").fetchone()[0]


@pytest.mark.timeout(300)
def test_a_duckdb_table_snapshot_syncs_with_no_day_and_a_second_run_sends_nothing(team):
    rows = _analytics_tables(team)
    team.add_account("acme", {"applications": {"table": "loan_applications", "database": str(team.analytics)},
                              "events": {"table": "loan_events", "database": str(team.analytics)}})
    started = datetime.now(timezone.utc).date()
    first = team.sync("acme")
    ended = datetime.now(timezone.utc).date()
    assert first.stdout.startswith(f"snapshot  created {rows:4d}"), first.stdout
    assert team.statuses("acme") == {"in_sync": rows}
    [(day,)] = team.warehouse("acme", "SELECT DISTINCT day FROM opportunity_records")
    assert day in {started, ended}  # filed under the run's (UTC) day, even when the test crosses midnight

    before = team.writes("acme")
    again = team.sync("acme")
    assert team.writes("acme") == before  # nothing sent
    assert f"created    0  updated    0  unchanged {rows:4d}" in again.stdout, again.stdout
    assert team.statuses("acme") == {"in_sync": rows}

    history = team.run("lsq-pipeline", "history", "--account", "acme").stdout.strip().splitlines()
    assert len(history) == 3 and all("succeeded" in line for line in history[1:]), history
    assert "in_sync" in team.run("lsq-pipeline", "state", "--account", "acme").stdout
    nothing = team.run("lsq-pipeline", "retry", "--account", "acme", "--all-failed")
    assert "Nothing to retry" in nothing.stdout
