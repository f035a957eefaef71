"""Run history and alerts: sync_runs and sync_errors, the push's metadata and errors CSV, and the
run-failure sensor's webhook, POSTed to a real local HTTP receiver."""

from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import rewrite_rows


def refuse_one_record(pipeline) -> set[str]:
    """Give a second application another lead with the first one's phone: LeadSquared refuses
    whichever of the two comes second; returns both ids."""
    applications = pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv"
    rows = list(csv.DictReader(applications.open(encoding="utf-8")))
    first, second = rows[0], next(r for r in rows[1:] if r["email"] != rows[0]["email"])
    rewrite_rows(applications, lambda r: {**r, "phone": first["phone"]}
                 if r["application_id"] == second["application_id"] else r)
    return {first["application_id"], second["application_id"]}


def push_metadata(result) -> dict:
    [materialization] = [m for m in result.asset_materializations_for_node("push")
                         if m.asset_key == dg.AssetKey(["leadsquared", "opportunities"])]
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.fixture
def receiver():
    """A local HTTP server that keeps the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_a_run_writes_its_history_errors_and_metadata(make_pipeline):
    pipeline = make_pipeline(rows=30, days=1, dirty_rate=0.1)
    pair = refuse_one_record(pipeline)
    result = pipeline.run(FIRST_DAY)
    assert result.success
    meta = push_metadata(result)
    accepted = pipeline.scalar("SELECT count(DISTINCT source_id) FROM opportunity_records")
    assert meta["planned_create"] == accepted
    assert meta["attempted_create"] == accepted
    assert meta["succeeded_create"] + meta["succeeded_capture"] == accepted - 1
    assert meta["failed_capture"] + meta["failed_create"] == 1
    assert meta["run_api_calls_bulk_add"] >= 1 and meta["run_api_calls_capture"] >= 1
    assert meta["run_api_calls_bulk_update"] == 0  # every endpoint's figure is there, 0 included

    rejected = pipeline.scalar("SELECT count(*) FROM rejects")
    assert rejected > 0
    columns = ["kind", "source_id", "field", "error", "payload"]
    lines = [dict(zip(columns, row)) for row in pipeline.query(
        f"SELECT {', '.join(columns)} FROM sync_errors WHERE run_id = $1", [result.run_id])]
    assert len(lines) == meta["errors"] == rejected + 1
    preview = meta["failed_records"]  # the first rows, as a table in the UI
    assert preview.startswith("| run_id | kind | day | source_id |")
    assert len(preview.splitlines()) == 2 + min(meta["errors"], 20)
    [failure] = [line for line in lines if line["kind"] != "reject"]
    assert failure["source_id"] in pair and failure["field"] == "Phone"
    assert "already exists" in failure["error"]
    assert "sandbox-secret-key" not in failure["payload"] and "sandbox-access-key" not in failure["payload"]

    row = pipeline.record(result)
    assert row["status"] == "succeeded" and row["job"] == "sync_job"
    [(status, days, created, failed, calls, errors, started, ended)] = pipeline.query(
        """SELECT status, first_day || '..' || last_day, succeeded_create + succeeded_capture,
                  failed_create + failed_capture, api_calls_total, errors, started_at, ended_at
           FROM sync_runs WHERE run_id = $1""",
        [result.run_id],
    )
    assert (status, created, failed, errors) == ("succeeded", accepted - 1, 1, rejected + 1)
    assert days == f"{FIRST_DAY}..{FIRST_DAY}"
    assert calls >= meta["run_api_calls"] and started <= ended
    assert pipeline.scalar("SELECT count(*) FROM sync_errors WHERE run_id = $1 AND field = 'Phone'",
                           [result.run_id]) == 1


def test_the_failure_sensor_records_a_blocked_run_and_posts_a_summary(make_pipeline, receiver, monkeypatch):
    url, received = receiver
    pipeline = make_pipeline(rows=30, days=1, dirty_rate=0.5)
    monkeypatch.setenv("LSQ_TEST_ALERT_WEBHOOK", url)
    pipeline.overrides = {"max_reject_rate": 0.1, "alert_webhook_env": "LSQ_TEST_ALERT_WEBHOOK"}
    result = pipeline.run(FIRST_DAY)
    assert not result.success
    run = pipeline.instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_failed_runs", dagster_event=failure, dagster_instance=pipeline.instance, dagster_run=run,
    ).for_run_failure()
    pipeline.definitions().resolve_sensor_def("alert_on_failed_runs")(context)

    [(status, reason)] = pipeline.query("SELECT status, reason FROM sync_runs WHERE run_id = $1", [result.run_id])
    assert status == "blocked" and "reject_rate_below_threshold" in reason
    [alert] = received
    assert alert["run_id"] == result.run_id and alert["status"] == "blocked"
    assert alert["first_day"] == FIRST_DAY.isoformat()
    assert "reject_rate_below_threshold" in alert["text"]
    assert alert["errors"] == pipeline.scalar("SELECT count(*) FROM sync_errors WHERE run_id = $1", [result.run_id])
    assert "secret" not in json.dumps(alert).lower()


def test_the_success_sensor_records_a_successful_run(make_pipeline):
    pipeline = make_pipeline(rows=10, days=1)
    result = pipeline.run(FIRST_DAY)
    success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name="record_successful_runs", dagster_event=success, dagster_instance=pipeline.instance,
        dagster_run=pipeline.instance.get_run_by_id(result.run_id),
    )
    pipeline.definitions().resolve_sensor_def("record_successful_runs")(context)
    assert pipeline.query("SELECT status, errors FROM sync_runs") == [("succeeded", 0)]


def test_a_failed_run_that_will_be_retried_alerts_only_on_its_last_try(make_pipeline, receiver, monkeypatch):
    url, received = receiver
    pipeline = make_pipeline(rows=30, days=1, dirty_rate=0.5)
    pipeline.overrides = {"max_reject_rate": 0.1, "alert_webhook_env": "LSQ_TEST_ALERT_WEBHOOK"}
    sensor = pipeline.definitions().resolve_sensor_def("alert_on_failed_runs")
    monkeypatch.setenv("LSQ_TEST_ALERT_WEBHOOK", url)  # set after the load: the URL is read when an alert goes out

    def fail_and_tell(will_retry: str) -> str:
        result = pipeline.run(FIRST_DAY)
        assert not result.success
        pipeline.instance.add_run_tags(result.run_id, {"dagster/will_retry": will_retry})
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        sensor(dg.build_run_status_sensor_context(
            sensor_name="alert_on_failed_runs", dagster_event=failure, dagster_instance=pipeline.instance,
            dagster_run=pipeline.instance.get_run_by_id(result.run_id),
        ).for_run_failure())
        return result.run_id

    retried = fail_and_tell("true")
    assert received == []  # the instance will launch it again: no page yet
    assert pipeline.query("SELECT status FROM sync_runs WHERE run_id = $1", [retried]) == [("blocked",)]
    last = fail_and_tell("false")
    assert [alert["run_id"] for alert in received] == [last]
