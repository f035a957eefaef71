"""The shipped production files, deploy/dagster.yaml on a real PostgreSQL and deploy/workspace.yaml:
the code server, the daemon and the webserver started apart (as the systemd units do), a two-day
backfill launched through GraphQL, its runs stored in PostgreSQL and every promise kept."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psycopg2
import pytest

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import ChaosPipeline, assert_end_state, subprocess_env
from lsq_pipeline_tests.deployment.harness import (
    BIN, REPO, STARTUP_SECONDS, covered_days, launch_backfill, start, wait_for_backfill, wait_for_location,
    wait_until,
)
from lsq_pipeline_tests.postgres import PASSWORD, PASSWORD_ROLE
from lsq_pipeline_tests.processes import free_port, stop_group

FIRST_DAY = date(2026, 11, 1)
DAYS = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(2)]
BACKFILL_SECONDS = 300


@dataclass
class Deployment:
    url: str
    home: Path
    database_url: str
    pipeline: ChaosPipeline
    code_log: Path


@pytest.fixture
def deployment(tmp_path, postgres_server):
    """deploy/dagster.yaml as it ships in a new DAGSTER_HOME, its DAGSTER_PG_* variables naming a
    new database and the role that must give its password; the code server, the daemon and the
    webserver each in a process group of its own, stopped at the end; the sandbox in this process."""
    source = tmp_path / "source"
    generate(source, rows=100, days=len(DAYS), seed=43, start_day=FIRST_DAY, dirty_rate=0.0)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    database = postgres_server.new_database("dagster")
    warehouse = tmp_path / "warehouse.duckdb"
    port, code_port = free_port(), free_port()
    with run_sandbox(rate_limit_calls=0, latency_ms=5) as sandbox:
        env = subprocess_env(os.environ, sandbox_url=sandbox.url, source=source, warehouse=warehouse,
                             dagster_home=home, rate_limit_db=tmp_path / "rate_limit.sqlite")
        env.update(DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(postgres_server.port), DAGSTER_PG_DB=database,
                   DAGSTER_PG_USERNAME=PASSWORD_ROLE, DAGSTER_PG_PASSWORD=PASSWORD,
                   DAGSTER_CODE_HOST="127.0.0.1", DAGSTER_CODE_PORT=str(code_port))
        workspace = str(REPO / "deploy" / "workspace.yaml")
        processes = []
        try:
            code_log = tmp_path / "code_server.log"
            processes.append(start(["dagster", "code-server", "start", "-m", "lsq_pipeline.definitions",
                                    "-h", "127.0.0.1", "-p", str(code_port)], REPO, env, code_log))
            wait_until("the code server", lambda: serving(code_port), STARTUP_SECONDS, every=1, log=code_log,
                       process=processes[0])
            processes.append(start(["dagster-daemon", "run", "-w", workspace], REPO, env, tmp_path / "daemon.log"))
            webserver_log = tmp_path / "webserver.log"
            processes.append(start(["dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
                                   REPO, env, webserver_log))
            url = f"http://127.0.0.1:{port}/graphql"
            wait_for_location(url, processes[2], webserver_log)
            yield Deployment(url, home, postgres_server.url(database),
                             ChaosPipeline(source_dir=source, warehouse=warehouse, sandbox_url=sandbox.url), code_log)
        finally:
            for process in reversed(processes):
                stop_group(process)


def serving(port: int) -> bool:
    """The code server on `port` answers Dagster's gRPC health check."""
    check = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(check, capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + BACKFILL_SECONDS + 60)
def test_a_backfill_on_the_postgres_instance_keeps_every_promise(deployment):
    d = deployment
    backfill_id = launch_backfill(d.url, DAYS)
    runs = wait_for_backfill(d.url, backfill_id, BACKFILL_SECONDS, d.code_log)
    assert {run["status"] for run in runs} == {"SUCCESS"}, runs
    assert covered_days(runs) == DAYS

    # The instance is PostgreSQL: the backfill, its runs and their events are there, and no
    # SQLite run storage was made beside the yaml.
    run_ids = [run["runId"] for run in runs]
    with psycopg2.connect(d.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM bulk_actions WHERE key = %s", [backfill_id])
        backfill_status = cursor.fetchall()
        cursor.execute("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", [run_ids])
        stored_runs = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = ANY(%s)", [run_ids])
        (events,) = cursor.fetchone()
    assert backfill_status and backfill_status[0][0].startswith("COMPLETED"), backfill_status
    assert stored_runs == dict.fromkeys(run_ids, "SUCCESS")
    assert events > 0
    assert not (d.home / "history").exists()

    end = assert_end_state(d.pipeline)
    assert set(end.statuses) == {"in_sync"}, end.statuses
    print(f"\nbackfill {backfill_id} on PostgreSQL: {len(runs)} runs, {events} events, end state {end.statuses}")
