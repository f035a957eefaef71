"""One account's jobs and schedule: the sync, its dry run, the retry, and the scheduled sync (of the previous
day, or of a snapshot for an unpartitioned account)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from lsq_pipeline.orchestration.assets import resource_keys, run_tags, source_resource
from lsq_pipeline.settings import AccountSettings

SETTINGS_METADATA = "lsq_pipeline/settings"
"""The sync job's metadata key holding the account's settings (no secret: keys are variable names)."""
KEYS_METADATA = "lsq_pipeline/asset_keys"
"""The sync job's metadata key holding each asset's translated key, by its name in the account."""
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor, "inherit": None}
PLAN_ASSETS = ("raw_applications", "raw_events", "opportunity_records", "activity_records", "rejects", "sync_plan")
SEND_ASSETS = ("leadsquared/opportunities", "leadsquared/activities", "opportunity_state")
"""The assets (by name in the account) the jobs select: the plan, and what sends and confirms it."""


def build_jobs(settings: AccountSettings, asset_keys: dict[str, dg.AssetKey]) -> list[dg.UnresolvedAssetJobDefinition]:
    """`sync_job`, `dry_run_job` and `retry_job` of the account, on its executor, selecting its
    assets by their (translated) keys; each run is tagged with the account, so the UI can filter
    one account's runs."""
    def keys(*names: str) -> dg.AssetSelection:
        return dg.AssetSelection.assets(*(asset_keys[name] for name in names))

    common = {"executor_def": EXECUTORS[settings.executor], "tags": run_tags(settings)}
    return [
        dg.define_asset_job(
            settings.name("sync_job"),
            selection=keys(*PLAN_ASSETS, *SEND_ASSETS),
            description="Extract, transform, plan, push to LeadSquared and reconcile the selected days.",
            metadata={SETTINGS_METADATA: settings.model_dump_json(  # source_dir is the short form of source
                          exclude={"source_dir"} if settings.source else None),
                      KEYS_METADATA: {name: key.to_user_string() for name, key in asset_keys.items()}},
            **common,
        ),
        dg.define_asset_job(
            settings.name("dry_run_job"),
            selection=keys(*PLAN_ASSETS),
            description="Plan the selected days and report the batches, sending nothing to LeadSquared.",
            **common,
        ),
        dg.define_asset_job(
            settings.name("retry_job"),
            selection=keys("sync_plan", *SEND_ASSETS),
            description="Send failed records again now: set sync_plan's config `retry_source_ids` (or "
            "`retry_all_failed: true`); refused versions and records out of attempts included. " + (
                "Launch it over the days that hold the records' latest versions (`lsq-pipeline retry` does): "
                "a retry materializes those days and no other." if settings.daily else
                "The records are sent from their latest version, planned under the run's day."),
            **common,
        ),
    ]


def settings_of(job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition) -> AccountSettings | None:
    """The account a sync job belongs to, from its metadata (None for any other job)."""
    value = (job.metadata or {}).get(SETTINGS_METADATA)
    return None if value is None else AccountSettings.model_validate_json(getattr(value, "value", value))


def keys_of_job(job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition) -> dict[str, dg.AssetKey]:
    """The account's asset keys by name, from its sync job's metadata."""
    value = (job.metadata or {})[KEYS_METADATA]
    return {name: dg.AssetKey.from_user_string(key) for name, key in getattr(value, "value", value).items()}


def build_schedule(settings: AccountSettings) -> dg.ScheduleDefinition:
    """The daily sync of the day that just ended, on the account's cron (UTC); a snapshot account's
    sync of the whole source, one a tick."""
    if not settings.daily:
        return _snapshot_schedule(settings)

    @dg.schedule(
        cron_schedule=settings.schedule,
        job_name=settings.name("sync_job"),
        execution_timezone="UTC",
        name=settings.name("daily_sync_schedule"),
        required_resource_keys=resource_keys(settings, "source"),
        description="Sync the day that just ended; a day with no folder is skipped with a message, not failed.",
    )
    def daily_sync_schedule(context: dg.ScheduleEvaluationContext):
        source = source_resource(context.resources, settings)
        day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        if not (source.source_path() / day).is_dir():
            return dg.SkipReason(f"no folder {source.source_path() / day}: nothing to sync for {day}")
        return dg.RunRequest(run_key=f"scheduled-{day}", partition_key=day)

    return daily_sync_schedule


def _snapshot_schedule(settings: AccountSettings) -> dg.ScheduleDefinition:
    @dg.schedule(
        cron_schedule=settings.schedule,
        job_name=settings.name("sync_job"),
        execution_timezone="UTC",
        name=settings.name("daily_sync_schedule"),
        description="Sync a snapshot of the whole source, one a tick: only what changed since the last run is sent.",
    )
    def snapshot_sync_schedule(context: dg.ScheduleEvaluationContext):
        return dg.RunRequest(run_key=f"snapshot-{context.scheduled_execution_time.isoformat()}")

    return snapshot_sync_schedule
