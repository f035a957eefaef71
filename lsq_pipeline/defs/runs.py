"""Launching the jobs from the command line on the persistent Dagster instance, so every run also
shows in the UI, and reading back what each run did."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
from filelock import FileLock

INSTANCE_DIR = Path("instance")
# Who launched a command-line run, so a later command can tell that its process is gone.
PID_TAG = "lsq_pipeline/launcher_pid"
HOST_TAG = "lsq_pipeline/launcher_host"


def use_project_instance() -> dg.DagsterInstance:
    """The instance under `$DAGSTER_HOME`, defaulting to the project's `instance/` folder (with
    the shipped dagster.yaml: pools, run monitoring)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(INSTANCE_DIR.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    # Two commands starting at once on a new instance would both create its SQLite tables
    # and one would fail: the first creates them under a lock, the other then finds them.
    with FileLock(home / ".storage.lock"):
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)
        instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=1)
        instance.all_instigator_state()
    return instance


def sync_job_definition() -> dg.JobDefinition:
    from lsq_pipeline.defs.definitions import defs

    return defs.resolve_job_def("sync_job")


def dry_run_job_definition() -> dg.JobDefinition:
    from lsq_pipeline.defs.definitions import defs

    return defs.resolve_job_def("dry_run_job")


QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
"""Run config keeping Dagster's console logger at INFO: its DEBUG engine lines would bury the output."""


def run_config(
    full_reconcile: bool = False,
    max_change_share: float | None = None,
    retry_source_ids: list[str] | None = None,
    retry_all_failed: bool = False,
) -> dict:
    """The run config of the sync (or retry) job for the command line's options."""
    ops: dict[str, dict] = {}
    if full_reconcile:
        ops["opportunity_state"] = {"config": {"full": True}}
    plan = {
        key: value
        for key, value in (
            ("max_change_share", max_change_share),
            ("retry_source_ids", retry_source_ids),
            ("retry_all_failed", retry_all_failed or None),
        )
        if value is not None
    }
    if plan:
        ops["sync_plan"] = {"config": plan}
    return {"ops": ops} if ops else {}


def retry_job_definition() -> dg.JobDefinition:
    from lsq_pipeline.defs.definitions import defs

    return defs.resolve_job_def("retry_job")


