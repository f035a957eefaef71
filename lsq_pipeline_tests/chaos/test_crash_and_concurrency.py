"""The sync as users run it (`lsq-pipeline sync` on a Dagster instance with the shipped
dagster.yaml, on either executor: every step in the run's process, or each in its own): killed
with SIGKILL in the middle of a push, then run again; and two syncs of the same days started at
once on the same warehouse and instance. Each under every sandbox profile, on a DuckDB file
and on PostgreSQL (there with an instance without pool limits)."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
import requests

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import KEY_HEADERS, ChaosPipeline, assert_end_state, wait_for
from lsq_pipeline_tests.chaos.conftest import FIRST_DAY, PROFILES

LAST_DAY = FIRST_DAY + timedelta(days=1)
# A sync's wall time; generous, since each profile's runs share the cores with the others'.
RUN_SECONDS = 300


def _stats(url: str) -> dict:
    return requests.get(f"{url}/sandbox/stats", headers=KEY_HEADERS, timeout=10).json()


def _finish(process, timeout: float = RUN_SECONDS) -> str:
    process.wait(timeout=timeout)
    log = process.log_path.read_text(errors="replace")
    assert process.returncode == 0, f"sync exited {process.returncode}:\n{log[-3000:]}"
    return log


@pytest.fixture
def small_source(tmp_path):
    out = tmp_path / "source"
    generate(out, rows=1200, days=2, seed=31, start_day=FIRST_DAY, dirty_rate=0.05, events=500)
    return out


def _kill_cases() -> list:
    """Where the kill lands, under which profile. Creates on a DuckDB file, whose recovery differs
    by profile (a duplicate named, or not, or Capture ignoring the rule), run under each; the
    activities, the other executor and the PostgreSQL warehouse under one profile each."""
    # 50 activity calls: half way through the third group of 20 opportunities, never at the end of
    # a group, when its rows are answered and the next group's not yet journalled.
    creates, activities = ("BulkAdd", 30), ("BulkActivities", 50)
    return [
        *(pytest.param(*creates, "in_process", "duckdb", profile, id=f"creates-{profile}") for profile in PROFILES),
        pytest.param(*activities, "in_process", "duckdb", "terse", id="activities-terse"),
        pytest.param(*creates, "multiprocess", "duckdb", "field", id="creates-multiprocess-field"),
        pytest.param(*creates, "in_process", "postgres", "terse", id="creates-postgres-terse"),
        pytest.param(*activities, "in_process", "postgres", "documented", id="activities-postgres-documented"),
    ]


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.parametrize("endpoint, calls, executor, warehouse_backend, profile", _kill_cases(),
                         indirect=["warehouse_backend"])
def test_sigkill_in_the_middle_of_a_push_then_a_rerun_ends_in_the_same_state(
    tmp_path, small_source, sync_process, endpoint, calls, executor, profile
):
    # Latency makes the push last several seconds; faults and lost answers stay on.
    with run_sandbox(rate_limit_calls=0, latency_ms=120, fault_rate=0.05, lost_response_rate=0.02, seed=7,
                     profile=profile) as sandbox:
        first = sync_process(sandbox.url, small_source, FIRST_DAY, LAST_DAY, log_name="killed", executor=executor)
        wait_for(lambda: _stats(sandbox.url)["Calls"].get(endpoint, 0) >= calls or first.poll() is not None,
                 timeout=RUN_SECONDS, what=f"{calls} {endpoint} calls")
        assert first.poll() is None, "the sync ended before it could be killed:\n" + first.log_path.read_text()[-2000:]
        # Held by the sandbox, the next call stays in the air for as long as the kill takes to land.
        requests.post(f"{sandbox.url}/sandbox/hold", headers=KEY_HEADERS, timeout=10).raise_for_status()
        wait_for(lambda: _stats(sandbox.url)["Held"] > 0, timeout=60, every=0.05, what="a call held in the air")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        requests.post(f"{sandbox.url}/sandbox/release", headers=KEY_HEADERS, timeout=10).raise_for_status()
        time.sleep(0.5)  # the held call lands in the sandbox; its answer has no one to read it
        killed_at = _stats(sandbox.url)
        pipeline = ChaosPipeline(source_dir=small_source, warehouse=sync_process.warehouse, sandbox_url=sandbox.url)
        left_sent = pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'sent'")
        assert left_sent > 0, "the kill did not interrupt a batch in the air"

        _finish(sync_process(sandbox.url, small_source, FIRST_DAY, LAST_DAY, log_name="rerun", executor=executor))
        end = assert_end_state(pipeline)
        # The interrupted rows were settled, not re-sent blindly: creates resolved by the
        # duplicate rule, activities reported unknown.
        assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'sent'") == 0
        if endpoint == "BulkActivities":
            assert end.activities_unknown >= 1
        print(f"\nkilled after {killed_at['Calls']}; rows in the air: {left_sent}; end: {end.statuses}, "
              f"activities created {end.activities_created}, unknown {end.activities_unknown}")


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.parametrize("warehouse_backend, profile", [
    pytest.param("duckdb", "terse", id="duckdb-terse"), pytest.param("duckdb", "field", id="duckdb-field"),
    pytest.param("postgres", "documented", id="postgres-documented"),
], indirect=["warehouse_backend"])
def test_two_syncs_of_the_same_days_at_once_end_in_the_same_state(tmp_path, small_source, sync_process, profile):
    with run_sandbox(rate_limit_calls=0, latency_ms=20, fault_rate=0.05, lost_response_rate=0.02, seed=3,
                     profile=profile) as sandbox:
        one = sync_process(sandbox.url, small_source, FIRST_DAY, LAST_DAY, log_name="one")
        two = sync_process(sandbox.url, small_source, FIRST_DAY, LAST_DAY, log_name="two")
        logs = [_finish(one), _finish(two)]
        for log in logs:
            assert "Could not set lock" not in log
        pipeline = ChaosPipeline(source_dir=small_source, warehouse=sync_process.warehouse, sandbox_url=sandbox.url)
        end = assert_end_state(pipeline)
        runs = pipeline.scalar("SELECT count(DISTINCT run_id) FROM push_journal")
        print(f"\ntwo syncs: {end.statuses}; runs that wrote the journal: {runs}")
