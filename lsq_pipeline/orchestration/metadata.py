"""Asset metadata a person reads in the UI: row counts, the column schema, a small preview, API figures."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import duckdb

from lsq_pipeline.leadsquared import ClientStats
from lsq_pipeline.leadsquared.models import EndpointStats
from lsq_pipeline.sync.warehouse import table_slice

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


def api_metadata(before: ClientStats, after: ClientStats) -> dict[str, dg.MetadataValue]:
    """What this step spent of the account's API budget, in all and per endpoint (`api_calls_bulk_add`...),
    every endpoint's figure present, 0 included, so the UI plots it over time."""
    per_endpoint = {
        f"api_calls_{name}": dg.MetadataValue.int(stats.calls - before.per_endpoint.get(name, EMPTY).calls)
        for name, stats in sorted(after.per_endpoint.items())
    }
    return {
        **per_endpoint,
        "api_calls": dg.MetadataValue.int(after.calls - before.calls),
        "api_items": dg.MetadataValue.int(after.items - before.items),
        "api_retries": dg.MetadataValue.int(after.retries - before.retries),
        "api_rate_limited_429": dg.MetadataValue.int(after.rate_limited - before.rate_limited),
        "api_seconds_waiting_for_window": dg.MetadataValue.float(
            round(after.window_wait_seconds - before.window_wait_seconds, 2)
        ),
    }
