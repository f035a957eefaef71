"""Sensors: run history for every finished sync, alerts for failed or blocked ones, and a sync
launched as soon as a day's export files are complete."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from lsq_pipeline.defs.alerts import AlertWebhook
from lsq_pipeline.defs.history import record_run_outcome
from lsq_pipeline.defs.jobs import dry_run_job, sync_job
from lsq_pipeline.defs.partitions import daily_partitions
from lsq_pipeline.defs.source import SourceResource
from lsq_pipeline.sync.warehouse import SOURCE_FILES

# Runs that send: the sync, the retry, and the asset jobs the UI launches ("Materialize all").
NOT_RECORDED_JOBS = {dry_run_job.name}


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes each successful sync run to sync_runs.",
)
def record_successful_runs(context: dg.RunStatusSensorContext, warehouse: DuckDBResource):
    if context.dagster_run.job_name not in NOT_RECORDED_JOBS:
        record_run_outcome(context.instance, context.dagster_run, warehouse)


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes each failed or blocked sync run to sync_runs and POSTs a JSON summary to "
    "LSQ_ALERT_WEBHOOK when it is set.",
)
def alert_on_failed_runs(
    context: dg.RunFailureSensorContext, warehouse: DuckDBResource, alert_webhook: AlertWebhook
):
    if context.dagster_run.job_name in NOT_RECORDED_JOBS:
        return
    row = record_run_outcome(context.instance, context.dagster_run, warehouse)
    summary = row or {"run_id": context.dagster_run.run_id, "job": context.dagster_run.job_name,
                      "status": "failed", "first_day": None, "last_day": None,
                      "reason": context.failure_event.message}
    if alert_webhook.url:
        sent = alert_webhook.post(summary)
        context.log.info(f"alert for run {summary['run_id']} {'sent' if sent else 'NOT delivered'}")


def day_folder_state(folder: Path) -> dict[str, list[float]] | None:
    """Size and modification time of the day's export files; None while one is missing."""
    files = [folder / name for name in SOURCE_FILES]
    if not all(path.is_file() for path in files):
        return None
    return {path.name: [path.stat().st_size, path.stat().st_mtime] for path in files}


@dg.sensor(
    job=sync_job,
    minimum_interval_seconds=30,
    description="Syncs a day as soon as its folder under LSQ_SOURCE_DIR holds both export files and they "
    "have not changed for LSQ_FILE_SETTLE_SECONDS (default a minute), so nobody waits until 03:00. "
    "Off until turned on in Automation, like the schedule.",
)
def new_source_files(context: dg.SensorEvaluationContext, source: SourceResource):
    """The cursor remembers, per day, the files' sizes and times and since when they are still;
    a day is launched once per version of its files (the run key), so a changed file is synced again."""
    seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    requests: list[dg.RunRequest] = []
    waiting: list[str] = []
    partition_keys = set(daily_partitions.get_partition_keys())
    for folder in sorted(source.source_path().iterdir()) if source.source_path().is_dir() else []:
        try:
            day = date.fromisoformat(folder.name).isoformat()
        except ValueError:
            continue
        state = day_folder_state(folder)
        if state is None:
            continue
        previous = seen.get(day, {})
        if previous.get("files") != state:
            seen[day] = {"files": state, "still_since": now}
            waiting.append(day)
            continue
        if now - previous["still_since"] < source.file_settle_seconds:
            waiting.append(day)
            continue
        if day not in partition_keys:  # today's folder: its partition starts when the day ends
            waiting.append(day)
            continue
        version = "-".join(f"{size}:{mtime}" for size, mtime in state.values())
        requests.append(dg.RunRequest(run_key=f"{day}:{version}", partition_key=day))
    context.update_cursor(json.dumps(seen))
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SkipReason(
        f"waiting for files to settle: {', '.join(waiting)}" if waiting else "no new complete day folder"
    )
