"""Corpus through the Dagster sync job against the sandbox over HTTP: a multi-day source where one
day is the dirty rows corpus and one day's file is bad. The bad day's run fails with the file's
problem in the step failure; the other days sync; the dirty day's rejects get `rejected` state rows."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.harness import Pipeline

from .corpus import BAD_FILES, DAY, ROWS, place

FIRST_DAY = DAY - timedelta(days=1)  # generated, clean
BAD_DAY = DAY + timedelta(days=1)  # generated, then its applications.csv replaced by a bad file


pytestmark = pytest.mark.parametrize("warehouse_backend", ["duckdb", "postgres"], indirect=True)


@pytest.fixture
def pipeline(tmp_path, sandbox, warehouse_target):
    source = tmp_path / "source"
    generate(source, rows=40, days=3, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    place(source, DAY, ROWS / "applications.csv", ROWS / "events.csv")
    bad_day = source / BAD_DAY.isoformat()
    place(source, BAD_DAY, BAD_FILES / "semicolon_delimiter.csv", (bad_day / "events.csv").read_bytes())
    # The corpus day is two thirds bad rows on purpose: lift the reject-rate guard, which
    # would otherwise (rightly) stop that day before the push.
    return Pipeline(source_dir=source, warehouse=warehouse_target, sandbox_url=sandbox.url,
                    overrides={"max_reject_rate": 1.0})


def _days(pipeline, table: str) -> set[date]:
    return {row[0] for row in pipeline.query(f"SELECT DISTINCT day FROM {table}")}


def test_bad_file_fails_only_its_days_run_and_a_dirty_days_rejects_end_rejected(pipeline):
    results = {day: pipeline.run(day) for day in (FIRST_DAY, BAD_DAY, DAY)}

    assert results[FIRST_DAY].success and results[DAY].success
    failed = results[BAD_DAY]
    assert not failed.success
    assert failed.get_failed_step_keys() == {"extract"}
    error = failed.get_step_failure_events()[0].step_failure_data.error
    assert error.cause.cls_name == "SourceFileError"
    message = error.cause.message
    assert f"{BAD_DAY.isoformat()}/applications.csv: missing required columns" in message
    assert "wrong delimiter? comma expected" in message
    assert _days(pipeline, "raw_applications") == _days(pipeline, "raw_events") == {FIRST_DAY, DAY}

    # The dirty day: every good row synced once, exactly as written; every bad row rejected.
    accepted = dict(pipeline.query("SELECT source_id, fields FROM opportunity_records WHERE day = $1", [DAY]))
    assert len(accepted) == 10
    remote = pipeline.remote_by_source()
    for source_id, fields in accepted.items():
        assert len(remote[source_id]) == 1
        assert remote[source_id][0]["Fields"]["mx_Custom_4"] == json.loads(fields)["mx_Custom_4"]
    assert remote["OK-emoji"][0]["Fields"]["mx_Custom_4"] == "Ananya Rao \U0001F642"
    rejected_ids = {row[0] for row in pipeline.query(
        "SELECT DISTINCT source_id FROM rejects WHERE day = $1 AND source_file LIKE '%applications.csv'", [DAY])}
    states = dict(pipeline.query("SELECT source_id, status FROM opportunity_state"))
    assert rejected_ids and all(states[source_id] == "rejected" for source_id in rejected_ids)
    assert not rejected_ids & set(remote)
    assert pipeline.scalar(
        "SELECT error FROM opportunity_state WHERE source_id = 'REJ-two-bad-fields'"
    ) == "amount: thousands separators are not allowed: plain decimal expected; email: not a valid email address"
    first_day_ids = {row[0] for row in pipeline.query(
        "SELECT source_id FROM opportunity_records WHERE day = $1", [FIRST_DAY])}
    assert first_day_ids and first_day_ids <= set(remote)
    assert {states[source_id] for source_id in first_day_ids | set(accepted)} == {"in_sync"}
