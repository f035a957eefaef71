"""`lsq-pipeline generate` and `demo`: demo source files at any scale, and every demo day synced
against the embedded sandbox."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from lsq_pipeline.commands.project import add_account_argument, checked_settings, select_project_of
from lsq_pipeline.commands.runs import DAILY_BUDGET_SPENT_EXIT, print_daily_budget_spent, print_day


def add_generate_command(subparsers: argparse._SubParsersAction) -> None:
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


DEMO_DIR = "lsq-demo"
"""Where `demo` lays out its project when it runs outside any dg project and finds no source."""


def _select_demo(args: argparse.Namespace) -> bool:
    """The project the demo syncs: `--dir`'s demo project; else the dg project it runs in; else the
    packaged default account when the current folder holds its source (LSQ_SOURCE_DIR, default
    data/source); else the demo project laid out in ./lsq-demo/."""
    from lsq_pipeline.demo.project import lay_out
    from lsq_pipeline.orchestration.runs import select_project, selected_project
    from lsq_pipeline.project import find_project

    if args.dir is None:
        if not select_project_of(args):
            return False
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
    settings = checked_settings("demo", args)
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
        summary = summarize(settings, run)
        writes += summary.write_calls
        ok = ok and summary.success
        print_day(day.isoformat(), summary)
        if summary.daily_budget_exhausted:
            print_daily_budget_spent(summary)
            return DAILY_BUDGET_SPENT_EXIT
    _print_state(settings)
    if writes == 0 and ok:
        print("Nothing to send: LeadSquared already matches the source (0 write calls).")
    print(f"Warehouse: {settings.warehouse_location().describe()}  -- state: lsq-pipeline state")
    print("Open the UI to see the runs and lineage: lsq-pipeline ui")
    return 0 if ok else 1


def _print_state(settings) -> None:
    from lsq_pipeline.orchestration.runs import warehouse_of
    from lsq_pipeline.tables.report import status_counts

    with warehouse_of(settings).get_connection() as conn:
        states = status_counts(conn)
    total = sum(states.values())
    print("Overall: " + ", ".join(f"{status} {count}" for status, count in states.items())
          + f" (of {total} source records)")


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline demo`: the main job on the embedded sandbox, every demo day in order."""
    parser = subparsers.add_parser(
        "demo", help="sync every source day in order against the embedded sandbox and print a summary",
        description="Outside any dg project, with no source folder here, the demo lays out a small dg project "
                    f"in ./{DEMO_DIR}/ (or --dir) with the packaged demo data, and syncs it.",
    )
    parser.add_argument("--dir", metavar="DIR", help=f"lay out and sync the demo project in DIR (default ./{DEMO_DIR}/ "
                                                     "when no project or source is here)")
    add_account_argument(parser)
    parser.set_defaults(handler=_run_demo)
