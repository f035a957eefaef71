"""An account's sources as a run reads them: a record set given by its upstream Dagster asset
alone (`asset:` without `table:`) reads the table that asset names in `dagster/table_name`, as
dagster-dbt sets it on its specs (`analytics.main.loan_applications` for a DuckDB target)."""

from __future__ import annotations

import dagster as dg

from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.sources import RecordSet, Sources, SourceTable

TABLE_NAME = "dagster/table_name"


def upstream_key(source: SourceTable) -> dg.AssetKey | None:
    """The key of the upstream asset a source names (`loan_applications`, `a/b`), if any."""
    return dg.AssetKey.from_user_string(source.asset) if source.asset else None


def _text(value: object) -> str | None:
    text = value.value if isinstance(value, dg.MetadataValue) else value
    return str(text) if text else None


def upstream_table_name(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str | None:
    """The table an upstream asset writes: its definition's `dagster/table_name`, else its latest
    materialization's (an asset defined in another code location). The definition is read from the
    run's job, whose asset graph holds the whole code location; `context.repository_def` is not set
    in a run executed in process."""
    graph = context.job_def.asset_layer.asset_graph
    if graph.has(key) and (name := _text(graph.get(key).metadata.get(TABLE_NAME))):
        return name
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    return _text(materialization.metadata.get(TABLE_NAME)) if materialization else None


def _with_table(context: dg.AssetExecutionContext, settings: AccountSettings, record_set: RecordSet,
                source: SourceTable | None) -> SourceTable | None:
    if source is None or source.kind != "table" or source.table:
        return source
    table = upstream_table_name(context, upstream_key(source))
    if not table:
        raise dg.Failure(
            f"account {settings.account}: source {record_set}: the asset {source.asset} has no {TABLE_NAME}, "
            "neither in its definition nor in its latest materialization: give the table (table:)")
    return source.model_copy(update={"table": table})


def run_sources(context: dg.AssetExecutionContext, settings: AccountSettings) -> Sources:
    """The account's sources, each table named: a source given by its asset alone takes that
    asset's table, read when the run starts (the asset's definition may change between loads)."""
    sources = settings.sources()
    return Sources(applications=_with_table(context, settings, "applications", sources.applications),
                   events=_with_table(context, settings, "events", sources.events))
