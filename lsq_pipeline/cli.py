"""`lsq-pipeline`: the command line. Each subcommand is registered by one `_add_*` function."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from lsq_pipeline.extras import MissingExtra
from lsq_pipeline.warehouse.connection import WarehouseError


def _add_sandbox_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline sandbox`: run the LeadSquared sandbox until Ctrl-C."""
    from lsq_pipeline.sandbox.__main__ import add_server_arguments, serve

    parser = subparsers.add_parser(
        "sandbox",
        help="run the local LeadSquared sandbox server",
        description="Run a local server that behaves like LeadSquared's opportunity API, until Ctrl-C. "
        "Keys default to $LSQ_ACCESS_KEY / $LSQ_SECRET_KEY, else sandbox-access-key / sandbox-secret-key.",
    )
    add_server_arguments(parser)
    parser.set_defaults(handler=serve)


def _add_generate_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline generate`: deterministic demo source files at any scale."""
    parser = subparsers.add_parser("generate", help="generate daily source export files")
    parser.add_argument("--rows", type=int, required=True, help="application rows in all")
    parser.add_argument("--days", type=int, required=True, help="number of day folders")
    parser.add_argument("--seed", type=int, required=True, help="same seed, same bytes")
    parser.add_argument("--out", required=True, help="folder that receives <YYYY-MM-DD>/ folders")
    parser.add_argument("--start-day", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--dirty-rate", type=float, default=0.04, help="share of spoilt rows")
    parser.add_argument("--events", type=int, default=None, help="event rows in all (default rows/2)")

    def handle(args: argparse.Namespace) -> int:
        from lsq_pipeline.demo.generate import generate

        counts = generate(
            args.out, args.rows, args.days, args.seed, start_day=args.start_day,
            dirty_rate=args.dirty_rate, events=args.events,
        )
        last_day = args.start_day.fromordinal(args.start_day.toordinal() + args.days - 1)
        print(
            f"wrote {counts['applications']} application rows ({counts['distinct_applications']} "
            f"applications, {counts['duplicates']} duplicate ids, {counts['dirty']} dirty rows) and "
            f"{counts['events']} event rows into {args.out}/{args.start_day}..{last_day}"
        )
        return 0

    parser.set_defaults(handler=handle)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def _print_day(label: str, summary) -> None:
    planned = summary.planned
    print(
        f"{label}  created {summary.created:4d}  updated {summary.updated:4d}  "
        f"unchanged {planned.get('unchanged', 0):4d}  rejected {summary.rejected:3d}  "
        f"failed {summary.failed:3d}  activities {summary.activities:3d}  API calls {summary.api_calls:3d}"
    )
    if not summary.success:
        print(
            f"{' ' * len(label)}  RUN FAILED; before it failed it sent {summary.write_calls} write calls: "
            f"created {summary.created}, updated {summary.updated}, activities {summary.activities}, "
            f"failed {summary.failed} (see the run in the UI: lsq-pipeline ui)"
        )


DAILY_BUDGET_SPENT_EXIT = 3
"""Exit code of a run that stopped at the account's daily call count (nothing failed; it continues tomorrow)."""


def _print_daily_budget_spent(summary) -> None:
    print(f"daily call budget spent: {summary.records_waiting} records wait; the next run after 00:00 UTC continues")


def _checked_settings(command: str, args: argparse.Namespace, paths: bool = True):
    """The settings of the account `--account` names, checked; None after printing what is wrong
    (the variable of the default account, or the account and the attribute)."""
    from lsq_pipeline.orchestration.runs import pick_account
    from lsq_pipeline.settings import SettingsError

    try:
        settings = pick_account(args.account)
        settings.check_keys()
        if paths:
            settings.check_paths()
    except SettingsError as error:
        print(f"lsq-pipeline {command}: {error}", file=sys.stderr)
        return None
    return settings


def _add_account_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", metavar="NAME",
                        help="the account (a LeadSquaredSyncComponent); required when several are defined")
    _add_project_argument(parser)


def _add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="DIR",
                        help="the dg project (default: the one holding the current folder, found as dg finds it; "
                             "none: the packaged default account, LSQ_* variables)")


def _select_project(args: argparse.Namespace) -> bool:
    """Work on the dg project `--project` names or the current folder is in; False after printing
    why not (a --project that is no dg project)."""
    from lsq_pipeline.orchestration.runs import select_project
    from lsq_pipeline.project import find_project

    folder = Path(args.project) if getattr(args, "project", None) else Path.cwd()
    project = find_project(folder)
    if project is None and getattr(args, "project", None):
        print(f"lsq-pipeline {args.command}: --project {args.project}: no dg project there "
              "(a pyproject.toml with [tool.dg], or a dg.toml)", file=sys.stderr)
        return False
    select_project(project)
    return True


DEMO_DIR = "lsq-demo"
"""Where `demo` lays out its project when it runs outside any dg project and finds no source."""


def _select_demo(args: argparse.Namespace) -> bool:
    """The project the demo syncs: `--dir`'s demo project; else the dg project it runs in; else the
    packaged default account when the current folder holds its source (LSQ_SOURCE_DIR, default
    data/source); else the demo project laid out in ./lsq-demo/."""
    from lsq_pipeline.demo.project import lay_out
    from lsq_pipeline.orchestration.runs import select_project
    from lsq_pipeline.project import find_project

    if args.dir is None:
        if not _select_project(args):
            return False
        from lsq_pipeline.orchestration.runs import selected_project

        if selected_project() is not None or Path(os.environ.get("LSQ_SOURCE_DIR", "data/source")).is_dir():
            return True
    folder = Path(args.dir or DEMO_DIR).resolve()
    lay_out(folder)
    print(f"Demo project: {folder} (then, in that folder: lsq-pipeline state, history, ui)")
    select_project(find_project(folder))
    return True


def _run_demo(args: argparse.Namespace) -> int:
    if args.account is None:
        os.environ.pop("LSQ_API_HOST", None)  # the default account's demo always talks to the embedded sandbox
    # The embedded sandbox has no account budget to protect: the demo runs without a rate window
    # unless one is asked for (LSQ_RATE_LIMIT_CALLS=25 models LeadSquared's; benchmarks/README.md).
    os.environ.setdefault("LSQ_RATE_LIMIT_CALLS", "0")
    if not _select_demo(args):
        return 2
    settings = _checked_settings("demo", args)
    if settings is None:
        return 2
    if not settings.uses_sandbox:
        print(f"lsq-pipeline demo: account {settings.account} talks to {settings.api_host}, not the embedded "
              f"sandbox; sync it with: lsq-pipeline sync --account {settings.account} --from DAY --to DAY",
              file=sys.stderr)
        return 2
    from lsq_pipeline.orchestration.runs import launch, summarize
    from lsq_pipeline.settings import source_days

    days = source_days(settings.path("source_dir"))
    if not days:
        print(f"lsq-pipeline demo: no YYYY-MM-DD folders under {settings.path('source_dir')}", file=sys.stderr)
        return 2
    window = settings.account_limits().general
    print(f"Syncing {len(days)} days from {settings.source_dir} to the embedded LeadSquared sandbox "
          f"(state in {settings.sandbox_dir}/, rate window {window if window.calls else 'off'})")
    writes = 0
    ok = True
    for day in days:
        run = launch(settings, day, day)
        summary = summarize(settings, run, day, day)
        writes += summary.write_calls
        ok = ok and summary.success
        _print_day(day.isoformat(), summary)
        if summary.daily_budget_exhausted:
            _print_daily_budget_spent(summary)
            return DAILY_BUDGET_SPENT_EXIT
    _print_state(settings)
    if writes == 0 and ok:
        print("Nothing to send: LeadSquared already matches the source (0 write calls).")
    print(f"Warehouse: {settings.warehouse_location().describe()}  -- state: lsq-pipeline state")
    print("Open the UI to see the runs and lineage: lsq-pipeline ui")
    return 0 if ok else 1


def _print_state(settings) -> None:
    from lsq_pipeline.orchestration.runs import warehouse_of
    from lsq_pipeline.tables.state import status_counts

    with warehouse_of(settings).get_connection() as conn:
        states = status_counts(conn)
    total = sum(states.values())
    print("Overall: " + ", ".join(f"{status} {count}" for status, count in states.items())
          + f" (of {total} source records)")


def _add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline demo`: the main job on the embedded sandbox, every demo day in order."""
    parser = subparsers.add_parser(
        "demo", help="sync every source day in order against the embedded sandbox and print a summary",
        description="Outside any dg project, with no source folder here, the demo lays out a small dg project "
                    f"in ./{DEMO_DIR}/ (or --dir) with the packaged demo data, and syncs it.",
    )
    parser.add_argument("--dir", metavar="DIR", help=f"lay out and sync the demo project in DIR (default ./{DEMO_DIR}/ "
                                                     "when no project or source is here)")
    _add_account_argument(parser)
    parser.set_defaults(handler=_run_demo)


def _run_sync(args: argparse.Namespace) -> int:
    settings = _checked_settings("sync", args)
    if settings is None:
        return 2
    from lsq_pipeline.orchestration.runs import launch, run_config, summarize

    if args.partition:
        first = last = args.partition
    elif args.from_day and args.to_day:
        first, last = args.from_day, args.to_day
    else:
        print("lsq-pipeline sync: give --partition DAY, or --from DAY --to DAY", file=sys.stderr)
        return 2
    if last < first:
        print(f"lsq-pipeline sync: --to {last} is before --from {first}", file=sys.stderr)
        return 2
    start, today = settings.first_partition_day(), datetime.now(timezone.utc).date()
    if first < start:
        print(f"lsq-pipeline sync: {first} is before the account's first day {start} "
              f"({settings.setting_name('first_day')}, else the oldest day folder)", file=sys.stderr)
        return 2
    if last >= today:
        print(f"lsq-pipeline sync: {last} has not ended yet (UTC): a day is synced once it is over", file=sys.stderr)
        return 2
    config = None if args.dry_run else run_config(settings, args.full_reconcile, args.max_change_share)
    run = launch(settings, first, last, dry_run=args.dry_run, full_reconcile=args.full_reconcile, config=config)
    summary = summarize(settings, run, first, last)
    label = f"{first}" if first == last else f"{first}..{last}"
    _print_outcome(label, summary, args.dry_run)
    account = f" --account {args.account}" if args.account else ""
    return _run_exit(run, summary, f"lsq-pipeline sync{account} --from {first} --to {last}")


def _print_outcome(label: str, summary, dry_run: bool) -> None:
    if dry_run:
        planned = summary.planned
        print(
            f"{label} (dry run, nothing sent): create {planned.get('create', 0)}, update "
            f"{planned.get('update', 0)}, unchanged {planned.get('unchanged', 0)}, stale "
            f"{planned.get('stale', 0)}, skipped by the mode {planned.get('skipped', 0)}, rejected {summary.rejected}"
        )
    else:
        _print_day(label, summary)


def _run_exit(run, summary, again: str) -> int:
    """The run's last line and the exit code: 0, 1 (the run failed: `again` is the command that
    runs it again, safely), 3 (the day's call budget spent)."""
    print(f"Run {run.run_id} {'succeeded' if run.is_success else 'FAILED'}; see it in the UI (lsq-pipeline ui).")
    if not run.is_success:
        print(f"Running it again is safe (calls left in the air are resolved, nothing is doubled): {again}")
    if run.is_success and summary.daily_budget_exhausted:
        _print_daily_budget_spent(summary)
        return DAILY_BUDGET_SPENT_EXIT
    return 0 if run.is_success else 1


def _add_sync_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline sync`: one run on the persistent Dagster instance (it shows in the UI)."""
    parser = subparsers.add_parser("sync", help="run the sync job for a day or a range of days")
    parser.add_argument("--partition", type=_day, metavar="DAY", help="one day, YYYY-MM-DD")
    parser.add_argument("--from", dest="from_day", type=_day, metavar="DAY", help="first day of a range")
    parser.add_argument("--to", dest="to_day", type=_day, metavar="DAY", help="last day of a range")
    parser.add_argument("--dry-run", action="store_true", help="plan and report the batches; send nothing")
    parser.add_argument(
        "--full-reconcile", action="store_true", help="read back every known opportunity, not only the touched ones"
    )
    parser.add_argument(
        "--max-change-share", type=float, metavar="SHARE",
        help="this run may update up to this share of known opportunities (default LSQ_MAX_CHANGE_SHARE, 0.5)",
    )
    _add_account_argument(parser)
    parser.set_defaults(handler=_run_sync)


def _run_retry(args: argparse.Namespace) -> int:
    settings = _checked_settings("retry", args)
    if settings is None:
        return 2
    if not (args.source_ids or args.all_failed):
        print("lsq-pipeline retry: give --source-id ID (one or more) or --all-failed", file=sys.stderr)
        return 2

    from lsq_pipeline.orchestration.runs import launch, run_config, summarize, warehouse_of
    from lsq_pipeline.steps.plan import failed_records

    ids = list(args.source_ids or [])
    with warehouse_of(settings).get_connection() as conn:
        found = failed_records(conn, ids, args.all_failed)
    not_failed = sorted(set(ids) - set(found))
    if not_failed:
        print(f"lsq-pipeline retry: not failed (nothing to retry): {', '.join(not_failed)}", file=sys.stderr)
    if not found:
        print("Nothing to retry: no failed record matches.")
        return 0 if not not_failed else 2
    first, last = min(found.values()), max(found.values())  # the days that hold them, and no other
    config = run_config(settings, retry_source_ids=sorted(found))
    run = launch(settings, first, last, dry_run=args.dry_run, config=config, retry=True)
    summary = summarize(settings, run, first, last)
    _print_outcome(f"retry of {len(found)} failed records", summary, args.dry_run)
    return _run_exit(run, summary, "lsq-pipeline " + " ".join(sys.argv[1:]))


def _add_retry_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline retry`: send failed records again now, refused versions included."""
    parser = subparsers.add_parser(
        "retry", help="send failed records again now (refused or out of attempts included)",
        description="Clears the refusal of failed records and syncs them now, as one run of retry_job.",
    )
    parser.add_argument("--source-id", dest="source_ids", action="append", metavar="ID", help="a record to retry")
    parser.add_argument("--all-failed", action="store_true", help="every failed record")
    parser.add_argument("--dry-run", action="store_true", help="plan and report; send nothing")
    _add_account_argument(parser)
    parser.set_defaults(handler=_run_retry)


HISTORY_COLUMNS = (
    "run_id", "job", "first_day", "last_day", "status", "started_at", "ended_at",
    "succeeded_create", "succeeded_capture", "succeeded_update", "succeeded_activity",
    "failed_create", "failed_update", "failed_activity", "pending_read_back", "missing", "api_calls_total",
    "errors", "reason",
)


def _run_history(args: argparse.Namespace) -> int:
    settings = _checked_settings("history", args, paths=False)
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
    table = [[_history_cell(row[i]) for i in picked] for row in rows]
    _print_table([name.replace("succeeded_", "ok_") for name in HISTORY_COLUMNS], table)
    return 0


def _history_cell(value: object) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime") and hasattr(value, "hour"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _add_history_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline history`: the run history table, newest first."""
    parser = subparsers.add_parser("history", help="print the run history (sync_runs), newest first")
    parser.add_argument("--last", type=int, default=20, metavar="N", help="how many runs (default 20)")
    _add_account_argument(parser)
    parser.set_defaults(handler=_run_history)


STATE_ROWS_SHOWN = 50
"""Records listed by `state --status`: enough to see the errors, few enough to read."""


def _run_state(args: argparse.Namespace) -> int:
    """Read the state and close the warehouse at once (a DuckDB file opened read-only: a run waiting
    for it waits a moment at most), then print."""
    settings = _checked_settings("state", args, paths=False)
    if settings is None:
        return 2
    from lsq_pipeline.tables import state

    location = settings.warehouse_location()
    if not location.exists():
        print(f"No warehouse yet ({location.describe()}): nothing has run.")
        return 0
    try:
        with location.connect(lambda line: print(line, file=sys.stderr), read_only=True) as conn:
            if not state.has_state(conn):
                print(f"No warehouse yet ({location.describe()} has no state table): nothing has run.")
                return 0
            counts = state.status_counts(conn)
            in_status = state.records_in_status(conn, args.status, STATE_ROWS_SHOWN) if args.status else None
            record = state.record_state(conn, args.source_id) if args.source_id else None
            journal = state.journal_history(conn, args.source_id) if args.source_id else []
    except WarehouseError as error:  # the warehouse cannot be read: a setting to fix (exit 2), no run failed
        print(f"lsq-pipeline state: {error}", file=sys.stderr)
        return 2
    total = sum(counts.values())
    print(f"{location.describe()}: {total} source records")
    for status, count in counts.items():
        print(f"  {status:<10} {count}")
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
    table = [[_history_cell(cell) for cell in row] for row in found.rows]
    _print_table(["source_id", "opportunity_id", "error", "last_synced_at"], table)
    if found.total > len(found.rows):
        print(f"... {found.total - len(found.rows)} more")


def _print_record(source_id: str, record: dict, journal: list[dict]) -> None:
    print(f"\n{source_id} in opportunity_state:")
    width = max(len(column) for column in record)
    for column, value in record.items():
        if value is not None:
            print(f"  {column:<{width}}  {_history_cell(value)}")
    if not journal:
        print(f"\n{source_id} in push_journal: no rows (nothing was ever sent for it)")
        return
    print(f"\n{source_id} in push_journal ({len(journal)} rows, oldest first):")
    _print_table(list(journal[0]), [[_history_cell(row[c]) for c in row] for row in journal])


def _print_table(headers: list[str], table: list[list[str]]) -> None:
    table = [[cell.replace("\n", " ") for cell in line] for line in table]
    widths = [max(len(h), *(len(line[n]) for line in table)) for n, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def _add_state_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline state`: what the state table says, without holding the warehouse."""
    parser = subparsers.add_parser(
        "state", help="print the records per status, those of one status, or one record's state and journal",
        description="Reads the warehouse (a DuckDB file read-only) and closes it before printing.",
    )
    parser.add_argument("--status", metavar="STATUS", help="list the records in this status with their errors "
                                                           f"(the first {STATE_ROWS_SHOWN})")
    parser.add_argument("--source-id", metavar="ID", help="one record's state row and journal history")
    _add_account_argument(parser)
    parser.set_defaults(handler=_run_state)


def _run_warehouse_copy(args: argparse.Namespace) -> int:
    from lsq_pipeline.warehouse.connection import Warehouse
    from lsq_pipeline.warehouse.copy import CopyRefused, copy_warehouse, target_problem
    from lsq_pipeline.warehouse.schema import WarehouseVersionError

    problem = target_problem(args.to, "public")  # before anything else: the URL may hold a secret
    if problem:
        print(f"lsq-pipeline warehouse copy: --to: {problem}", file=sys.stderr)
        return 2
    settings = _checked_settings("warehouse copy", args, paths=False)
    if settings is None:
        return 2
    location = settings.warehouse_location()
    if location.on_postgres:
        print(f"lsq-pipeline warehouse copy: {settings.setting_name('warehouse')} is already PostgreSQL "
              f"({location.describe()}): the copy moves a DuckDB file", file=sys.stderr)
        return 2
    schema = args.schema or location.schema
    problem = target_problem(args.to, schema)
    if problem:
        print(f"lsq-pipeline warehouse copy: --schema: {problem}", file=sys.stderr)
        return 2
    target = Warehouse(args.to, schema, memory_limit=location.memory_limit,
                       lock_timeout_seconds=location.lock_timeout_seconds)
    print(f"Copying {location.describe()} into {target.describe()}, in one transaction")
    try:
        result = copy_warehouse(Path(location.target), target)
    except (CopyRefused, WarehouseError, WarehouseVersionError) as error:
        print(f"lsq-pipeline warehouse copy: {error}", file=sys.stderr)
        return 2
    width = max(len(table) for table in result.rows)
    for table, rows in result.rows.items():
        print(f"  {table:<{width}}  {rows}")
    print(f"Copied {sum(result.rows.values())} rows. The DuckDB file is left as it was; from now on the runs must "
          f"use PostgreSQL:")
    if settings.is_default:
        print(f"  LSQ_WAREHOUSE={args.to}" + (f"  LSQ_WAREHOUSE_SCHEMA={schema}" if schema != "public" else ""))
    else:
        print(f"  in account {settings.account}'s defs.yaml: warehouse: {args.to}"
              + (f"  warehouse_schema: {schema}" if schema != settings.account else ""))
    print("  (the password in PGPASSWORD or ~/.pgpass, never in the URL)")
    return 0


def _run_warehouse_upgrade(args: argparse.Namespace) -> int:
    from lsq_pipeline.warehouse.upgrade import upgrade_warehouse
    from lsq_pipeline.warehouse.schema import WarehouseVersionError

    settings = _checked_settings("warehouse upgrade", args, paths=False)
    if settings is None:
        return 2
    location = settings.warehouse_location()
    try:
        result = upgrade_warehouse(location)
    except (WarehouseError, WarehouseVersionError) as error:
        print(f"lsq-pipeline warehouse upgrade: {error}", file=sys.stderr)
        return 2
    if not result.upgraded:
        print(f"{location.describe()} already opens with this release's DuckDB: nothing to upgrade.")
        return 0
    width = max(len(table) for table in result.rows)
    for table, rows in result.rows.items():
        print(f"  {table:<{width}}  {rows}")
    print(f"Upgraded {location.target}: {sum(result.rows.values())} rows in {len(result.rows)} tables exported by "
          f"DuckDB 2.0.1 and imported by this release's DuckDB, every table's row count checked"
          + (f"; schema steps applied: {', '.join(result.migrated)}" if result.migrated else ""))
    print(f"The old file is kept (never deleted by lsq-pipeline) at {result.backup}")
    account = f" --account {args.account}" if args.account else ""
    print(f"To move it to PostgreSQL as well: lsq-pipeline warehouse copy{account} --to postgresql://user@host:5432/db")
    return 0


def _add_warehouse_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline warehouse copy`: move an account's DuckDB warehouse into PostgreSQL;
    `lsq-pipeline warehouse upgrade`: rewrite a DuckDB file of the previous release (DuckDB 2.x)."""
    parser = subparsers.add_parser("warehouse", help="move the account's warehouse (warehouse copy), or rewrite "
                                                     "a file of the previous release (warehouse upgrade)")
    commands = parser.add_subparsers(dest="warehouse_command", required=True)
    copy = commands.add_parser(
        "copy", help="copy the account's DuckDB warehouse into an empty PostgreSQL schema",
        description="Copies every table (journal and state included) of the account's DuckDB file into PostgreSQL "
                    "in one transaction; refused when the target schema already holds rows.",
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host:5432/db (no password: "
                                                                 "PGPASSWORD or ~/.pgpass)")
    copy.add_argument("--schema", metavar="NAME", help="target schema (default: the account's warehouse_schema, "
                                                       "else public for the default account, the account's name otherwise)")
    _add_account_argument(copy)
    copy.set_defaults(handler=_run_warehouse_copy)
    upgrade = commands.add_parser(
        "upgrade", help="rewrite a warehouse file written by the previous release's DuckDB 2.x for this release",
        description="Exports the account's DuckDB file with DuckDB 2.0.1 (pip-installed into a throwaway folder) and "
                    "imports it into a new file with this release's DuckDB; the old file is kept beside it as "
                    "<file>.duckdb-2.0.bak. Does nothing to a file that already opens.",
    )
    _add_account_argument(upgrade)
    upgrade.set_defaults(handler=_run_warehouse_upgrade)


def _run_ui(args: argparse.Namespace) -> int:
    """`dg dev` in the project (webserver and daemon), or `dagster dev` of the packaged default
    account outside any project; both of this venv (beside this interpreter), so
    `.venv/bin/lsq-pipeline ui` works without activating it."""
    from lsq_pipeline.orchestration.runs import selected_project, use_project_instance

    if not _select_project(args):
        return 2
    use_project_instance()
    project = selected_project()
    tool = Path(sys.executable).with_name("dg" if project else "dagster")
    if not tool.exists():
        raise MissingExtra(f"lsq-pipeline ui needs {tool.name}, which is not installed: pip install 'lsq_pipeline[ui]'")
    if project:
        # --use-active-venv with VIRTUAL_ENV keeps dg on this environment.
        command = [str(tool), "dev", "--use-active-venv", "--port", str(args.port)]
        os.environ["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
        os.chdir(project.root)
    else:
        command = [str(tool), "dev", "-m", "lsq_pipeline.definitions", "--port", str(args.port)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} " + " ".join(command), flush=True)
    os.execv(command[0], command)


def _add_ui_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline ui`: `dg dev` on the project's instance (webserver and daemon)."""
    parser = subparsers.add_parser("ui", help="open the Dagster UI (dg dev) on the project's instance")
    parser.add_argument("--port", type=int, default=3000)
    _add_project_argument(parser)
    parser.set_defaults(handler=_run_ui)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsq-pipeline",
        description="Keep LeadSquared opportunities in sync with source records.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_sandbox_command(subparsers)
    _add_generate_command(subparsers)
    _add_demo_command(subparsers)
    _add_sync_command(subparsers)
    _add_retry_command(subparsers)
    _add_history_command(subparsers)
    _add_state_command(subparsers)
    _add_warehouse_command(subparsers)
    _add_ui_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command not in {"demo", "ui"} and hasattr(args, "project") and not _select_project(args):
            return 2
        return args.handler(args) or 0
    except (WarehouseError, MissingExtra) as error:  # a locked file, an extra not installed: one line, no traceback
        print(f"lsq-pipeline {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
