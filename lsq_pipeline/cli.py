"""`lsq-pipeline`: the command line. Each subcommand is registered by one `_add_*` function."""

from __future__ import annotations

import argparse
import sys


def _add_sandbox_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline sandbox`: run the LeadSquared sandbox until Ctrl-C (issue 2)."""
    parser = subparsers.add_parser("sandbox", help="run the local LeadSquared sandbox server")
    parser.set_defaults(handler=lambda args: parser.error("not implemented yet"))


def _add_generate_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline generate`: deterministic demo source files at any scale (issue 4)."""
    parser = subparsers.add_parser("generate", help="generate daily source export files")
    parser.set_defaults(handler=lambda args: parser.error("not implemented yet"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsq-pipeline",
        description="Keep LeadSquared opportunities in sync with source records.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_sandbox_command(subparsers)
    _add_generate_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