def launch(
    first: date,
    last: date,
    dry_run: bool = False,
    full_reconcile: bool = False,
    in_process: bool = False,
    quiet: bool = True,
    config: dict | None = None,
    retry: bool = False,
) -> dg.DagsterRun:
    """Run the sync (or its dry run, or the retry job) over `first`..`last` as ONE run on the
    project instance, and write it to the run history (no daemon watches command-line runs).

    `in_process` runs every step in this process (the demo's speed); otherwise each step gets
    its own process, as under the daemon. `quiet` keeps the console to the push's progress
    (every ~10 s, info) and warnings; the full event log is in the UI. A dry retry plans only
    (`sync_plan`)."""
    instance = use_project_instance()
    job_fn = retry_job_definition if retry else dry_run_job_definition if dry_run else sync_job_definition
    tags = (
        {"dagster/partition": first.isoformat()}
        if first == last
        else {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }
    )
    tags = {**tags, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    release_dead_runs(instance)
    config = dict(config if config is not None else {} if dry_run else run_config(full_reconcile))
    if quiet:
        config = {**config, **QUIET_CONSOLE}
    selection = [dg.AssetKey("sync_plan")] if retry and dry_run else None
    if in_process:
        result = job_fn().execute_in_process(
            run_config=config, instance=instance, tags=tags, raise_on_error=False, asset_selection=selection
        )
    else:
        result = dg.execute_job(
            dg.reconstructable(job_fn), instance=instance, run_config=config, tags=tags, asset_selection=selection
        )
    run = instance.get_run_by_id(result.run_id)
    if not dry_run:
        from lsq_pipeline.defs.definitions import defs
        from lsq_pipeline.defs.history import record_run_outcome

        record_run_outcome(instance, run, defs.resources["warehouse"])
    return run


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Command-line runs of this machine whose launching process is gone (killed with SIGKILL,
    machine rebooted) stay `STARTED` and keep their pool slots forever: no daemon watches them.
    Mark them failed and give their slots back, so the next run does not wait on a dead one."""
    released = []
    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                              tags={HOST_TAG: host})
    )
    for record in records:
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if not pid or _alive(pid):
            continue
        instance.report_run_failed(run, f"its process {pid} is gone (killed); pool slots released")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


# Runs in these states may still send and answer; every other state is over.
_LIVE_STATUSES = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


def run_is_alive(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run may still be sending: the instance knows it, it has not ended, and, for a
    command-line run of this machine, its launching process is still there (a SIGKILLed run
    stays `STARTED` on the instance). A run the instance does not know is taken as dead."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in _LIVE_STATUSES:
        return False
    pid = int(run.tags.get(PID_TAG, "0") or 0)
    if pid and run.tags.get(HOST_TAG) == socket.gethostname():
        return _alive(pid)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class DaySummary:
    """What a run did for its days, read from the warehouse and the run's materializations."""

    run_id: str
    success: bool
    planned: dict[str, int]
    created: int
    updated: int
    rejected: int
    failed: int
    activities: int
    api_calls: int
    write_calls: int
    daily_budget_exhausted: bool = False
    records_waiting: int = 0


def summarize(warehouse: Path, run: dg.DagsterRun, first: date, last: date) -> DaySummary:
    instance = dg.DagsterInstance.get()
    read_calls = records_waiting = 0
    write_calls: int | None = None
    day_spent = False
    seen: set[dg.AssetKey] = set()
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        materialization = record.event_log_entry.asset_materialization
        if materialization.asset_key in seen:  # a range run repeats its metadata once per day
            continue
        seen.add(materialization.asset_key)
        calls = materialization.metadata.get("api_calls")
        if calls is not None:
            if materialization.asset_key.path[-1] == "push_journal":
                write_calls = calls.value
            else:
                read_calls += calls.value
        if materialization.asset_key.path[-1] == "push_journal" and "daily_budget_exhausted" in materialization.metadata:
            day_spent = day_spent or materialization.metadata["daily_budget_exhausted"].value
            records_waiting += materialization.metadata["records_waiting"].value
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        planned = dict(
            conn.execute(
                "SELECT action, count(*) FROM sync_plan WHERE day BETWEEN $1 AND $2 GROUP BY action", [first, last]
            ).fetchall()
        )
        journal = dict(
            conn.execute(
                """SELECT kind || ':' || status, count(*) FROM push_journal WHERE run_id = $1 GROUP BY ALL""",
                [run.run_id],
            ).fetchall()
        )
        failed = conn.execute(
            """SELECT count(DISTINCT source_id) FROM push_journal
               WHERE run_id = $1 AND kind <> 'activity' AND status = 'failed'
                 AND source_id NOT IN (SELECT source_id FROM push_journal
                                       WHERE run_id = $1 AND kind <> 'activity' AND status = 'ok')""",
            [run.run_id],
        ).fetchone()[0]
        if write_calls is None:  # the push died before its metadata: count the batches it sent
            write_calls = conn.execute(
                "SELECT count(DISTINCT batch_id) FROM push_journal WHERE run_id = $1 AND status <> 'not_sent'",
                [run.run_id],
            ).fetchone()[0]
        rejected = conn.execute(
            "SELECT count(DISTINCT (day, source_file, row_number)) FROM rejects WHERE day BETWEEN $1 AND $2",
            [first, last],
        ).fetchone()[0]
    return DaySummary(
        run_id=run.run_id,
        success=run.is_success,
        planned=planned,
        created=journal.get("create:ok", 0) + journal.get("capture:ok", 0),
        updated=journal.get("update:ok", 0),
        rejected=rejected,
        failed=failed,
        activities=journal.get("activity:ok", 0),
        api_calls=read_calls + write_calls,
        write_calls=write_calls,
        daily_budget_exhausted=day_spent,
        records_waiting=records_waiting,
    )
