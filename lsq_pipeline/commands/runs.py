"""`lsq-pipeline sync` and `retry`: one run on the project's Dagster instance, its outcome printed
and turned into the exit code."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timezone

from lsq_pipeline.commands.project import add_account_argument, checked_settings
from lsq_pipeline.tables.statuses import Action


def _parse_day(text: str) -> date:
    """A `--partition`, `--from` or `--to` value; argparse reports one that is no day."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def print_day(label: str, summary) -> None:
    """One line of what a run did, and what it had sent when it failed."""
    planned = summary.planned
    print(
        f"{label}  created {summary.created:4d}  updated {summary.updated:4d}  "
        f"unchanged {planned.get(Action.UNCHANGED, 0):4d}  rejected {summary.rejected:3d}  "
        f"failed {summary.failed:3d}  activities {summary.activities:3d}{_activities_failed(summary)}  "
        f"API calls {summary.api_calls:3d}" + _gone(summary)
    )
    if not summary.success:
        print(
            f"{' ' * len(label)}  RUN FAILED; before it failed it sent {summary.write_calls} write calls: "
            f"created {summary.created}, updated {summary.updated}, activities {summary.activities}, "
            f"failed {summary.failed} (see the run in the UI: lsq-pipeline ui)"
        )


def _activities_failed(summary) -> str:
    """Activities LeadSquared refused: said only when there are some (`lsq-pipeline state` lists them)."""
    return f" ({summary.activities_failed} failed)" if summary.activities_failed else ""


def _gone(summary) -> str:
    """A snapshot run's records gone from the source (marked so only when the run gets past its check)."""
    return "" if summary.gone is None else f"  gone from source {summary.gone:3d}"


DAILY_BUDGET_SPENT_EXIT = 3
"""Exit code of a run that stopped at the account's daily call count (nothing failed; it continues tomorrow)."""


def print_daily_budget_spent(summary) -> None:
    print(f"daily call budget spent: {summary.records_waiting} records wait; the next run after 00:00 UTC continues")


def _run_sync(args: argparse.Namespace) -> int:
    settings = checked_settings("sync", args)
    if settings is None:
        return 2
    from lsq_pipeline.orchestration.runs import launch, run_config, summarize

    if not settings.daily:
        return _run_snapshot(settings, args)
    if args.max_gone_share is not None:
        print(f"lsq-pipeline sync: --max-gone-share is for a snapshot source (a table or query without day_column); "
              f"account {settings.account} is synced by day", file=sys.stderr)
        return 2
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
              f"({settings.setting_name('first_day')})", file=sys.stderr)
        return 2
    if last >= today:
        print(f"lsq-pipeline sync: {last} has not ended yet (UTC): a day is synced once it is over", file=sys.stderr)
        return 2
    config = None if args.dry_run else run_config(settings, args.full_reconcile, args.max_change_share)
    run = launch(settings, first, last, dry_run=args.dry_run, full_reconcile=args.full_reconcile, config=config)
    summary = summarize(settings, run)
    label = f"{first}" if first == last else f"{first}..{last}"
    _print_outcome(label, summary, args.dry_run)
    account = f" --account {args.account}" if args.account else ""
    return _run_exit(run, summary, f"lsq-pipeline sync{account} --from {first} --to {last}")


def _run_snapshot(settings, args: argparse.Namespace) -> int:
    """A snapshot account's sync: the whole source, no days to give."""
    from lsq_pipeline.orchestration.runs import launch, run_config, summarize

    given = [option for option, value in (("--partition", args.partition), ("--from", args.from_day),
                                          ("--to", args.to_day)) if value]
    if given:
        print(f"lsq-pipeline sync: account {settings.account} reads a snapshot (a table or query without "
              f"day_column), it has no days: run it without {', '.join(given)}", file=sys.stderr)
        return 2
    config = None if args.dry_run else run_config(settings, args.full_reconcile, args.max_change_share,
                                                  max_gone_share=args.max_gone_share)
    run = launch(settings, None, None, dry_run=args.dry_run, full_reconcile=args.full_reconcile, config=config)
    summary = summarize(settings, run)
    _print_outcome("snapshot", summary, args.dry_run)
    account = f" --account {args.account}" if args.account else ""
    return _run_exit(run, summary, f"lsq-pipeline sync{account}")


