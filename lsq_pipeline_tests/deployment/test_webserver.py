"""The real deployment path: `dagster dev` (webserver and daemon) on the shipped dagster.yaml, a
backfill of several days launched through GraphQL, its runs queued and executed in their own
processes with pools, then the state table and the sandbox checked."""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta

import pytest

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import ChaosPipeline, assert_end_state, subprocess_env
from lsq_pipeline_tests.deployment.harness import (
    REPO, STARTUP_SECONDS, covered_days, launch_backfill, start, wait_for_backfill, wait_for_location,
)
from lsq_pipeline_tests.processes import free_port, stop_group

FIRST_DAY = date(2026, 11, 1)
DAYS = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(3)]
BACKFILL_SECONDS = 300


@pytest.fixture
def deployment(tmp_path):
    """`dagster dev -w workspace.yaml` on a free port, in its own process group, on a tmp copy of
    the shipped instance, against a sandbox in this process; killed with its group at the end."""
    source = tmp_path / "source"
    generate(source, rows=150, days=len(DAYS), seed=41, start_day=FIRST_DAY, dirty_rate=0.05)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    warehouse = tmp_path / "warehouse.duckdb"
    port = free_port()
    log_path = tmp_path / "dagster_dev.log"
    with run_sandbox(rate_limit_calls=0, latency_ms=5) as sandbox:
        env = subprocess_env(
            os.environ, sandbox_url=sandbox.url, source=source, warehouse=warehouse, dagster_home=home,
            rate_limit_db=tmp_path / "rate_limit.sqlite",
        )
        process = start(["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                        REPO, env, log_path)
        try:
            url = f"http://127.0.0.1:{port}/graphql"
            wait_for_location(url, process, log_path)
            yield url, ChaosPipeline(source_dir=source, warehouse=warehouse, sandbox_url=sandbox.url), log_path
        finally:
            stop_group(process)


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + BACKFILL_SECONDS + 60)
def test_a_backfill_launched_through_graphql_syncs_every_day(deployment):
    url, pipeline, log_path = deployment
    backfill_id = launch_backfill(url, DAYS)
    runs = wait_for_backfill(url, backfill_id, BACKFILL_SECONDS, log_path)

    assert {run["status"] for run in runs} == {"SUCCESS"}, runs
    # The assets' single-run backfill policy makes the 3 days one range run; per-partition runs
    # would do as well: either way every day is covered exactly once.
    assert covered_days(runs) == DAYS
    end = assert_end_state(pipeline)
    assert end.accepted and set(end.statuses) <= {"in_sync", "rejected"}
    journal_runs = {row[0] for row in pipeline.query("SELECT DISTINCT run_id FROM push_journal")}
    assert journal_runs <= {run["runId"] for run in runs}
    print(f"\nbackfill {backfill_id}: {len(runs)} runs, end state {end.statuses}")
