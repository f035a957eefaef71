"""Asset metadata a person reads in the UI: row counts, the column schema, a small preview, API
figures, a step's figures; and the results a run reports, kept to what it selected."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import date

import dagster as dg
import duckdb

from lsq_pipeline.leadsquared import ClientStats
from lsq_pipeline.leadsquared.models import EndpointStats
from lsq_pipeline.orchestration.upstream import TABLE_NAME
from lsq_pipeline.sources import SourceTable
from lsq_pipeline.steps.plan import ACTIONS, planned_activities, planned_by_action
from lsq_pipeline.steps.transform import rejects_by_field
from lsq_pipeline.tables.runs import ERROR_COLUMNS, day_errors
from lsq_pipeline.tables.report import status_counts_by_day
from lsq_pipeline.warehouse.connection import is_postgres
from lsq_pipeline.warehouse.schema import table_slice

EMPTY = EndpointStats()

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 60
DRIFT_PREVIEW_ROWS = 20
ERROR_PREVIEW_ROWS = 20
QUERY_CHARS = 2000
"""A source query is shown as text up to this length: enough to recognise it, not a whole file."""


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"


def preview(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table of a few rows."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_metadata(
    conn: duckdb.DuckDBPyConnection, table: str, where: str, params: Sequence[object]
) -> dict[str, object]:
    """Row count of the slice this run wrote, the table's column schema and a preview of the slice."""
    written = table_slice(conn, table, where, params, PREVIEW_ROWS)
    return {
        "dagster/row_count": dg.MetadataValue.int(written.rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in written.schema])
        ),
        "table": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(preview(written.columns, written.sample) if written.sample else "no rows"),
    }


def _query_text(query: str) -> dg.MetadataValue:
    return dg.MetadataValue.text(query if len(query) <= QUERY_CHARS else query[: QUERY_CHARS - 1] + "…")


def _database(database: str) -> dg.MetadataValue:
    return dg.MetadataValue.text(database) if is_postgres(database) else dg.MetadataValue.path(database)


def source_asset_metadata(source: SourceTable) -> dict[str, object]:
    """What the external asset of a table or query source shows: its table (`dagster/table_name`)
    or its query as text (truncated), and the database it is read from (none: the warehouse)."""
    metadata: dict[str, object] = (
        {TABLE_NAME: source.table} if source.table else {"query": _query_text(source.query or "")})
    if source.database:
        metadata["database"] = _database(source.database)
    return metadata


def extract_source_metadata(source: SourceTable | None, rows_read: int) -> dict[str, dg.MetadataValue]:
    """What the extract read one record set from: the source's kind, its folder, table or query (as
    text, truncated), and the rows the run read; nothing for a record set without a source."""
    if source is None:
        return {}
    if source.kind == "files":
        read_from = {"source_files": dg.MetadataValue.path(source.files or "")}
    elif source.kind == "query":
        read_from = {"source_query": _query_text(source.query or "")}
    else:
        read_from = {"source_table": dg.MetadataValue.text(source.table or source.asset or "")}
    return {"source_kind": dg.MetadataValue.text(source.kind), **read_from,
            **({"source_database": _database(source.database)} if source.database else {}),
            "run_rows_read": dg.MetadataValue.int(rows_read)}


def table_of_day(conn: duckdb.DuckDBPyConnection, table: str, day: date) -> dict[str, object]:
    return table_metadata(conn, table, "day = $1", [day])


def rejects_of_day(conn: duckdb.DuckDBPyConnection, day: date) -> dict[str, object]:
    """The day's rejects, counted by field: what a person fixes first."""
    by_field = rejects_by_field(conn, [day])
    return {"rejected_by_field": dg.MetadataValue.md(preview(["field", "rows"], by_field) if by_field else "no rejects"),
            **table_of_day(conn, "rejects", day)}


def plan_of_day(conn: duckdb.DuckDBPyConnection, day: date) -> dict[str, object]:
    """What the day's plan sends, by action."""
    planned = planned_by_action(conn, day, day)
    return {
        **{f"planned_{action}": dg.MetadataValue.int(planned.get(action, 0)) for action in ACTIONS},
        "planned_activities": dg.MetadataValue.int(planned_activities(conn, [day])),
        **table_of_day(conn, "sync_plan", day),
    }


