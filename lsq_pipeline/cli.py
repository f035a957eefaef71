"""`lsq-pipeline`: the command line. Each subcommand is registered by one `_add_*` function."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path


def _add_sandbox_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline sandbox`: run the LeadSquared sandbox until Ctrl-C (issue 2)."""
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
    """`lsq-pipeline generate`: deterministic demo source files at any scale (issue 4)."""
    parser = subparsers.add_parser("generate", help="generate daily source export files")
    parser.add_argument("--rows", type=int, required=True, help="application rows in all")
    parser.add_argument("--days", type=int, required=True, help="number of day folders")
    parser.add_argument("--seed", type=int, required=True, help="same seed, same bytes")
    parser.add_argument("--out", required=True, help="folder that receives <YYYY-MM-DD>/ folders")
    parser.add_argument("--start-day", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--dirty-rate", type=float, default=0.04, help="share of spoilt rows")
    parser.add_argument("--events", type=int, default=None, help="event rows in all (default rows/2)")

    def handle(args: argparse.Namespace) -> int:
        from lsq_pipeline.sync.generate import generate

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


def _source_days(source_dir: Path) -> list[date]:
    days = []
    for child in sorted(source_dir.iterdir()) if source_dir.is_dir() else []:
        try:
            days.append(date.fromisoformat(child.name))
        except ValueError:
            continue
    return days


def _print_day(label: str, summary) -> None:
    planned = summary.planned
    print(
        f"{label}  created {summary.created:4d}  updated {summary.updated:4d}  "
        f"unchanged {planned.get('unchanged', 0):4d}  rejected {summary.rejected:3d}  "
        f"failed {summary.failed:3d}  activities {summary.activities:3d}  API calls {summary.api_calls:3d}"
        + ("" if summary.success else "  RUN FAILED (see the run in the UI)")
    )


DAILY_BUDGET_SPENT_EXIT = 3
"""Exit code of a run that stopped at the account's daily call count (nothing failed; it continues tomorrow)."""


def _print_daily_budget_spent(summary) -> None:
    print(f"daily call budget spent: {summary.records_waiting} records wait; the next run after 00:00 UTC continues")


def _checked_settings(command: str):
    """The settings, or None after printing which variable is wrong."""
    from lsq_pipeline.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        settings.check_paths()
    except SettingsError as error:
        print(f"lsq-pipeline {command}: {error}", file=sys.stderr)
        return None
    return settings


def _run_demo(args: argparse.Namespace) -> int:
    os.environ.pop("LSQ_API_HOST", None)  # the demo always talks to the embedded sandbox
    settings = _checked_settings("demo")
    if settings is None:
        return 2
    from lsq_pipeline.defs.runs import launch, summarize

    days = _source_days(settings.source_dir)
    if not days:
        print(f"lsq-pipeline demo: no YYYY-MM-DD folders under {settings.source_dir}", file=sys.stderr)
        return 2
    print(f"Syncing {len(days)} days from {settings.source_dir} to the embedded LeadSquared sandbox "
          f"(state in {settings.sandbox_dir}/)")
    writes = 0
    ok = True
    for day in days:
        run = launch(day, day, in_process=True)
        summary = summarize(settings.warehouse, run, day, day)
        writes += summary.write_calls
        ok = ok and summary.success
        _print_day(day.isoformat(), summary)
        if summary.daily_budget_exhausted:
            _print_daily_budget_spent(summary)
            return DAILY_BUDGET_SPENT_EXIT
    _print_state(settings.warehouse)
    if writes == 0 and ok:
        print("Nothing to send: LeadSquared already matches the source (0 write calls).")
    print(f"Warehouse (DuckDB): {settings.warehouse.resolve()}  -- state table: opportunity_state")
    print("Open the UI to see the runs and lineage: lsq-pipeline ui")
    return 0 if ok else 1


def _print_state(warehouse: Path) -> None:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as conn:
        states = conn.execute(
            "SELECT status, count(*) FROM opportunity_state GROUP BY status ORDER BY status"
        ).fetchall()
    total = sum(count for _, count in states)
    print("Overall: " + ", ".join(f"{status} {count}" for status, count in states) + f" (of {total} source records)")


def _add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline demo`: the main job on the embedded sandbox, every demo day in order."""
    parser = subparsers.add_parser(
        "demo", help="sync every source day in order against the embedded sandbox and print a summary"
    )
    parser.set_defaults(handler=_run_demo)


def _run_sync(args: argparse.Namespace) -> int:
    settings = _checked_settings("sync")
    if settings is None:
        return 2
    from lsq_pipeline.defs.runs import launch, summarize

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
    run = launch(first, last, dry_run=args.dry_run, full_reconcile=args.full_reconcile)
    summary = summarize(settings.warehouse, run, first, last)
    label = f"{first}" if first == last else f"{first}..{last}"
    if args.dry_run:
        planned = summary.planned
        print(
            f"{label} (dry run, nothing sent): create {planned.get('create', 0)}, update "
            f"{planned.get('update', 0)}, unchanged {planned.get('unchanged', 0)}, stale "
            f"{planned.get('stale', 0)}, rejected {summary.rejected}"
        )
    else:
        _print_day(label, summary)
    print(f"Run {run.run_id} {'succeeded' if run.is_success else 'FAILED'}; see it in the UI (lsq-pipeline ui).")
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
    parser.set_defaults(handler=_run_sync)


def _run_ui(args: argparse.Namespace) -> int:
    from lsq_pipeline.defs.runs import use_project_instance

    use_project_instance()
    command = ["dagster", "dev", "-w", "workspace.yaml", "--port", str(args.port)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} " + " ".join(command))
    os.execvp(command[0], command)


def _add_ui_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline ui`: `dagster dev` on the project's instance (webserver and daemon)."""
    parser = subparsers.add_parser("ui", help="open the Dagster UI (dagster dev) on the project's instance")
    parser.add_argument("--port", type=int, default=3000)
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
    _add_ui_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
