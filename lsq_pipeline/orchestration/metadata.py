"""Asset metadata a person reads in the UI: row counts, the column schema, a small preview, API figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import dagster as dg
import duckdb

from lsq_pipeline.leadsquared import ClientStats
from lsq_pipeline.leadsquared.models import EndpointStats
from lsq_pipeline.warehouse.schema import table_slice

EMPTY = EndpointStats()

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 60


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


def for_each_day(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, days: Sequence[date],
    metadata_of: Callable[[date], dict[str, object]],
) -> None:
    """Each day's own figures on that day's materialization of `asset_key` (when the run selects
    it): a range run is one run, yet each day shows what it holds, and the days sum to the run."""
    if asset_key not in context.selected_asset_keys:
        return
    for day in days:
        context.add_asset_metadata(metadata_of(day), asset_key=asset_key, partition_key=day.isoformat())
