"""Export files and automation: `source_files_arrived` reports a file, CSV or Parquet, once it has
settled (a day with both is skipped, saying why), and with
`automation_condition: eager` a day is requested once both its files are reported, a late export of
an older day included; the automation sensor ships off and tags its runs as the account's."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb

from lsq_pipeline.orchestration.assets import ACCOUNT_TAG
from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import MAPPING

SETTLE = 0.5


def account(source_dir, **attributes) -> dg.Definitions:
    return build_definitions(AccountSettings(
        source_dir=str(source_dir), mapping=str(MAPPING), file_settle_seconds=SETTLE, sandbox=True,
        first_day=FIRST_DAY.isoformat(), **attributes))


def tick(defs: dg.Definitions, instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def(),
                                      resources={"default_source": defs.resources["default_source"]})
    result = defs.resolve_sensor_def("source_files_arrived").evaluate_tick(context)
    return result, result.cursor


def one_watched_day(make_pipeline, tmp_path):
    """A generated day, and an empty export folder for it that the account watches."""
    pipeline = make_pipeline(rows=10, days=1)
    day = FIRST_DAY.isoformat()
    watched = tmp_path / "incoming"
    (watched / day).mkdir(parents=True)
    return pipeline, day, watched, account(watched)


def test_a_file_is_reported_once_it_has_settled_and_again_once_a_change_settles(make_pipeline, tmp_path):
    pipeline, day, watched, defs = one_watched_day(make_pipeline, tmp_path)
    shutil.copy(pipeline.source_dir / day / "applications.csv", watched / day)

    result, cursor = tick(defs, pipeline.instance, None)
    assert not result.asset_events and f"{day}/applications.csv" in result.skip_message  # just arrived: settling
    time.sleep(SETTLE + 0.1)
    result, cursor = tick(defs, pipeline.instance, cursor)
    [reported] = result.asset_events
    assert (reported.asset_key, reported.partition) == (dg.AssetKey(["source", "applications"]), day)
    result, cursor = tick(defs, pipeline.instance, cursor)
    assert not result.asset_events and "no new or changed export file" in result.skip_message

    path = watched / day / "applications.csv"
    path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    result, cursor = tick(defs, pipeline.instance, cursor)
    assert not result.asset_events, "a changed file settles again before it is reported"
    time.sleep(SETTLE + 0.1)
    result, _ = tick(defs, pipeline.instance, cursor)
    [again] = result.asset_events
    assert again.metadata["size_bytes"].value == path.stat().st_size


def as_parquet(csv_path, parquet_path) -> None:
    duckdb.execute(f"COPY (SELECT * FROM read_csv('{csv_path}')) TO '{parquet_path}' (FORMAT parquet)")


def test_a_day_exported_as_parquet_is_reported_with_its_path_and_size_once_settled(make_pipeline, tmp_path):
    pipeline, day, watched, defs = one_watched_day(make_pipeline, tmp_path)
    for name in ("applications", "events"):
        as_parquet(pipeline.source_dir / day / f"{name}.csv", watched / day / f"{name}.parquet")

    result, cursor = tick(defs, pipeline.instance, None)
    assert not result.asset_events and f"{day}/applications.parquet" in result.skip_message
    assert f"{day}/events.parquet" in result.skip_message
    time.sleep(SETTLE + 0.1)
    result, cursor = tick(defs, pipeline.instance, cursor)
    reported = {event.asset_key: event for event in result.asset_events}
    assert set(reported) == {dg.AssetKey(["source", "applications"]), dg.AssetKey(["source", "events"])}
    applications = reported[dg.AssetKey(["source", "applications"])]
    path = watched / day / "applications.parquet"
    assert applications.partition == day and applications.metadata["path"].value == str(path)
    assert applications.metadata["size_bytes"].value == path.stat().st_size
    result, _ = tick(defs, pipeline.instance, cursor)
    assert not result.asset_events and "no new or changed export file" in result.skip_message


def test_a_day_with_both_a_csv_and_a_parquet_file_is_skipped_saying_why(make_pipeline, tmp_path):
    pipeline = make_pipeline(rows=10, days=2)
    first, second = FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=1)).isoformat()
    watched = tmp_path / "incoming"
    for day in (first, second):
        shutil.copytree(pipeline.source_dir / day, watched / day)
    as_parquet(watched / first / "applications.csv", watched / first / "applications.parquet")
    defs = account(watched)

    _, cursor = tick(defs, pipeline.instance, None)
    time.sleep(SETTLE + 0.1)
    result, cursor = tick(defs, pipeline.instance, cursor)
    reported = {(event.asset_key.to_user_string(), event.partition) for event in result.asset_events}
    assert reported == {("source/events", first), ("source/applications", second), ("source/events", second)}
    result, _ = tick(defs, pipeline.instance, cursor)
    assert not result.asset_events
    assert "both applications.csv and applications.parquet" in result.skip_message
    assert str(watched / first) in result.skip_message


def test_eager_requests_each_day_whose_files_are_reported_a_late_older_day_included(make_pipeline):
    pipeline = make_pipeline(rows=10, days=3)
    defs = account(pipeline.source_dir, automation_condition="eager")
    now = datetime(2026, 11, 4, 6, 0, tzinfo=timezone.utc)  # days 1 to 3 are over; 3 is the latest
    first = dg.evaluate_automation_conditions(defs=defs, instance=pipeline.instance, evaluation_time=now)
    assert first.total_requested == 0  # no file reported yet

    def report(day) -> None:
        for name in ("applications", "events"):
            pipeline.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=dg.AssetKey(["source", name]), partition=day.isoformat()))

    report(FIRST_DAY + timedelta(days=2))  # the latest day's export, on time
    report(FIRST_DAY)  # an older day's export, late
    later = dg.evaluate_automation_conditions(defs=defs, instance=pipeline.instance, cursor=first.cursor,
                                              evaluation_time=now + timedelta(minutes=1))
    requested = later.get_requested_partitions(dg.AssetKey("raw_applications"))
    assert requested == {FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=2)).isoformat()}
    assert later.get_requested_partitions(dg.AssetKey(["leadsquared", "opportunities"])) == requested  # the whole chain

    sensor = defs.resolve_sensor_def("sync_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # nothing writes to LeadSquared by itself
    assert sensor.run_tags[ACCOUNT_TAG] == "default"
    assert sensor.run_tags["dagster/retry_on_asset_or_op_failure"] == "false"


def test_without_automation_no_asset_has_a_condition_and_there_is_no_automation_sensor(make_pipeline):
    defs = make_pipeline(rows=5).definitions()
    assert all(node.automation_condition is None for node in defs.resolve_asset_graph().asset_nodes)
    assert "sync_automation" not in {sensor.name for sensor in defs.sensors}
