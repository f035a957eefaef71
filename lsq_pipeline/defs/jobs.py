"""Jobs and schedules: the sync, its dry run, the retry, and the daily schedule for the previous day."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from lsq_pipeline.defs.source import SourceResource

PLAN_ASSETS = dg.AssetSelection.groups("extract", "transform")

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.all(),
    description="Extract, transform, plan, push to LeadSquared and reconcile the selected days.",
)

dry_run_job = dg.define_asset_job(
    "dry_run_job",
    selection=PLAN_ASSETS,
    description="Plan the selected days and report the batches, sending nothing to LeadSquared.",
)

retry_job = dg.define_asset_job(
    "retry_job",
    selection=dg.AssetSelection.assets("sync_plan", "push_journal", "opportunity_state"),
    description="Send failed records again now: set sync_plan's config `retry_source_ids` (or "
    "`retry_all_failed: true`); refused versions and records out of attempts included. Any day "
    "will do as the partition: the records come from whatever day holds them.",
)



@dg.schedule(
    cron_schedule="0 3 * * *",
    job=sync_job,
    execution_timezone="UTC",
    name="daily_sync_schedule",
    description="Every night at 03:00 UTC, sync the day that just ended; a day with no folder is "
    "skipped with a message, not failed.",
)
def daily_sync_schedule(context: dg.ScheduleEvaluationContext, source: SourceResource):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    if not (source.source_path() / day).is_dir():
        return dg.SkipReason(f"no folder {source.source_path() / day}: nothing to sync for {day}")
    return dg.RunRequest(run_key=f"scheduled-{day}", partition_key=day)
