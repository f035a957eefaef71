"""Which dg project and account a command works on: the `--project` and `--account` arguments,
and the account's settings checked before a command uses them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def checked_settings(command: str, args: argparse.Namespace, paths: bool = True):
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


def add_account_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", metavar="NAME",
                        help="the account (a LeadSquaredSyncComponent); required when several are defined")
    add_project_argument(parser)


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="DIR",
                        help="the dg project (default: the one holding the current folder, found as dg finds it; "
                             "none: the packaged default account, LSQ_* variables)")


def select_project_of(args: argparse.Namespace) -> bool:
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
