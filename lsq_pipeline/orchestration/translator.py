"""Every asset spec of one account, by the asset's name in the account: keys, groups, kinds,
owners, deps, freshness, automation and column lineage, each put through the account's
translation (YAML `translation:`, or a subclass's `get_asset_spec`) in lineage order, so a renamed
upstream key is what its downstream assets depend on.

The graph starts at the source of each record set: its export files (`source/applications`, an
observed asset of CSV or Parquet files), its table or query (the same key, an external asset with `dagster/table_name`
or the query), or the upstream Dagster asset that writes the table (`asset:`, e.g. a dbt model),
which the extract then depends on in place of an asset of ours.

The mapping is a column-to-field map, so the column lineage of what LeadSquared holds is exact:
`mx_Custom_3` <- `raw_applications.amount` for export files, and for a table or query the source's
own column, `mx_Custom_3` <- `analytics.loan_applications.amount` (on the source's asset).
`opportunity_records` keeps its fields in one JSON column, so the lineage goes from those columns
straight to the LeadSquared fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
from dagster._utils.schedules import get_smallest_cron_interval

from lsq_pipeline.mapping import FieldSpec, Mapping, template_columns
from lsq_pipeline.orchestration.metadata import source_asset_metadata
from lsq_pipeline.orchestration.upstream import TABLE_NAME, upstream_key
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.sources import RecordSet, SourceTable
from lsq_pipeline.steps.extract import RAW_TABLES
from lsq_pipeline.warehouse.connection import Warehouse

STEPS = ("source", "extract", "transform", "plan", "push", "reconcile")
"""The steps, as a translation's templates see them (`{{ data.step }}`)."""


@dataclass(frozen=True)
class StepAsset:
    """One asset of a step, as the account would make it: what a translation is given."""

    step: str
    """One of STEPS."""
    name: str
    """The asset's name in the account (`raw_applications`, `leadsquared/opportunities`)."""
    spec: dg.AssetSpec
    """Its spec before the translation."""


Translate = Callable[[StepAsset], dg.AssetSpec]


@dataclass(frozen=True)
class _Asset:
    step: str
    description: str
    deps: tuple[str, ...] = ()
    table: str | None = None
    """The warehouse table it is (a table asset: the warehouse's kind and `dagster/table_name`)."""
    kinds: tuple[str, ...] = ()


RECORD_SETS: dict[RecordSet, tuple[str, str]] = {record_set: (f"source/{record_set}", table)
                                                 for record_set, table in RAW_TABLES.items()}
"""Each record set's source asset and the raw table the extract loads it into."""
ASSETS: dict[str, _Asset] = {
    "source/applications": _Asset("source", "Each day's applications export (CSV or Parquet) in its folder, as "
                                  "exported; reported by the source_files_arrived sensor (size and modified time), "
                                  "so a late export shows as stale.", kinds=("csv",)),
    "source/events": _Asset("source", "Each day's events export (CSV or Parquet) in its folder, as exported; "
                            "reported by the source_files_arrived sensor (size and modified time), so a late "
                            "export shows as stale.", kinds=("csv",)),
    "raw_applications": _Asset("extract", "Each day's applications export (CSV or Parquet), the mapping's columns "
                               "as text, as exported.",
                               ("source/applications",), "raw_applications"),
    "raw_events": _Asset("extract", "Each day's events export (CSV or Parquet), the mapping's columns as text, "
                         "as exported.",
                         ("source/events",), "raw_events"),
    "opportunity_records": _Asset("transform", "Accepted applications, normalised and mapped to LeadSquared "
                                  "fields; the latest version of a record in a day wins.",
                                  ("raw_applications",), "opportunity_records"),
    "activity_records": _Asset("transform", "Accepted application events mapped to LeadSquared activities.",
                               ("raw_events", "raw_applications"), "activity_records"),
    "rejects": _Asset("transform", "Every rejected source row with the field and the reason: nothing is dropped "
                      "silently.", ("raw_applications", "raw_events"), "rejects"),
    "sync_plan": _Asset("plan", "What to send: creates, updates with only the changed fields, activities; "
                        "unchanged and stale records send nothing.",
                        ("opportunity_records", "activity_records"), "sync_plan"),
    "leadsquared/opportunities": _Asset(
        "push", "The opportunities in LeadSquared for the source records: the push creates and updates them "
        "(each call journalled in the table push_journal before it goes and after its answer); each field's "
        "schema, owner and source column come from the mapping.", ("sync_plan",), kinds=("leadsquared",)),
    "leadsquared/activities": _Asset(
        "push", "The activities the push adds to those opportunities, from the events export.",
        ("sync_plan",), kinds=("leadsquared",)),
    "opportunity_state": _Asset(
        "reconcile", "One row per source record: its opportunity id, what was sent, what LeadSquared holds "
        "(read back with GetOpportunitiesById) and whether they agree.",
        ("leadsquared/opportunities", "leadsquared/activities"), "opportunity_state", ("leadsquared",)),
}
"""Every asset of an account, upstream before downstream."""


