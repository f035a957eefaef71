"""`lsq-pipeline warehouse copy` and `warehouse upgrade`: move an account's DuckDB warehouse into
PostgreSQL, or rewrite a file of the previous release."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lsq_pipeline.commands.project import add_account_argument, checked_settings
from lsq_pipeline.warehouse.connection import WarehouseError


def _run_warehouse_copy(args: argparse.Namespace) -> int:
    from lsq_pipeline.warehouse.connection import Warehouse
    from lsq_pipeline.warehouse.copy import CopyRefused, copy_warehouse, target_problem
    from lsq_pipeline.warehouse.schema import WarehouseVersionError

    problem = target_problem(args.to, "public")  # before anything else: the URL may hold a secret
    if problem:
        print(f"lsq-pipeline warehouse copy: --to: {problem}", file=sys.stderr)
        return 2
    settings = checked_settings("warehouse copy", args, paths=False)
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

    settings = checked_settings("warehouse upgrade", args, paths=False)
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


def add_warehouse_command(subparsers: argparse._SubParsersAction) -> None:
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
    add_account_argument(copy)
    copy.set_defaults(handler=_run_warehouse_copy)
    upgrade = commands.add_parser(
        "upgrade", help="rewrite a warehouse file written by the previous release's DuckDB 2.x for this release",
        description="Exports the account's DuckDB file with DuckDB 2.0.1 (pip-installed into a throwaway folder) and "
                    "imports it into a new file with this release's DuckDB; the old file is kept beside it as "
                    "<file>.duckdb-2.0.bak. Does nothing to a file that already opens.",
    )
    add_account_argument(upgrade)
    upgrade.set_defaults(handler=_run_warehouse_upgrade)
