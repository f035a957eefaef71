"""Guards: a bad export or a plan that would rewrite too much stops before anything is pushed."""

from __future__ import annotations

import dagster as dg

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import rewrite_rows


def check_evaluations(result, name: str) -> list:
    return [
        event.event_specific_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and event.event_specific_data.check_name == name
    ]


def test_a_reject_rate_above_the_limit_blocks_the_run_before_the_push(make_pipeline):
    pipeline = make_pipeline(rows=40, days=1, dirty_rate=0.5)
    pipeline.overrides = {"max_reject_rate": 0.1}
    result = pipeline.run(FIRST_DAY)
    assert not result.success
    [evaluation] = check_evaluations(result, "reject_rate_below_threshold")
    assert not evaluation.passed and evaluation.blocking
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["reject_rate"].value > 0.1
    assert pipeline.scalar("SELECT count(*) FROM push_journal") == 0
    assert sum(pipeline.stats()["Calls"].values()) == 0
    row = pipeline.record(result)
    assert row["status"] == "blocked"
    assert "rejects: reject_rate_below_threshold" in row["reason"]


def test_a_plan_updating_more_than_the_change_share_is_blocked_unless_overridden(make_pipeline):
    pipeline = make_pipeline(rows=30, days=1)
    assert pipeline.run(FIRST_DAY).success
    known = pipeline.scalar("SELECT count(*) FROM opportunity_state WHERE opportunity_id IS NOT NULL")
    applications = pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv"
    # A corrupted export: every amount changed at once.
    rewrite_rows(applications, lambda r: {**r, "amount": "99999", "updated_at": "2026-11-01T23:59:00Z"})
    calls_before = sum(pipeline.stats()["Calls"].values())

    blocked = pipeline.run(FIRST_DAY)
    assert not blocked.success
    [evaluation] = check_evaluations(blocked, "change_share_below_threshold")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["known_opportunities"].value == known
    assert evaluation.metadata["change_share"].value > 0.5
    assert sum(pipeline.stats()["Calls"].values()) == calls_before, "nothing was sent"
    assert pipeline.record(blocked)["status"] == "blocked"

    allowed = pipeline.run(FIRST_DAY, config={"ops": {"sync_plan": {"config": {"max_change_share": 1.0}}}})
    assert allowed.success
    assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE run_id = $1 AND kind = 'update' AND status = 'ok'",
                           [allowed.run_id]) == known
    assert all(float(o["Fields"]["mx_Custom_3"]) == 99999 for o in pipeline.remote())


def test_the_gone_share_check_blocks_above_its_threshold_and_an_empty_snapshot_too():
    from lsq_pipeline.orchestration.checks import GONE_SHARE, gone_share, gone_share_spec

    plan = dg.AssetKey("sync_plan")
    assert gone_share_spec(plan).blocking and gone_share_spec(plan).name == GONE_SHARE
    at_limit = gone_share(plan, gone=2, known=10, threshold=0.2)
    assert at_limit.passed and at_limit.severity == dg.AssetCheckSeverity.ERROR
    assert at_limit.metadata["gone_share"].value == 0.2 and at_limit.metadata["known_records"].value == 10
    above = gone_share(plan, gone=5, known=10, threshold=0.2)
    assert not above.passed and "lacks 50% of the 10 known records" in above.description
    assert "max_gone_share" in above.description
    assert gone_share(plan, gone=5, known=10, threshold=0.6).passed
    empty = gone_share(plan, gone=10, known=10, threshold=0.2)  # a source that returned no rows
    assert not empty.passed and empty.metadata["gone_share"].value == 1.0
    assert gone_share(plan, gone=0, known=0, threshold=0.0).passed  # a first snapshot knows nothing yet
