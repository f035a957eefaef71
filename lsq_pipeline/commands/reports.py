"""`lsq-pipeline history` and `state`: the run history and the state table, printed for people."""

from __future__ import annotations

import argparse
import sys

from lsq_pipeline.commands.project import add_account_argument, checked_settings
from lsq_pipeline.warehouse.connection import WarehouseError


HISTORY_COLUMNS = (
    "run_id", "job", "first_day", "last_day", "status", "started_at", "ended_at",
    "succeeded_create", "succeeded_capture", "succeeded_update", "succeeded_activity",
    "failed_create", "failed_update", "failed_activity", "pending_read_back", "missing", "api_calls_total",
    "errors", "reason",
)


def _run_history(args: argparse.Namespace) -> int:
    settings = checked_settings("history", args, paths=False)
    if settings is None:
        return 2
    from lsq_pipeline.orchestration.runs import warehouse_of
    from lsq_pipeline.tables.runs import recent_runs

    if not settings.warehouse_location().exists():
        print("No runs yet (no warehouse).")
        return 0
    with warehouse_of(settings).get_connection() as conn:
        columns, rows = recent_runs(conn, args.last)
    if not rows:
        print("No runs yet.")
        return 0
    picked = [columns.index(name) for name in HISTORY_COLUMNS]
    table = [[_cell_text(row[i]) for i in picked] for row in rows]
    _print_table([name.replace("succeeded_", "ok_") for name in HISTORY_COLUMNS], table)
    return 0


def _cell_text(value: object) -> str:
    """A value as the tables show it: a timestamp to the second, None as blank."""
    if value is None:
        return ""
    if hasattr(value, "strftime") and hasattr(value, "hour"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def add_history_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline history`: the run history table, newest first."""
    parser = subparsers.add_parser("history", help="print the run history (sync_runs), newest first")
    parser.add_argument("--last", type=int, default=20, metavar="N", help="how many runs (default 20)")
    add_account_argument(parser)
    parser.set_defaults(handler=_run_history)


STATE_ROWS_SHOWN = 50
"""Records listed by `state --status`: enough to see the errors, few enough to read."""


def _run_state(args: argparse.Namespace) -> int:
    """Read the state and close the warehouse at once (a DuckDB file opened read-only: a run waiting
    for it waits a moment at most), then print."""
    settings = checked_settings("state", args, paths=False)
    if settings is None:
        return 2
    from lsq_pipeline.tables import report
    from lsq_pipeline.tables.journal import journal_history

    location = settings.warehouse_location()
    if not location.exists():
        print(f"No warehouse yet ({location.describe()}): nothing has run.")
        return 0
    try:
        with location.connect(lambda line: print(line, file=sys.stderr), read_only=True) as conn:
            if not report.has_state(conn):
                print(f"No warehouse yet ({location.describe()} has no state table): nothing has run.")
                return 0
            counts = report.status_counts(conn)
            activities = report.activity_status_counts(conn)
            in_status = report.records_in_status(conn, args.status, STATE_ROWS_SHOWN) if args.status else None
            record = report.record_state(conn, args.source_id) if args.source_id else None
            journal = journal_history(conn, args.source_id) if args.source_id else []
    except WarehouseError as error:  # the warehouse cannot be read: a setting to fix (exit 2), no run failed
        print(f"lsq-pipeline state: {error}", file=sys.stderr)
        return 2
    total = sum(counts.values())
    print(f"{location.describe()}: {total} source records")
    for status, count in counts.items():
        print(f"  {status:<10} {count}")
    if activities:
        print(f"{sum(activities.values())} source events: "
              + ", ".join(f"{status} {count}" for status, count in activities.items()))
    if in_status is not None:
        _print_records_in_status(args.status, in_status)
    if args.source_id:
        if record is None:
            print(f"lsq-pipeline state: no record {args.source_id} in opportunity_state", file=sys.stderr)
            return 1
        _print_record(args.source_id, record, journal)
    return 0


def _print_records_in_status(status: str, found) -> None:
    print(f"\n{found.total} records {status}" + (":" if found.rows else "."))
    if not found.rows:
        return
    table = [[_cell_text(cell) for cell in row] for row in found.rows]
    _print_table(["source_id", "opportunity_id", "error", "last_synced_at"], table)
    if found.total > len(found.rows):
        print(f"... {found.total - len(found.rows)} more")


def _print_record(source_id: str, record: dict, journal: list[dict]) -> None:
    print(f"\n{source_id} in opportunity_state:")
    width = max(len(column) for column in record)
    for column, value in record.items():
        if value is not None:
            print(f"  {column:<{width}}  {_cell_text(value)}")
    if not journal:
        print(f"\n{source_id} in push_journal: no rows (nothing was ever sent for it)")
        return
    print(f"\n{source_id} in push_journal ({len(journal)} rows, oldest first):")
    _print_table(list(journal[0]), [[_cell_text(row[c]) for c in row] for row in journal])


def _print_table(headers: list[str], table: list[list[str]]) -> None:
    table = [[cell.replace("\n", " ") for cell in line] for line in table]
    widths = [max(len(h), *(len(line[n]) for line in table)) for n, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def add_state_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline state`: what the state table says, without holding the warehouse."""
    parser = subparsers.add_parser(
        "state", help="print the records per status, those of one status, or one record's state and journal",
        description="Reads the warehouse (a DuckDB file read-only) and closes it before printing.",
    )
    parser.add_argument("--status", metavar="STATUS", help="list the records in this status with their errors "
                                                           f"(the first {STATE_ROWS_SHOWN})")
    parser.add_argument("--source-id", metavar="ID", help="one record's state row and journal history")
    add_account_argument(parser)
    parser.set_defaults(handler=_run_state)
