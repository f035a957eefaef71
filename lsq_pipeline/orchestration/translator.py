"""Every asset spec of one account, by the asset's name in the account: keys, groups, kinds,
owners, deps, freshness, automation and column lineage, each put through the account's
translation (YAML `translation:`, or a subclass's `get_asset_spec`) in lineage order, so a renamed
upstream key is what its downstream assets depend on.

The mapping is a column-to-field map, so the column lineage of what LeadSquared holds is exact:
`mx_Custom_3` <- `raw_applications.amount`. `opportunity_records` keeps its fields in one JSON
column, so the lineage goes from the raw tables' columns straight to the LeadSquared fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
from dagster._utils.schedules import get_smallest_cron_interval

from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.mapping import FieldSpec, Mapping, template_columns

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


SOURCE_ASSETS = {"applications.csv": "source/applications", "events.csv": "source/events"}
"""The export file of each source asset."""
ASSETS: dict[str, _Asset] = {
    "source/applications": _Asset("source", "Each day's applications.csv in the source folder, as exported; reported "
                                  "by the source_files_arrived sensor (size and modified time), so a late export "
                                  "shows as stale.", kinds=("csv",)),
    "source/events": _Asset("source", "Each day's events.csv in the source folder, as exported; reported by the "
                            "source_files_arrived sensor (size and modified time), so a late export shows as stale.",
                            kinds=("csv",)),
    "raw_applications": _Asset("extract", "Each day's applications.csv, every column as text, as exported.",
                               ("source/applications",), "raw_applications"),
    "raw_events": _Asset("extract", "Each day's events.csv, every column as text, as exported.",
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
    """`eager`: Dagster's eager condition over every day, not only the latest (`eager()` alone
    would leave a late export of an older day without its run): a day runs once both its export
    files are reported, again when one changes, never while a run of it is in progress."""
    if settings.automation_condition != "eager":
        return None
    return dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())


def account_specs(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, mapping: Mapping | None,
    translate: Translate | None = None,
) -> dict[str, dg.AssetSpec]:
    """The account's asset specs by name, translated, each depending on its upstream's translated key."""
    location = settings.warehouse_location()
    specs: dict[str, dg.AssetSpec] = {}
    for name, asset in ASSETS.items():
        metadata: dict[str, object] = {}
        if asset.table:
            metadata["dagster/table_name"] = location.table_name(asset.table)
        if asset.step == "source":
            file_name = next(file for file, source in SOURCE_ASSETS.items() if source == name)
            metadata["path"] = dg.MetadataValue.path(str(settings.path("source_dir") / "YYYY-MM-DD" / file_name))
        if name == "leadsquared/opportunities" and mapping:
            metadata.update(opportunities_metadata(mapping, specs["raw_applications"].key))
        if name == "leadsquared/activities" and mapping:
            metadata.update(activities_metadata(mapping, specs["raw_events"].key))
        base = dg.AssetSpec(
            account_key(settings, name),
            deps=[specs[upstream].key for upstream in asset.deps],
            description=asset.description,
            kinds={*({location.kind} if asset.table else set()), asset.step, *asset.kinds},
            owners=settings.owners,
            group_name=settings.account,
            partitions_def=partitions,
            freshness_policy=freshness_policy(settings) if name in ("source/applications", "source/events",
                                                                       "opportunity_state") else None,
            automation_condition=None if asset.step == "source" else automation_condition(settings),
            metadata=metadata,
        )
        specs[name] = translate(StepAsset(asset.step, name, base)) if translate else base
    return specs


def keys_of(specs: dict[str, dg.AssetSpec]) -> dict[str, dg.AssetKey]:
    return {name: spec.key for name, spec in specs.items()}
