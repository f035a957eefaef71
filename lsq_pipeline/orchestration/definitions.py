"""One account's Definitions: its assets, checks, jobs, schedule, sensors and resources.

`LeadSquaredSyncComponent` builds it from a `defs.yaml`; tests and benchmarks build it from
settings directly. Nothing here reads the disk or fails on the environment: a run checks those
when it starts."""

from __future__ import annotations

import dagster as dg

from lsq_pipeline.orchestration.alerts import AlertWebhook
from lsq_pipeline.orchestration.assets import Execute, account_partitions, build_assets
from lsq_pipeline.orchestration.jobs import build_jobs, build_schedule
from lsq_pipeline.orchestration.resources import LeadSquaredResource, WarehouseResource
from lsq_pipeline.orchestration.sensors import build_sensors
from lsq_pipeline.orchestration.translator import Translate
from lsq_pipeline.orchestration.source import SourceResource
from lsq_pipeline.settings import (
    SANDBOX_ACCESS_KEY,
    SANDBOX_SECRET_KEY,
    AccountSettings,
    AlertSettings,
    LeadSquaredSettings,
    SourceSettings,
)
from lsq_pipeline.mapping import load_mapping


def _key(variable: str, sandbox: bool, sandbox_key: str) -> str | dg.EnvVar:
    """A key by the NAME of its variable, so the UI shows the name, never the value; the embedded
    sandbox takes its own keys."""
    return sandbox_key if sandbox else dg.EnvVar(variable)


def build_resources(settings: AccountSettings) -> dict[str, dg.ConfigurableResource]:
    """The account's resources under its keys (`default_warehouse`, `acme_warehouse`...), each
    built on its group of the settings."""
    resources = {
        "warehouse": WarehouseResource.at(settings.warehouse_location()),
        "leadsquared": LeadSquaredResource(
            **settings.values_of(LeadSquaredSettings),
            access_key=_key(settings.access_key_env, settings.sandbox, SANDBOX_ACCESS_KEY),
            secret_key=_key(settings.secret_key_env, settings.sandbox, SANDBOX_SECRET_KEY),
        ),
        "source": SourceResource(**settings.values_of(SourceSettings)),
        "alert_webhook": AlertWebhook(**settings.values_of(AlertSettings)),
    }
    return {settings.resource_key(role): resource for role, resource in resources.items()}


def build_definitions(
    settings: AccountSettings, translate: Translate | None = None, execute: Execute | None = None
) -> dg.Definitions:
    """Read the mapping if its file is there (a bad one fails here, naming the file and the key;
    a missing one fails the run, when it starts); `translate` turns each asset's spec into the
    account's own (keys, groups, owners...), `execute` runs each step (default: as it is)."""
    mapping = load_mapping(settings.path("mapping")) if settings.path("mapping").is_file() else None
    partitions = account_partitions(settings)
    resources = build_resources(settings)
    assets, checks, keys = build_assets(settings, partitions, mapping, translate, execute)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=build_jobs(settings, keys),
        schedules=[build_schedule(settings)],
        sensors=build_sensors(settings, partitions, resources, keys),
        resources=resources,
    )