def _print_outcome(label: str, summary, dry_run: bool) -> None:
    if dry_run:
        planned = summary.planned
        print(
            f"{label} (dry run, nothing sent): create {planned.get(Action.CREATE, 0)}, update "
            f"{planned.get(Action.UPDATE, 0)}, unchanged {planned.get(Action.UNCHANGED, 0)}, stale "
            f"{planned.get(Action.STALE, 0)}, skipped by the mode {planned.get(Action.SKIPPED, 0)}, "
            f"rejected {summary.rejected}" + ("" if summary.gone is None else f", gone from source {summary.gone}")
        )
    else:
        print_day(label, summary)


def _run_exit(run, summary, again: str) -> int:
    """The run's last line and the exit code: 0, 1 (the run failed: `again` is the command that
    runs it again, safely), 3 (the day's call budget spent)."""
    print(f"Run {run.run_id} {'succeeded' if run.is_success else 'FAILED'}; see it in the UI (lsq-pipeline ui).")
    if not run.is_success:
        _print_why(run, again)
    if run.is_success and summary.daily_budget_exhausted:
        print_daily_budget_spent(summary)
        return DAILY_BUDGET_SPENT_EXIT
    return 0 if run.is_success else 1


def _print_why(run, again: str) -> None:
    """Why the run failed, and what to do: a guard says which flag lets one run past it once it is
    understood (the reject rate has none: rows are fixed in the source, or `max_reject_rate`
    raised); a failed step is safe to run again (calls in the air are resolved)."""
    from lsq_pipeline.orchestration.checks import CHANGE_SHARE, GONE_SHARE
    from lsq_pipeline.orchestration.runs import why_failed

    override_of_check = {CHANGE_SHARE: "--max-change-share", GONE_SHARE: "--max-gone-share"}
    stops = why_failed(run)
    for stop in stops:
        print(f"Stopped by {stop.check}: {stop.reason}" if stop.check else f"Failed: {stop.reason}")
    guards = [stop.check for stop in stops if stop.check]
    if guards:
        flags = " ".join(f"{override_of_check[check]} N" for check in guards if check in override_of_check)
        print("Nothing was sent. Look at the source first; if it is right, run it again past the guard: "
              + (f"{again} {flags}" if flags else "raise the account's max_reject_rate"))
    else:
        print(f"Running it again is safe (calls left in the air are resolved, nothing is doubled): {again}")


def add_sync_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline sync`: one run on the persistent Dagster instance (it shows in the UI)."""
    parser = subparsers.add_parser(
        "sync", help="run the sync job for a day or a range of days (a snapshot account: no day, the whole source)")
    parser.add_argument("--partition", type=_parse_day, metavar="DAY", help="one day, YYYY-MM-DD")
    parser.add_argument("--from", dest="from_day", type=_parse_day, metavar="DAY", help="first day of a range")
    parser.add_argument("--to", dest="to_day", type=_parse_day, metavar="DAY", help="last day of a range")
    parser.add_argument("--dry-run", action="store_true", help="plan and report the batches; send nothing")
    parser.add_argument(
        "--full-reconcile", action="store_true", help="read back every known opportunity, not only the touched ones"
    )
    parser.add_argument(
        "--max-change-share", type=float, metavar="SHARE",
        help="this run may update up to this share of known opportunities "
             "(default: the account's max_change_share, 0.5 unless set)",
    )
    parser.add_argument(
        "--max-gone-share", type=float, metavar="SHARE",
        help="a snapshot account: this run may find up to this share of known records gone from the source "
             "(default: the account's max_gone_share, 0.2 unless set)",
    )
    add_account_argument(parser)
    parser.set_defaults(handler=_run_sync)


def _run_retry(args: argparse.Namespace) -> int:
    settings = checked_settings("retry", args)
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
    # the days that hold them, and no other; a snapshot's retry plans them under its run's day
    first, last = (min(found.values()), max(found.values())) if settings.daily else (None, None)
    config = run_config(settings, retry_source_ids=sorted(found))
    run = launch(settings, first, last, dry_run=args.dry_run, config=config, retry=True)
    summary = summarize(settings, run)
    _print_outcome(f"retry of {len(found)} failed records", summary, args.dry_run)
    return _run_exit(run, summary, "lsq-pipeline " + " ".join(sys.argv[1:]))


def add_retry_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline retry`: send failed records again now, refused versions included."""
    parser = subparsers.add_parser(
        "retry", help="send failed records again now (refused or out of attempts included)",
        description="Clears the refusal of failed records and syncs them now, as one run of retry_job.",
    )
    parser.add_argument("--source-id", dest="source_ids", action="append", metavar="ID", help="a record to retry")
    parser.add_argument("--all-failed", action="store_true", help="every failed record")
    parser.add_argument("--dry-run", action="store_true", help="plan and report; send nothing")
    add_account_argument(parser)
    parser.set_defaults(handler=_run_retry)
