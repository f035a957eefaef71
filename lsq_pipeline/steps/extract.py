"""Extract: the run's records of each record set (applications, events) from its source (daily
export files, a table or a query) into the raw tables, every value as text, all or nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from lsq_pipeline.mapping import Mapping
from lsq_pipeline.sources import RecordSet, Sources, SourceTable
from lsq_pipeline.steps.read_files import ReadTogetherFailed, SourceFileError, check_file, day_file, stage_files
from lsq_pipeline.steps.read_tables import StagedRows, stage_table, staged_table
from lsq_pipeline.warehouse.schema import APPLICATION_COLUMNS, EVENT_COLUMNS, add_raw_columns
from lsq_pipeline.warehouse.sql import day_list_sql, identifier, transaction

RAW_TABLES: dict[RecordSet, str] = {"applications": "raw_applications", "events": "raw_events"}


def _columns(mapping: Mapping | None) -> dict[RecordSet, list[str]]:
    """The source columns each record set is read for: the mapping's, else the demo's."""
    if mapping is None:
        return {"applications": list(APPLICATION_COLUMNS), "events": list(EVENT_COLUMNS)}
    return {"applications": mapping.application_columns(), "events": mapping.event_columns()}


def _keys(mapping: Mapping | None) -> dict[RecordSet, str]:
    """The column that keys each record set's records (duplicates in a snapshot are found by it)."""
    if mapping is None:
        return {"applications": "application_id", "events": "event_id"}
    return {"applications": mapping.opportunity.source_id.column, "events": mapping.events.id_column}


def _check_files(sources: Sources, columns: dict[RecordSet, list[str]], days: list[date]) -> dict[date, list[str]]:
    """Raise on a day whose files are missing or lack columns; return each day's warnings (extra columns)."""
    warnings: dict[date, list[str]] = {day: [] for day in days}
    for record_set, source in _file_sources(sources):
        folder = Path(source.files)
        for day in days:
            day_dir = folder / day.isoformat()
            if not day_dir.is_dir():
                raise SourceFileError(day_dir, f"no source folder for {day_dir.name}")
            warnings[day] += check_file(day_file(day_dir, record_set), columns[record_set])
    return warnings


def _file_sources(sources: Sources) -> list[tuple[RecordSet, SourceTable]]:
    return [(name, source) for name in RAW_TABLES if (source := sources.of(name)) is not None and source.files]


def extract_days(conn: duckdb.DuckDBPyConnection, source: Sources | str | Path, days: list[date],
                 mapping: Mapping | None = None) -> dict[date, dict]:
    """Load the days' records of every record set of `source` (a folder of daily files is the
    short form of `Sources.of_folder`) into the raw tables, read for the `mapping`'s columns
    (the demo's without one).

    Every file's header is checked, and every table or query read, before anything is written;
    then the days' raw rows are replaced (a snapshot source replaces every day's rows, under the
    run's one day), all record sets in one transaction (one commit, so one write of the new
    blocks), so a re-run replaces the days and a bad source (`SourceFileError`, `SourceError`)
    leaves nothing half-loaded. A record set without a source (no events) loads no rows.
    Returns per day `{"applications": n, "events": m, "warnings": [...]}`.
    """
    sources = source if isinstance(source, Sources) else Sources.of_folder(str(source))
    days = list(dict.fromkeys(days))
    columns = _columns(mapping)
    loaded = {day: {"warnings": warnings} for day, warnings in _check_files(sources, columns, days).items()}
    for record_set, table in RAW_TABLES.items():
        add_raw_columns(conn, table, columns[record_set])
    try:
        counts = _load_all(conn, sources, columns, _keys(mapping), days, together=True)
    except ReadTogetherFailed:
        # Read one by one: names the bad file, or loads files that cannot be read together.
        counts = _load_all(conn, sources, columns, _keys(mapping), days, together=False)
    for record_set, rows in counts.items():
        for day in days:
            loaded[day][record_set] = rows.get(day, 0)
    return loaded


def _stage(conn: duckdb.DuckDBPyConnection, sources: Sources, record_set: RecordSet, columns: list[str], key: str,
           days: list[date], together: bool) -> StagedRows | None:
    source = sources.of(record_set)
    if source is None:
        return None
    if source.files:
        return stage_files(conn, Path(source.files), record_set, columns, days, together)
    return stage_table(conn, source, record_set, columns, key, days)


def _load_all(conn: duckdb.DuckDBPyConnection, sources: Sources, columns: dict[RecordSet, list[str]],
              keys: dict[RecordSet, str], days: list[date], together: bool) -> dict[str, dict[date, int]]:
    """Read every record set, then replace the raw tables' rows in one transaction. The reads come
    before it: DuckDB scans a table made inside an open transaction on one thread."""
    staged: dict[RecordSet, StagedRows | None] = {}
    try:
        for record_set in RAW_TABLES:
            staged[record_set] = _stage(conn, sources, record_set, columns[record_set], keys[record_set], days, together)
        with transaction(conn):
            for record_set, table in RAW_TABLES.items():
                _replace(conn, table, columns[record_set], days, staged[record_set], whole=not sources.daily)
    finally:
        for record_set in RAW_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {staged_table(record_set)}")
    return {record_set: rows.counts if rows else {} for record_set, rows in staged.items()}


def _replace(conn: duckdb.DuckDBPyConnection, table: str, columns: list[str], days: list[date],
             rows: StagedRows | None, whole: bool) -> None:
    """Replace the days' rows of a raw table (every row, for a snapshot) with the staged ones."""
    conn.execute(f"DELETE FROM {table}" + ("" if whole else f" WHERE day IN {day_list_sql(days)}"))
    if rows is not None and rows.select:
        quoted = ", ".join(identifier(column) for column in columns)
        conn.execute(f"INSERT INTO {table} (day, source_file, row_number, {quoted}, source_problem) {rows.select}")


def extract_day(conn: duckdb.DuckDBPyConnection, source: Sources | str | Path, day: date,
                mapping: Mapping | None = None) -> dict:
    """`extract_days` of one day: `{"applications": n, "events": m, "warnings": [...]}`."""
    return extract_days(conn, source, [day], mapping)[day]
