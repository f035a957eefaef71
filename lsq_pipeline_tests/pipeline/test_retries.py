"""Retries: records a call could not deliver (LeadSquared down) are sent again by later runs up
to LSQ_MAX_ATTEMPTS; the retry job sends refused ones now."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from lsq_pipeline.steps.plan import FAILURES_SQL
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.test_history import refuse_one_record

DAY2 = FIRST_DAY + timedelta(days=1)
DAY3 = FIRST_DAY + timedelta(days=2)


def ids_of_day(pipeline, day) -> set[str]:
    return {r[0] for r in pipeline.query("SELECT source_id FROM opportunity_records WHERE day = $1", [day])}


def failed_rows(pipeline) -> dict[str, tuple[str, int]]:
    """Records whose last send failed, with the error and the failed sends (the plan's view)."""
    rows = pipeline.query(f"SELECT source_id, error, attempts FROM ({FAILURES_SQL})")
    return {source_id: (error, attempts) for source_id, error, attempts in rows}


@pytest.mark.timeout(300)
def test_transient_failures_are_retried_by_later_runs_until_out_of_attempts(make_pipeline, sandbox, start_sandbox):
    pipeline = make_pipeline(rows=40, days=3)
    pipeline.overrides = {"max_attempts": 2, "retry_backoff_seconds": 0.01}  # the client's own retries, quickly
    down = start_sandbox(fault_rate=1.0, seed=3)
    pipeline.sandbox_url = down.url
    first = pipeline.run(FIRST_DAY)
    assert first.success, "LeadSquared being down fails records, not the run"
    day1_ids = ids_of_day(pipeline, FIRST_DAY)
    failed = failed_rows(pipeline)
    assert set(failed) == day1_ids
    assert all(not error.startswith("MX") and attempts == 1 for error, attempts in failed.values())

    second = pipeline.run(DAY2)  # day 1's records come along, and fail again
    assert second.success
    assert day1_ids <= {r[0] for r in pipeline.query("SELECT source_id FROM sync_plan WHERE day = $1", [DAY2])}
    failed = failed_rows(pipeline)
    assert {failed[i][1] for i in day1_ids - ids_of_day(pipeline, DAY2)} == {2}

    pipeline.sandbox_url = sandbox.url
    third = pipeline.run(DAY3)  # out of attempts: day 1's records wait for a person
    assert third.success
    waiting = set(failed_rows(pipeline))
    # Records with a newer version on day 2 or 3 were sent as that version; the others wait.
    assert waiting == day1_ids - ids_of_day(pipeline, DAY2) - ids_of_day(pipeline, DAY3)
    assert not waiting & set(pipeline.remote_by_source())

    retry_all = {"ops": {"sync_plan": {"config": {"retry_all_failed": True}}}}
    elsewhere = pipeline.run(DAY3, job="retry_job", config=retry_all)  # not the days that hold them
    assert not elsewhere.success
    [failure] = [e for e in elsewhere.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert f"({FIRST_DAY})" in failure.step_failure_data.error.message
    assert not pipeline.query("SELECT 1 FROM push_journal WHERE run_id = $1", [elsewhere.run_id])
    retry = pipeline.run(FIRST_DAY, DAY3, job="retry_job", config=retry_all)
    assert retry.success
    assert {m.partition for m in retry.asset_materializations_for_node("push")} == {
        d.isoformat() for d in (FIRST_DAY, DAY2, DAY3)}
    assert failed_rows(pipeline) == {}
    remote = pipeline.remote_by_source()
    assert waiting <= set(remote) and all(len(remote[i]) == 1 for i in waiting)
    assert pipeline.scalar("SELECT max(attempts) FROM opportunity_state") == 0
    assert pipeline.record(retry)["job"] == "retry_job"


def test_the_retry_job_sends_a_refused_record_again_on_request(make_pipeline):
    pipeline = make_pipeline(rows=20, days=1)
    pair = refuse_one_record(pipeline)
    assert pipeline.run(FIRST_DAY).success
    [(refused, error, attempts)] = pipeline.query(
        "SELECT source_id, error, attempts FROM opportunity_state WHERE status = 'failed'")
    assert refused in pair and error.startswith("MX") and attempts == 1
    assert pipeline.run(FIRST_DAY).success  # a plain re-run leaves it alone
    assert pipeline.scalar("SELECT action FROM sync_plan WHERE source_id = $1", [refused]) == "refused"

    dry = pipeline.definitions().resolve_job_def("retry_job").execute_in_process(
        instance=pipeline.instance, partition_key=FIRST_DAY.isoformat(), raise_on_error=False,
        run_config={"ops": {"sync_plan": {"config": {"retry_source_ids": [refused]}}}},
        asset_selection=[dg.AssetKey("sync_plan")],
    )
    assert dry.success
    assert pipeline.scalar("SELECT action FROM sync_plan WHERE source_id = $1", [refused]) == "create"
    assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE run_id = $1", [dry.run_id]) == 0

    retry = pipeline.run(FIRST_DAY, job="retry_job",
                         config={"ops": {"sync_plan": {"config": {"retry_source_ids": [refused]}}}})
    assert retry.success
    sent = pipeline.query("SELECT kind, status FROM push_journal WHERE run_id = $1 AND source_id = $2",
                          [retry.run_id, refused])
    assert sent, "the refused record was sent again"
    # LeadSquared still holds the other lead's phone: refused again, one more attempt counted.
    assert pipeline.scalar("SELECT attempts FROM opportunity_state WHERE source_id = $1", [refused]) == 2
