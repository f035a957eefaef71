"""What LeadSquared holds, as Dagster sees it: the column schema and the column lineage of the
`leadsquared/opportunities` and `leadsquared/activities` assets, read from the mapping.

The mapping is a column-to-field map, so the lineage is exact: `mx_Custom_3` <- `raw_applications.amount`.
`opportunity_records` keeps its fields in one JSON column, so the lineage goes from the raw tables'
columns straight to the LeadSquared fields."""

from __future__ import annotations

import dagster as dg

from lsq_pipeline.mapping import FieldSpec, Mapping, template_columns

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
