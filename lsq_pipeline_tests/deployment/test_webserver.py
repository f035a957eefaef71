"""The real deployment path: `dagster dev` (webserver and daemon) on the shipped dagster.yaml, a
backfill of several days launched through GraphQL, its runs queued and executed in their own
processes with pools, then the state table and the sandbox checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.sync.generate import generate
from lsq_pipeline_tests.chaos.checks import ChaosPipeline, assert_end_state, subprocess_env
from lsq_pipeline_tests.processes import free_port, stop_group

REPO = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 11, 1)
DAYS = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(3)]
STARTUP_SECONDS = 120
BACKFILL_SECONDS = 300

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId launchedRunIds }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on InvalidSubsetError { message }
    ... on RunConflict { message }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      runs { runId status tags { key value } }
      error { message }
    }
    ... on PythonError { message }
  }
}
"""

TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    answer = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


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
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                 "-p", str(port)],
                cwd=REPO, env={**env, "PATH": f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}/graphql"
            _wait_for_location(url, process, log_path)
            yield url, ChaosPipeline(source_dir=source, warehouse=warehouse, sandbox_url=sandbox.url), log_path
        finally:
            stop_group(process)


def _wait_for_location(url: str, process: subprocess.Popen, log_path: Path) -> None:
    query = """{ workspaceOrError { ... on Workspace { locationEntries { name
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "dagster dev exited:\n" + log_path.read_text(errors="replace")[-3000:]
        try:
            entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, ValueError, KeyError):
            entries = []
        loaded = [e for e in entries if e["name"] == "lsq_pipeline" and e["locationOrLoadError"]]
        if loaded:
            state = loaded[0]["locationOrLoadError"]
            assert state["__typename"] == "RepositoryLocation", state
            return
        time.sleep(1)
    raise AssertionError("dagster dev did not serve the code location in time:\n"
                         + log_path.read_text(errors="replace")[-3000:])


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + BACKFILL_SECONDS + 60)
def test_a_backfill_launched_through_graphql_syncs_every_day(deployment):
    url, pipeline, log_path = deployment
    launched = graphql(url, LAUNCH_BACKFILL, {"params": {
        "selector": {
            "repositorySelector": {"repositoryLocationName": "lsq_pipeline", "repositoryName": "__repository__"},
            "partitionSetName": "sync_job_partition_set",
        },
        "partitionNames": DAYS,
    }})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + BACKFILL_SECONDS
    while True:
        backfill = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs = backfill["runs"]
        if backfill["status"] in TERMINAL_BACKFILL and runs and all(run["status"] in TERMINAL_RUN for run in runs):
            break
        assert time.monotonic() < deadline, f"backfill not finished in time: {backfill}\n" + \
            log_path.read_text(errors="replace")[-3000:]
        time.sleep(2)

    assert {run["status"] for run in runs} == {"SUCCESS"}, runs
    # The assets' single-run backfill policy makes the 3 days one range run; per-partition runs
    # would do as well: either way every day is covered exactly once.
    covered = []
    for run in runs:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        if "dagster/partition" in tags:
            covered.append(tags["dagster/partition"])
        else:
            first = date.fromisoformat(tags["dagster/asset_partition_range_start"])
            last = date.fromisoformat(tags["dagster/asset_partition_range_end"])
            covered += [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    assert sorted(covered) == DAYS
    end = assert_end_state(pipeline)
    assert end.accepted and set(end.statuses) <= {"in_sync", "rejected"}
    journal_runs = {row[0] for row in pipeline.query("SELECT DISTINCT run_id FROM push_journal")}
    assert journal_runs <= {run["runId"] for run in runs}
    print(f"\nbackfill {backfill_id}: {len(runs)} runs, end state {end.statuses}")