USER = "user"
"""The type of a field that holds a LeadSquared user (the owner), sent as the user's id."""


def _columns(spec: FieldSpec) -> list[str]:
    return [spec.column] if spec.column else template_columns(spec.template or "")


def _opportunity_fields(mapping: Mapping) -> list[tuple[str, str, str, list[str]]]:
    """(schema name, type, owner, source columns) of every opportunity field LeadSquared holds."""
    opportunity = mapping.opportunity
    fields = [(opportunity.source_id.field, "string", "source", [opportunity.source_id.column])]
    fields += [(name, spec.type, spec.owner, _columns(spec)) for name, spec in opportunity.fields.items()]
    fields.append((opportunity.owner.field, USER, "source", [opportunity.owner.column]))
    if opportunity.status_comment:
        comment = opportunity.status_comment
        fields.append((comment.field, "string", "source", template_columns(comment.template)))
    return fields


def _activity_fields(mapping: Mapping) -> list[tuple[str, str, str, list[str]]]:
    """(field, type, owner, source columns) of the activities: their common columns, then each type's fields."""
    events = mapping.events
    fields = [
        ("ActivityEvent", "number", "source", [events.type_column]),
        ("ActivityDateTime", "datetime", "source", [events.occurred_at_column]),
        ("ActivityOwnerEmail", "email", "source", [events.owner_column]),
    ]
    if events.note:
        fields.append(("ActivityNote", "string", "source", _columns(events.note)))
    seen = {name for name, *_ in fields}
    for activity in events.types.values():
        for name, spec in activity.fields.items():
            if name not in seen:
                seen.add(name)
                fields.append((name, spec.type, spec.owner, _columns(spec)))
    return fields


def _schema(fields: list[tuple[str, str, str, list[str]]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name, type_, description=f"owned by the {'CRM' if owner == 'crm' else 'source'}; "
                                                f"from {', '.join(columns)}", tags={"owner": owner})
        for name, type_, owner, columns in fields
    ])


def _lineage(fields: list[tuple[str, str, str, list[str]]], source: dg.AssetKey) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(deps_by_column={
        name: [dg.TableColumnDep(asset_key=source, column_name=column) for column in columns]
        for name, _, _, columns in fields
    })


def opportunities_metadata(mapping: Mapping, raw_applications: dg.AssetKey) -> dict[str, object]:
    """Column schema and lineage of the opportunities, for the asset's spec."""
    fields = _opportunity_fields(mapping)
    return {"dagster/column_schema": _schema(fields), "dagster/column_lineage": _lineage(fields, raw_applications)}


def activities_metadata(mapping: Mapping, raw_events: dg.AssetKey) -> dict[str, object]:
    """Column schema and lineage of the activities, for the asset's spec."""
    fields = _activity_fields(mapping)
    return {"dagster/column_schema": _schema(fields), "dagster/column_lineage": _lineage(fields, raw_events)}


def account_key(settings: AccountSettings, name: str) -> dg.AssetKey:
    """An asset's key before any translation: its name under the account's prefix."""
    return dg.AssetKey([*settings.key_prefix(), *name.split("/")])


def op_name(settings: AccountSettings, step: str) -> str:
    """A step's op name, from the account and the step, never from a translated key (`sync_plan`,
    `acme__sync_plan`): what run config addresses."""
    return account_key(settings, step).to_python_identifier()


def freshness_policy(settings: AccountSettings) -> dg.FreshnessPolicy:
    """Fresh when materialized in the day before each scheduled sync (or the schedule's interval,
    if shorter: a cron policy's window may not exceed it), so a missing export shows as stale."""
    interval = get_smallest_cron_interval(settings.schedule)  # what the policy itself checks against
    return dg.FreshnessPolicy.cron(deadline_cron=settings.schedule, lower_bound_delta=min(interval, timedelta(days=1)))


def automation_condition(settings: AccountSettings) -> dg.AutomationCondition | None:
    """`eager`: for export files, Dagster's eager condition over every day, not only the latest
    (`eager()` alone would leave a late export of an older day without its run): a day runs once
    both its export files are reported, again when one changes, never while a run of it is in
    progress. For a table or query, `eager()` as it is: the sync runs after its upstream asset
    materializes, for the latest day only (a table has no late day of its own, and an update of
    an unpartitioned upstream reaches every day)."""
    if settings.automation_condition != "eager":
        return None
    if settings.sources().applications.kind != "files":
        return dg.AutomationCondition.eager()
    return dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())


def _record_set_of(name: str) -> RecordSet | None:
    """The record set whose source asset or raw table `name` is."""
    return next((record_set for record_set, names in RECORD_SETS.items() if name in names), None)


def _where(source: SourceTable) -> str:
    if not source.database:
        return "in the warehouse"
    return "in a PostgreSQL database" if source.on_postgres() else f"in the DuckDB file {Path(source.database).name}"


