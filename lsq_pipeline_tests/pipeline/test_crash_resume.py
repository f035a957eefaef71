"""A push whose every answer is lost (the writes landed, the calls failed after their retries):
the push goes on instead of stopping the run, nothing is in sync, and the next run sends again:
exactly one opportunity per record, all in sync."""

from __future__ import annotations

import csv
import uuid

import pytest

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.sandbox.account import SeedLead, load_account
from lsq_pipeline.steps.push.creates import RESOLVE_ROUNDS
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline


@pytest.mark.timeout(180)
def test_lost_answers_then_a_rerun_ends_with_one_opportunity_per_record(tmp_path, warehouse_target):
    source = tmp_path / "source"
    generate(source, rows=60, days=1, seed=8, start_day=FIRST_DAY, dirty_rate=0.0)
    state = tmp_path / "sandbox-state.jsonl"
    # The leads exist already (a CRM with leads), so creates go through Bulk Add and land.
    emails = {row["email"].strip().lower() for row in csv.DictReader((source / FIRST_DAY.isoformat() / "applications.csv").open(encoding="utf-8"))}
    account = load_account().model_copy(
        update={"leads": [SeedLead(id=str(uuid.uuid4()), fields={"EmailAddress": email}) for email in sorted(emails)]}
    )
    with run_sandbox(
        account=account, rate_limit_calls=0, lost_response_rate=1.0, seed=2, state_path=state
    ) as broken:
        pipeline = Pipeline(source, warehouse_target, broken.url, overrides={"retry_backoff_seconds": 0.01})
        lost = pipeline.run(FIRST_DAY)
        assert lost.success
        landed = pipeline.remote_by_source()
    assert landed, "the lost answers' writes landed in LeadSquared"
    assert pipeline.scalar("SELECT count(*) FROM opportunity_state WHERE status = 'in_sync'") == 0
    unanswered = pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'unknown'")

    with run_sandbox(account=account, rate_limit_calls=0, state_path=state) as healthy:
        pipeline.sandbox_url = healthy.url
        resumed = pipeline.run(FIRST_DAY)
        assert resumed.success
        remote = pipeline.remote_by_source()
        activities = pipeline.remote("activities")
    accepted = {row[0] for row in pipeline.query("SELECT DISTINCT source_id FROM opportunity_records")}
    assert set(remote) == accepted
    assert all(len(opportunities) == 1 for opportunities in remote.values())
    assert set(landed) <= set(remote)
    assert {row[0] for row in pipeline.query("SELECT DISTINCT status FROM opportunity_state")} == {"in_sync"}
    assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'sent'") == 0
    assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'unknown'") == unanswered
    assert pipeline.scalar("SELECT max(attempts) FROM opportunity_state") == 0
    created_activities = pipeline.scalar("SELECT count(*) FROM activity_state WHERE status = 'created'")
    assert created_activities > 0
    assert len(activities) >= created_activities


def _new_records(tmp_path, warehouse_target, **settings) -> tuple[Pipeline, object]:
    """A few records whose leads are new, a warehouse, and the sandbox's state file (kept across its restarts)."""
    source = tmp_path / "source"
    generate(source, rows=4, days=1, seed=4, start_day=FIRST_DAY, dirty_rate=0.0, events=0)
    return Pipeline(source, warehouse_target, "", **settings), tmp_path / "sandbox-state.jsonl"


def _each_failed_with(pipeline: Pipeline, error: str) -> set[str]:
    """Every accepted record has a `failed` state row whose error starts with `error`; returns them."""
    accepted = {row[0] for row in pipeline.query("SELECT source_id FROM opportunity_records")}
    assert len(accepted) >= 2
    states = dict(pipeline.query("SELECT source_id, status || ': ' || error FROM opportunity_state"))
    assert set(states) == accepted, "a record whose answers were lost has no state row"
    assert all(status.startswith(f"failed: {error}") for status in states.values()), states
    return accepted


def _one_opportunity_each_in_sync(pipeline: Pipeline, accepted: set[str], remote: dict) -> None:
    assert {source_id: len(opportunities) for source_id, opportunities in remote.items()} == dict.fromkeys(accepted, 1)
    assert {row[0] for row in pipeline.query("SELECT DISTINCT status FROM opportunity_state")} == {"in_sync"}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("profile", ["documented", "field"])
def test_a_create_whose_bulk_add_went_unanswered_is_never_captured_blindly(tmp_path, profile, warehouse_target):
    """New leads, every answer lost (the writes land): the lead bulk create lands unanswered, Bulk
    Add creates the opportunity unanswered. A Capture then could make a second opportunity (the
    `field` profile's Capture ignores the duplicate rule), so none is sent: the record is `failed`
    (retryable), never missing from the state table, and the next run resolves it through Bulk
    Add's duplicate answer with no double."""
    pipeline, state = _new_records(tmp_path, warehouse_target, overrides={"retry_backoff_seconds": 0.01})
    with run_sandbox(rate_limit_calls=0, lost_response_rate=1.0, seed=2, state_path=state, profile=profile) as broken:
        pipeline.sandbox_url = broken.url
        assert pipeline.run(FIRST_DAY).success
        assert pipeline.stats()["Calls"].get("Capture", 0) == 0
    accepted = _each_failed_with(pipeline, "TransientError")

    with run_sandbox(rate_limit_calls=0, state_path=state, profile=profile) as healthy:
        pipeline.sandbox_url = healthy.url
        assert pipeline.run(FIRST_DAY).success
        assert pipeline.stats()["Calls"].get("Capture", 0) == 0  # resolved through Bulk Add
        _one_opportunity_each_in_sync(pipeline, accepted, pipeline.remote_by_source())


@pytest.mark.timeout(240)
def test_a_create_whose_captures_all_went_unanswered_is_failed_in_the_state_then_resolved(tmp_path, warehouse_target):
    """`terse`: Bulk Add answers a duplicate without id, so the record goes to Capture; every
    Capture lands unanswered and the record goes back to Bulk Add, round after round. When the
    rounds run out it must not vanish from the state table: it is `failed` with the lost answer
    (retryable), and the next run settles it with no double."""
    pipeline, state = _new_records(tmp_path, warehouse_target, leads_in_bulk=False)
    with run_sandbox(rate_limit_calls=0, lost_response_rate=1.0, fault_endpoints=["Capture"], seed=2,
                     state_path=state, profile="terse") as broken:
        pipeline.sandbox_url = broken.url
        assert pipeline.run(FIRST_DAY).success
        captures = pipeline.stats()["Calls"].get("Capture", 0)
    accepted = _each_failed_with(pipeline, "OutcomeUnknown")
    assert captures == len(accepted) * RESOLVE_ROUNDS

    with run_sandbox(rate_limit_calls=0, state_path=state, profile="terse") as healthy:
        pipeline.sandbox_url = healthy.url
        assert pipeline.run(FIRST_DAY).success
        _one_opportunity_each_in_sync(pipeline, accepted, pipeline.remote_by_source())
