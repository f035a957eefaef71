"""Jobs and schedules: the sync, its dry run, and the daily schedule for the previous day."""

from __future__ import annotations

import dagster as dg

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

daily_sync_schedule = dg.build_schedule_from_partitioned_job(
    sync_job,
    name="daily_sync_schedule",
    hour_of_day=3,
    description="Every night at 03:00 UTC, sync the day that just ended.",
)