def _source_description(record_set: RecordSet, source: SourceTable) -> str:
    """A table or query source's external asset, described."""
    what = f"the table {source.table}" if source.table else "the query in this asset's metadata"
    read = (f"the extract reads each day's rows by {source.day_column}" if source.day_column
            else "each run of the extract reads it whole (a snapshot)")
    return f"The {record_set} as {what} holds them, {_where(source)}; {read}."


def _raw_description(record_set: RecordSet, source: SourceTable) -> str:
    read = f"each day's rows by {source.day_column}" if source.day_column else "the whole source at each run"
    return f"The {record_set} read from the source's {source.kind} ({read}), the mapping's columns as text."


def _source_kinds(source: SourceTable, location: Warehouse) -> set[str]:
    """A files source is csv; a table or query is the kind of the database it is read from."""
    if source.kind == "files":
        return {"csv"}
    return {"postgres" if source.on_postgres() else "duckdb" if source.database else location.kind}


def _source_metadata(record_set: RecordSet, source: SourceTable) -> dict[str, object]:
    """A table's or query's own metadata; for export files, where each day's file is, in the record
    set's own folder, CSV or Parquet."""
    if source.kind != "files":
        return source_asset_metadata(source)
    return {"path": dg.MetadataValue.path(str(Path(source.files) / "YYYY-MM-DD" / f"{record_set}.{{csv,parquet}}"))}


def _column_source(source: SourceTable | None, names: tuple[str, str], keys: dict[str, dg.AssetKey]) -> dg.AssetKey:
    """Where the columns of a record set come from, for the column lineage: the source's own asset for
    a table or query (the upstream asset, or our external one), the raw table for export files."""
    source_name, raw_name = names
    return keys[source_name] if source and source.kind != "files" else keys[raw_name]


def account_specs(
    settings: AccountSettings, partitions: dg.PartitionsDefinition | None, mapping: Mapping | None,
    translate: Translate | None = None,
) -> dict[str, dg.AssetSpec]:
    """The account's asset specs by name, translated, each depending on its upstream's translated key.
    A record set read from an upstream asset (`asset:`) has no source asset of ours: its raw table
    depends on that asset's key; an account without events has no `source/events`."""
    location, sources = settings.warehouse_location(), settings.sources()
    specs: dict[str, dg.AssetSpec] = {}
    keys: dict[str, dg.AssetKey] = {}
    """What a dependent depends on, by name: a spec's (translated) key, or an upstream asset's."""
    for record_set, (source_name, _) in RECORD_SETS.items():
        if (source := sources.of(record_set)) and source.asset:
            keys[source_name] = upstream_key(source)
    for name, asset in ASSETS.items():
        record_set = _record_set_of(name)
        source = sources.of(record_set) if record_set else None
        if asset.step == "source" and (source is None or source.asset):
            continue
        metadata: dict[str, object] = {}
        description, kinds = asset.description, set(asset.kinds)
        if asset.table:
            metadata[TABLE_NAME] = location.table_name(asset.table)
        if asset.step == "source" and source:
            metadata.update(_source_metadata(record_set, source))
            kinds = _source_kinds(source, location)
            if source.kind != "files":
                description = _source_description(record_set, source)
        if asset.step == "extract" and source and source.kind != "files":
            description = _raw_description(record_set, source)
        if name == "leadsquared/opportunities" and mapping:
            metadata.update(opportunities_metadata(
                mapping, _column_source(sources.applications, RECORD_SETS["applications"], keys)))
        if name == "leadsquared/activities" and mapping:
            metadata.update(activities_metadata(mapping, _column_source(sources.events, RECORD_SETS["events"], keys)))
        fresh = (name == "opportunity_state" or (source is not None and asset.step == (
            "source" if source.kind == "files" else "extract")))
        base = dg.AssetSpec(
            account_key(settings, name),
            deps=[keys[upstream] for upstream in asset.deps if upstream in keys],
            description=description,
            kinds={*({location.kind} if asset.table else set()), asset.step, *kinds},
            owners=settings.owners,
            group_name=settings.account,
            partitions_def=partitions,
            freshness_policy=freshness_policy(settings) if fresh else None,
            automation_condition=None if asset.step == "source" else automation_condition(settings),
            metadata=metadata,
        )
        specs[name] = translate(StepAsset(asset.step, name, base)) if translate else base
        keys[name] = specs[name].key
    return specs


def source_specs(specs: dict[str, dg.AssetSpec]) -> list[dg.AssetSpec]:
    """The account's own source assets (export files, a table's or query's external asset): none for
    a record set read from an upstream asset, or for no events."""
    return [specs[source_name] for source_name, _ in RECORD_SETS.values() if source_name in specs]


def keys_of(specs: dict[str, dg.AssetSpec]) -> dict[str, dg.AssetKey]:
    return {name: spec.key for name, spec in specs.items()}
