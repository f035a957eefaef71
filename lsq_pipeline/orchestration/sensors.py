"""One account's sensors: run history for every finished sync, alerts for failed or blocked ones,
and a sync launched as soon as a day's export files are complete."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg

from lsq_pipeline.orchestration.alerts import AlertWebhook
from lsq_pipeline.orchestration.assets import ACCOUNT_TAG, SOURCE_ASSETS, account_key, resource_keys, source_resource
from lsq_pipeline.orchestration.history import record_run_outcome
from lsq_pipeline.orchestration.jobs import PLAN_ASSETS, SEND_ASSETS
from lsq_pipeline.settings import AccountSettings, source_days
from lsq_pipeline.sync.warehouse import SOURCE_FILES


def sends_for(run: dg.DagsterRun, settings: AccountSettings) -> bool:
    """Whether a finished run synced this account: its sync or retry job, or an asset job the UI
    launched ("Materialize") over the account's assets. Dry runs send nothing and are not recorded."""
    if run.tags.get(ACCOUNT_TAG):
        return run.tags[ACCOUNT_TAG] == settings.account and run.job_name != settings.name("dry_run_job")
    own = {account_key(settings, *path) for path in (*PLAN_ASSETS, *SEND_ASSETS)}
    return not own.isdisjoint(run.asset_selection or ())


WILL_RETRY_TAG = "dagster/will_retry"
"""Set by Dagster on a failed run that the instance's run retries will launch again."""


def _alert(context: dg.RunStatusSensorContext, webhook: AlertWebhook, summary: dict[str, object]) -> None:
    if webhook.receiver_url():
        sent = webhook.post(summary)
        context.log.info(f"alert for run {summary['run_id']} {'sent' if sent else 'NOT delivered'}")


def day_folder_state(folder: Path) -> dict[str, list[float]] | None:
    """Size and modification time of the day's export files; None while one is missing."""
    files = [folder / name for name in SOURCE_FILES]
    if not all(path.is_file() for path in files):
        return None
    return {path.name: [path.stat().st_size, path.stat().st_mtime] for path in files}


def build_sensors(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, resources: dict[str, dg.ConfigurableResource]
) -> list[dg.SensorDefinition]:
    """`record_successful_runs`, `alert_on_failed_runs`, `new_source_files` and `source_files_arrived`.
    Run-status sensors take no resource keys, so they build the account's resources themselves
    (`dg.build_resources`, which resolves their `EnvVar`s when the sensor runs)."""

    def built() -> AbstractContextManager:
        return dg.build_resources({role: resources[settings.resource_key(role)] for role in ("warehouse", "alert_webhook")})

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=settings.name("record_successful_runs"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes each successful sync run of the account to sync_runs; one whose ERROR check "
        "failed (e.g. one_opportunity_per_record) is check_failed and alerts like a failed run.",
    )
    def record_successful_runs(context: dg.RunStatusSensorContext):
        if sends_for(context.dagster_run, settings):
            with built() as account:
                row = record_run_outcome(context.instance, context.dagster_run, account.warehouse)
                if row and row["status"] == "check_failed":  # a green run whose ERROR check failed
                    _alert(context, account.alert_webhook, row)

    @dg.run_failure_sensor(
        name=settings.name("alert_on_failed_runs"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes each failed or blocked sync run of the account to sync_runs and POSTs a JSON "
        "summary to the alert webhook when its variable is set; a run the instance will retry alerts only "
        "if its last try fails.",
    )
    def alert_on_failed_runs(context: dg.RunFailureSensorContext):
        if not sends_for(context.dagster_run, settings):
            return
        with built() as account:
            row = record_run_outcome(context.instance, context.dagster_run, account.warehouse)
            if context.dagster_run.tags.get(WILL_RETRY_TAG) == "true":
                context.log.info(f"run {context.dagster_run.run_id} failed and will be retried: no alert yet")
                return
            _alert(context, account.alert_webhook, row or {
                "run_id": context.dagster_run.run_id, "job": context.dagster_run.job_name, "status": "failed",
                "first_day": None, "last_day": None, "reason": context.failure_event.message,
            })

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
        for day in (d.isoformat() for d in source_days(source.source_path())):
            state = day_folder_state(source.source_path() / day)
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

    @dg.sensor(
        name=settings.name("source_files_arrived"),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=resource_keys(settings, "source"),
        description="Reports each day's export file as it arrives or changes (size, modified time) on the "
        "source/applications and source/events assets, so the UI shows when each export came and a late "
        "one shows as stale. Launches nothing.",
    )
    def source_files_arrived(context: dg.SensorEvaluationContext):
        """The cursor keeps the size and modified time last reported per day and file; only what
        changed is reported again, as a runless materialization of that day's partition."""
        source = source_resource(context.resources, settings)
        reported: dict[str, list[float]] = json.loads(context.cursor) if context.cursor else {}
        partition_keys = set(partitions.get_partition_keys())
        events = []
        for day in source_days(source.source_path()):
            for file_name, name in SOURCE_ASSETS.items():
                path = source.source_path() / day.isoformat() / file_name
                if day.isoformat() not in partition_keys or not path.is_file():
                    continue
                seen = [path.stat().st_size, path.stat().st_mtime]
                if reported.get(f"{day}/{file_name}") == seen:
                    continue
                reported[f"{day}/{file_name}"] = seen
                events.append(dg.AssetMaterialization(
                    asset_key=account_key(settings, "source", name),
                    partition=day.isoformat(),
                    metadata={
                        "path": dg.MetadataValue.path(str(path)),
                        "size_bytes": dg.MetadataValue.int(seen[0]),
                        "modified_at": dg.MetadataValue.timestamp(seen[1]),
                    },
                ))
        context.update_cursor(json.dumps(reported))
        if not events:
            return dg.SkipReason("no new or changed export file")
        return dg.SensorResult(asset_events=events)

    return [record_successful_runs, alert_on_failed_runs, new_source_files, source_files_arrived]
