"""The new-files sensor: a day is synced once both export files are there and have settled."""

from __future__ import annotations

import shutil
import time
from datetime import date

import dagster as dg

from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import MAPPING

SETTLE = 0.5


def tick(source_dir, instance, cursor):
    defs = build_definitions(
        AccountSettings(source_dir=str(source_dir), mapping=str(MAPPING), file_settle_seconds=SETTLE, sandbox=True,
                        first_day=FIRST_DAY.isoformat())
    )
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"default_source": defs.resources["default_source"]},
                                      repository_def=defs.get_repository_def())
    result = defs.resolve_sensor_def("new_source_files").evaluate_tick(context)
    return result, result.cursor


def test_a_complete_settled_day_folder_launches_that_days_run(make_pipeline, tmp_path):
    pipeline = make_pipeline(rows=10, days=1)
    day = FIRST_DAY.isoformat()
    watched = tmp_path / "incoming"
    (watched / day).mkdir(parents=True)
    shutil.copy(pipeline.source_dir / day / "applications.csv", watched / day)

    result, cursor = tick(watched, pipeline.instance, None)
    assert not result.run_requests and "no new complete day folder" in result.skip_message

    shutil.copy(pipeline.source_dir / day / "events.csv", watched / day)
    result, cursor = tick(watched, pipeline.instance, cursor)
    assert not result.run_requests and day in result.skip_message  # just arrived: settling

    time.sleep(SETTLE + 0.1)
    result, cursor = tick(watched, pipeline.instance, cursor)
    [request] = result.run_requests
    assert request.partition_key == day

    pipeline.source_dir = watched
    run = pipeline.run(date.fromisoformat(request.partition_key))
    assert run.success
    assert set(pipeline.remote_by_source()) == {
        r[0] for r in pipeline.query("SELECT source_id FROM opportunity_records")}

    (watched / day / "applications.csv").write_text(
        (watched / day / "applications.csv").read_text(encoding="utf-8") + "\n", encoding="utf-8")
    result, cursor = tick(watched, pipeline.instance, cursor)
    assert not result.run_requests, "a changed file settles again before its run"
    time.sleep(SETTLE + 0.1)
    result, _ = tick(watched, pipeline.instance, cursor)
    [again] = result.run_requests
    assert again.partition_key == day and again.run_key != request.run_key
