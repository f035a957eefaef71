"""The code location: assets, checks, jobs, schedule and resources, configured from `LSQ_*` settings."""

from __future__ import annotations

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from lsq_pipeline.defs import assets
from lsq_pipeline.defs.alerts import AlertWebhook
from lsq_pipeline.defs.jobs import daily_sync_schedule, dry_run_job, retry_job, sync_job
from lsq_pipeline.defs.sensors import alert_on_failed_runs, new_source_files, record_successful_runs
from lsq_pipeline.defs.resources import LeadSquaredResource
from lsq_pipeline.defs.source import SourceResource
from lsq_pipeline.leadsquared.budget import BUDGET_FIELDS
from lsq_pipeline.settings import PipelineSettings, load_settings


def _secret(variable: str, value: str) -> str | dg.EnvVar:
    """A key (or a URL that may carry a password) set in the environment stays an `EnvVar`, so
    the UI shows its name, never its value."""
    return dg.EnvVar(variable) if os.environ.get(variable) == value else value


def build_resources(settings: PipelineSettings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": DuckDBResource(
            database=str(settings.warehouse),
            connection_config={"memory_limit": settings.duckdb_memory_limit},
        ),
        "leadsquared": LeadSquaredResource(
            api_host=settings.api_host,
            access_key=_secret("LSQ_ACCESS_KEY", settings.access_key_value()),
            secret_key=_secret("LSQ_SECRET_KEY", settings.secret_key_value()),
            sandbox_dir=str(settings.sandbox_dir),
            plan=settings.plan or "",
            **{name: getattr(settings, name) for name in BUDGET_FIELDS},
            rate_limit_db=settings.rate_limit_db,
            rate_limit_redis=_secret("LSQ_RATE_LIMIT_REDIS", settings.rate_limit_redis),
            max_in_flight=settings.max_in_flight,
            leads_in_bulk=settings.leads_in_bulk,
            max_retries=settings.max_retries,
            backoff_base=settings.retry_backoff_seconds,
        ),
        "source": SourceResource(
            source_dir=str(settings.source_dir),
            mapping_path=str(settings.mapping),
            max_reject_rate=settings.max_reject_rate,
            max_change_share=settings.max_change_share,
            max_attempts=settings.max_attempts,
            read_back_grace_seconds=settings.read_back_grace_seconds,
            file_settle_seconds=settings.file_settle_seconds,
        ),
        "alert_webhook": AlertWebhook(url=settings.alert_webhook),
    }


def build_definitions(settings: PipelineSettings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    settings.check_paths()
    return dg.Definitions(
        assets=[assets.extract, assets.transform, assets.sync_plan, assets.push_journal, assets.opportunity_state],
        jobs=[sync_job, dry_run_job, retry_job],
        schedules=[daily_sync_schedule],
        sensors=[record_successful_runs, alert_on_failed_runs, new_source_files],
        resources=build_resources(settings),
    )


defs = build_definitions()
