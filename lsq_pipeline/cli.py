"""`lsq-pipeline`: the command line. Each subcommand is registered by one `add_*_command` function
of `lsq_pipeline.commands`."""

from __future__ import annotations

import argparse
import sys

from lsq_pipeline.commands.demo import add_demo_command, add_generate_command
from lsq_pipeline.commands.project import select_project_of
from lsq_pipeline.commands.reports import add_history_command, add_state_command
from lsq_pipeline.commands.runs import add_retry_command, add_sync_command
from lsq_pipeline.commands.serve import add_sandbox_command, add_ui_command
from lsq_pipeline.commands.warehouse import add_warehouse_command
from lsq_pipeline.extras import MissingExtra
from lsq_pipeline.warehouse.connection import WarehouseError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsq-pipeline",
        description="Keep LeadSquared opportunities in sync with source records.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_sandbox_command(subparsers)
    add_generate_command(subparsers)
    add_demo_command(subparsers)
    add_sync_command(subparsers)
    add_retry_command(subparsers)
    add_history_command(subparsers)
    add_state_command(subparsers)
    add_warehouse_command(subparsers)
    add_ui_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command not in {"demo", "ui"} and hasattr(args, "project") and not select_project_of(args):
            return 2
        return args.handler(args) or 0
    except (WarehouseError, MissingExtra) as error:  # a locked file, an extra not installed: one line, no traceback
        print(f"lsq-pipeline {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
