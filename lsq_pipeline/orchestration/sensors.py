"""One account's sensors: run history for every finished sync, alerts for failed or blocked ones,
and a sync launched as soon as a day's export files are complete."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import dagster as dg

from lsq_pipeline.orchestration.assets import resource_keys, source_resource
from lsq_pipeline.orchestration.history import record_run_outcome
from lsq_pipeline.orchestration.jobs import ACCOUNT_TAG
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.sync.warehouse import SOURCE_FILES


def sends_for(run: dg.DagsterRun, settings: AccountSettings) -> bool:
    """Whether a finished run synced this account: its sync or retry job, or an asset job the UI
    launched ("Materialize") over the account's assets. Dry runs send nothing and are not recorded."""
    if run.tags.get(ACCOUNT_TAG):
        return run.tags[ACCOUNT_TAG] == settings.account and run.job_name != settings.name("dry_run_job")
    prefix = settings.key_prefix()
    return any(
        key.path[:-1] == prefix for key in (run.asset_selection or ())
    )


def day_folder_state(folder: Path) -> dict[str, list[float]] | None:
    """Size and modification time of the day's export files; None while one is missing."""
    files = [folder / name for name in SOURCE_FILES]
    if not all(path.is_file() for path in files):
        return None
    return {path.name: [path.stat().st_size, path.stat().st_mtime] for path in files}


def build_sensors(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, resources: dict[str, dg.ConfigurableResource]
) -> list[dg.SensorDefinition]:
    """`record_successful_runs`, `alert_on_failed_runs` and `new_source_files` of the account.
    Run-status sensors take no resource keys, so they build the account's resources themselves
    (`dg.build_resources`, which resolves their `EnvVar`s when the sensor runs)."""

    def built() -> AbstractContextManager:
        return dg.build_resources({role: resources[settings.name(role)] for role in ("warehouse", "alert_webhook")})

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=settings.name("record_successful_runs"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes each successful sync run of the account to sync_runs.",
    )
    def record_successful_runs(context: dg.RunStatusSensorContext):
        if sends_for(context.dagster_run, settings):
            with built() as account:
                record_run_outcome(context.instance, context.dagster_run, account.warehouse)

    @dg.run_failure_sensor(
        name=settings.name("alert_on_failed_runs"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes each failed or blocked sync run of the account to sync_runs and POSTs a JSON "
        "summary to the alert webhook when its variable is set.",
    )
    def alert_on_failed_runs(context: dg.RunFailureSensorContext):
        if not sends_for(context.dagster_run, settings):
            return
        with built() as account:
            row = record_run_outcome(context.instance, context.dagster_run, account.warehouse)
            summary = row or {"run_id": context.dagster_run.run_id, "job": context.dagster_run.job_name,
                              "status": "failed", "first_day": None, "last_day": None,
                              "reason": context.failure_event.message}
            if account.alert_webhook.url:
                sent = account.alert_webhook.post(summary)
                context.log.info(f"alert for run {summary['run_id']} {'sent' if sent else 'NOT delivered'}")

    @dg.sensor(
        job_name=settings.name("sync_job"),
        name=settings.name("new_source_files"),
        minimum_interval_seconds=30,
        required_resource_keys=resource_keys(settings, "source"),
        description="Syncs a day as soon as its folder holds both export files and they have not changed "
        "for file_settle_seconds (default a minute), so nobody waits for the schedule. Off until turned "
        "on in Automation, like the schedule.",
    )
    def new_source_files(context: dg.SensorEvaluationContext):
        """The cursor remembers, per day, the files' sizes and times and since when they are still;
        a day is launched once per version of its files (the run key), so a changed file is synced again."""
        source = source_resource(context.resources, settings)
        seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        requests: list[dg.RunRequest] = []
        waiting: list[str] = []
        partition_keys = set(partitions.get_partition_keys())
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

    return [record_successful_runs, alert_on_failed_runs, new_source_files]
