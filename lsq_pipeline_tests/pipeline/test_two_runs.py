"""Recovery is scoped to the dead run: two runs at once on an instance without pool limits (a new
local instance has none), the second starting its push while the first has calls in the
air. The live run's journal rows are left alone and end answered; only a dead run's rows
become `unknown`. The first run is a process of its own, as Dagster runs are, on an instance
both share: the two take the DuckDB file's lock in turn."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from lsq_pipeline.orchestration.liveness import HOST_TAG, PID_TAG, run_is_alive
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY, duckdb_only
from lsq_pipeline_tests.pipeline.harness import Pipeline

SECOND_DAY = FIRST_DAY + timedelta(days=1)


def _write_calls(pipeline: Pipeline) -> int:
    calls = pipeline.stats()["Calls"]
    return sum(calls.get(name, 0) for name in ("BulkAdd", "Capture", "BulkUpdate", "BulkActivities"))


def _failures(result) -> list[str]:
    """What made a run fail: its steps' errors and its failed blocking checks."""
    errors = [event.step_failure_data.error.to_string() for event in result.get_step_failure_events()]
    checks = [f"{event.asset_check_evaluation_data.check_name} failed" for event in result.all_events
              if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
              and not event.asset_check_evaluation_data.passed]
    return errors + checks


def _run_first_day(source: Path, warehouse: Path, url: str, home: str) -> None:
    """The first run, in a spawned process: exits 1, its failures on stderr, if it fails."""
    with dg.DagsterInstance.from_config(home) as instance:
        result = Pipeline(source, warehouse, url, instance=instance).run(FIRST_DAY)
        if not result.success:
            print(_failures(result), file=sys.stderr)
            sys.exit(1)


@pytest.mark.timeout(240)
@duckdb_only
def test_a_second_run_leaves_the_rows_of_a_live_run_alone(tmp_path, start_sandbox, warehouse_target):
    """On a DuckDB file only: there the run's liveness decides whose `sent` rows are left alone. On
    PostgreSQL a push holds the account's writer lock, so the second run waits for the first's push
    to end and the two never overlap (two runs at once there: test_postgres_concurrency)."""
    source = tmp_path / "source"
    generate(source, rows=120, days=2, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    # Every call takes 1.5 s, so the first run's push keeps calls in the air for a while.
    sandbox = start_sandbox(latency_ms=1500)
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))
    first = multiprocessing.get_context("spawn").Process(
        target=_run_first_day, args=(source, warehouse_target, sandbox.url, str(home)))
    first.start()
    second = Pipeline(source, warehouse_target, sandbox.url, instance=instance)
    deadline = time.monotonic() + 120
    while _write_calls(second) == 0 and time.monotonic() < deadline and first.exitcode is None:
        time.sleep(0.1)
    assert _write_calls(second) > 0, "the first run never started its push"
    (live,) = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
    assert run_is_alive(instance, live.run_id)

    result = second.run(SECOND_DAY)
    first.join(timeout=180)
    assert first.exitcode == 0, "the first run failed (its errors are on stderr)"
    assert result.success, _failures(result)

    first_id, second_id = live.run_id, result.run_id
    rows = second.query("SELECT run_id, status, sent_at, answered_at FROM push_journal")
    second_started = min(sent for run_id, _, sent, _ in rows if run_id == second_id)
    in_the_air = [r for r in rows if r[0] == first_id and r[2] < second_started and r[3] > second_started]
    assert in_the_air, "the second run's push did not start while the first had calls in the air"
    assert {status for run_id, status, _, _ in rows if run_id == first_id} <= {"ok", "failed"}
    assert not second.query("SELECT 1 FROM push_journal WHERE status IN ('unknown', 'sent')")
    assert second.scalar("SELECT count(*) FROM activity_state WHERE status = 'unknown'") == 0
    (pushed,) = [m for m in result.asset_materializations_for_node("push")][:1]
    assert pushed.metadata["run_unknown_from_dead_runs"].value == 0


def test_a_run_is_dead_when_it_ended_or_its_launcher_is_gone(tmp_path):
    instance = dg.DagsterInstance.ephemeral()

    @dg.op
    def nothing() -> None:
        pass

    @dg.job
    def job() -> None:
        nothing()

    finished = job.execute_in_process(instance=instance).run_id
    assert not run_is_alive(instance, finished)
    assert not run_is_alive(instance, "no-such-run")

    def started_run(pid: int) -> str:
        run = instance.create_run_for_job(job, tags={PID_TAG: str(pid), HOST_TAG: socket.gethostname()})
        instance.handle_run_event(run.run_id, dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name))
        return run.run_id

    assert run_is_alive(instance, started_run(os.getpid()))
    gone = started_run(_a_finished_pid())
    assert instance.get_run_by_id(gone).status == dg.DagsterRunStatus.STARTED
    assert not run_is_alive(instance, gone)


def _a_finished_pid() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
