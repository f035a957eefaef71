"""Past the read-back grace a record is `missing`: the next run reads it back once more
and re-creates it through Bulk Add, where the duplicate rule answers if it was only slow; under
`update_only` it stays `missing` and is reported. A read lag longer than a (short) grace makes it
happen on purpose."""

from __future__ import annotations

import time

import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline
from lsq_pipeline_tests.pipeline.test_modes_and_ownership import set_mode, with_mapping
from lsq_pipeline_tests.pipeline.test_read_lag import write_calls

LAG, GRACE = 30.0, 2.0


@pytest.fixture
def pipeline(tmp_path, start_sandbox, warehouse_target):
    source = tmp_path / "source"
    generate(source, rows=30, days=1, seed=21, start_day=FIRST_DAY, dirty_rate=0.0, events=0)
    sandbox = start_sandbox(read_lag_seconds=LAG)
    return Pipeline(source, warehouse_target, sandbox.url, overrides={"read_back_grace_seconds": GRACE})


def statuses(pipeline: Pipeline) -> dict[str, int]:
    return dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))


def metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def first_run_leaves_every_record_missing(pipeline: Pipeline) -> tuple[int, float]:
    """Run 1: every create unseen past the grace (the same run's re-read waits longer than it)."""
    result = pipeline.run(FIRST_DAY)
    created_by = time.monotonic()
    assert result.success
    created = metadata(result, "push")["run_created"]
    assert created > 10 and statuses(pipeline) == {"missing": created}
    errors = [row[0] for row in pipeline.query("SELECT error FROM opportunity_state")]
    assert all("not found in LeadSquared since" in error and "last confirmed never" in error for error in errors)
    reconciled = metadata(result, "opportunity_state")
    assert (reconciled["run_missing"], reconciled["run_pending_read_back"]) == (created, 0)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["pushed_records_in_sync"] is False  # missing is reported
    assert pipeline.record(result)["missing"] == created
    return created, created_by


@pytest.mark.timeout(180)
def test_a_missing_record_is_read_once_more_then_re_created_and_the_duplicate_rule_answers(pipeline):
    created, created_by = first_run_leaves_every_record_missing(pipeline)

    second = pipeline.run(FIRST_DAY)  # well inside the lag: the read once more finds nothing
    assert second.success and time.monotonic() < created_by + LAG - 5, "run 2 came too late"
    assert metadata(second, "sync_plan")["planned_create"] == created
    pushed = metadata(second, "push")
    assert (pushed["run_already_existed"], pushed["run_created"], pushed["run_captured_with_new_lead"]) == (created, 0, 0)
    remote = pipeline.remote_by_source()
    assert len(remote) == created and all(len(opportunities) == 1 for opportunities in remote.values())
    assert statuses(pipeline) == {"missing": created}  # still not seen: missing again, not doubled

    time.sleep(max(0.0, created_by + LAG + 1 - time.monotonic()))
    before = write_calls(pipeline)
    third = pipeline.run(FIRST_DAY)  # read once more: found, only slow; nothing is sent
    assert third.success and write_calls(pipeline) == before
    assert statuses(pipeline) == {"in_sync": created}
    assert len(pipeline.remote()) == created


@pytest.mark.timeout(180)
def test_under_update_only_a_missing_record_stays_missing_and_is_reported(pipeline):
    created, created_by = first_run_leaves_every_record_missing(pipeline)
    with_mapping(pipeline, set_mode("update_only"))
    before = write_calls(pipeline)

    second = pipeline.run(FIRST_DAY)
    assert second.success and write_calls(pipeline) == before
    assert metadata(second, "sync_plan")["planned_skipped"] == created
    assert statuses(pipeline) == {"missing": created}
    assert metadata(second, "opportunity_state")["run_missing"] == created
    assert pipeline.record(second)["missing"] == created

    time.sleep(max(0.0, created_by + LAG + 1 - time.monotonic()))
    third = pipeline.run(FIRST_DAY)  # missing records are read back on every run: found now
    assert third.success and write_calls(pipeline) == before
    assert statuses(pipeline) == {"in_sync": created}