def opportunities_of_day(
    conn: duckdb.DuckDBPyConnection, run_id: str, day: date, counts: dict[str, int],
) -> dict[str, object]:
    """The push's answers for the day's records (`counts`: the run's action counts of the day),
    and a preview of the records LeadSquared refused."""
    errors, first = day_errors(conn, run_id, day, ERROR_PREVIEW_ROWS)
    return {
        **{name: dg.MetadataValue.int(value) for name, value in counts.items() if not name.endswith("_activity")},
        "errors": dg.MetadataValue.int(errors),
        "failed_records": dg.MetadataValue.md(
            preview(ERROR_COLUMNS, first)
            + (f"\n\n{errors - len(first)} more in the table sync_errors" if errors > len(first) else "")
            if first else "none"
        ),
    }


def states_of_days(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> dict[date, dict[str, object]]:
    """Where the records of each day (their latest version) stand after the reconcile:
    `day_<status>` for every status."""
    return {day: {f"day_{status}": dg.MetadataValue.int(count) for status, count in counts.items()}
            for day, counts in status_counts_by_day(conn, days).items()}


def activities_of_day(counts: dict[str, int]) -> dict[str, object]:
    """The push's answers for the day's activities (`counts`: the run's action counts of the day)."""
    return {name: dg.MetadataValue.int(value) for name, value in counts.items() if name.endswith("_activity")}


API_CALLS = "run_api_calls"
"""What a step spent of the budget in its run: `run_api_calls`, and `run_api_calls_<endpoint>` each."""


def api_metadata(before: ClientStats, after: ClientStats) -> dict[str, dg.MetadataValue]:
    """What this step spent of the account's API budget in its run, in all and per endpoint
    (`run_api_calls_bulk_add`...), every endpoint's figure present, 0 included, so the UI plots it
    over time. A call serves several days at once: these are the run's figures, never a day's."""
    per_endpoint = {
        f"{API_CALLS}_{name}": dg.MetadataValue.int(stats.calls - before.per_endpoint.get(name, EMPTY).calls)
        for name, stats in sorted(after.per_endpoint.items())
    }
    return {
        **per_endpoint,
        API_CALLS: dg.MetadataValue.int(after.calls - before.calls),
        "run_api_items": dg.MetadataValue.int(after.items - before.items),
        "run_api_retries": dg.MetadataValue.int(after.retries - before.retries),
        "run_api_rate_limited_429": dg.MetadataValue.int(after.rate_limited - before.rate_limited),
        "run_api_seconds_waiting_for_window": dg.MetadataValue.float(
            round(after.window_wait_seconds - before.window_wait_seconds, 2)
        ),
    }


def run_figures(**figures: int | float | bool) -> dict[str, dg.MetadataValue]:
    """Figures of the whole run, named `run_<name>`: a range run does them for all its days at once,
    so they are never presented as a day's."""
    def value(figure: int | float | bool) -> dg.MetadataValue:
        if isinstance(figure, bool):
            return dg.MetadataValue.bool(figure)
        return dg.MetadataValue.int(figure) if isinstance(figure, int) else dg.MetadataValue.float(figure)

    return {f"run_{name}": value(figure) for name, figure in figures.items()}


def figures_of(
    result: object, renamed: dict[str, str], left_out: Collection[str] = (),
) -> dict[str, int | float | bool]:
    """The figures of a step's typed result (a dataclass): each int, float or bool field but those
    `left_out`, under its own name or the one `renamed` gives it."""
    values = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
    return {renamed.get(name, name): value for name, value in values.items()
            if name not in left_out and isinstance(value, (int, float, bool))}


def for_each_day(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, days: Sequence[date],
    metadata_of: Callable[[date], dict[str, object]],
) -> None:
    """Each day's own figures on that day's materialization of `asset_key` (when the run selects
    it): a range run is one run, yet each day shows what it holds, and the days sum to the run. A
    snapshot's asset is unpartitioned: its one day's figures go on its materialization."""
    if asset_key not in context.selected_asset_keys:
        return
    partitioned = context.assets_def.partitions_def is not None
    for day in days:
        context.add_asset_metadata(metadata_of(day), asset_key=asset_key,
                                   partition_key=day.isoformat() if partitioned else None)


def selected(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, result: dg.MaterializeResult | dg.AssetCheckResult,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The result if its asset (or check) is selected in this run. The multi-assets are
    subsettable, so the UI's "Materialize all" over a range of days is accepted as one backfill
    (Dagster 1.13 refuses it for a non-subsettable multi-asset whose outputs have different
    parents); the step still refreshes every table of its days, which is harmless."""
    if isinstance(result, dg.AssetCheckResult):
        wanted = dg.AssetCheckKey(dg.AssetKey.from_coercible(result.asset_key), result.check_name)
        if wanted in context.selected_asset_check_keys:
            yield result
    elif dg.AssetKey.from_coercible(result.asset_key) in context.selected_asset_keys:
        yield result
