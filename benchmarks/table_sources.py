"""Table sources at scale: one day's read against the whole table's on PostgreSQL, and a snapshot
with no change from PostgreSQL against the same rows from a DuckDB table.

Run: `.venv/bin/python benchmarks/table_sources.py [--rows N] [--days D] [--repeat R] [--out DIR]`.

The loan applications (the demo mapping's columns, typed: NUMERIC amount, TIMESTAMPTZ
created_at and updated_at) are made in SQL, `--days` days of them in `updated_at` order, and
written to a PostgreSQL server of the script's own (lsq_pipeline_tests.postgres, as the tests
start it; an index on `updated_at`, then ANALYZE) and to a DuckDB file (`analytics.duckdb`).

- **read**: the extract's reader (`steps/read_tables.stage_table`) on the PostgreSQL table with
  `day_column: updated_at`, one middle day against every day (one range over the whole table);
  attach, read, stage and detach, nothing else. Median of `--repeat`. Bar: one day <= 10 % of
  the whole.
- **snapshot**: for each source (the PostgreSQL table, the DuckDB table), a new DuckDB warehouse
  where the same snapshot is already synced: a first extract, transform and plan, then a state
  row for each planned record as if the push had written it (`sent_hash` the record's hash, as
  `local_scale.py` does for its re-plan). Then, timed: extract + transform + plan (snapshot)
  + the gone share, as the sync's plan step computes it. Bar: 0 writes planned, 0 gone, the
  PostgreSQL source in <= 2x the DuckDB table's time.
Output goes to benchmarks/out/ (gitignored).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import duckdb

from lsq_pipeline.mapping import Mapping, load_mapping
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.sources import Sources, SourceTable, snapshot_day
from lsq_pipeline.steps.extract import extract_days
from lsq_pipeline.steps.gone import gone_share
from lsq_pipeline.steps.plan import plan_days
from lsq_pipeline.steps.read_tables import stage_table
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.connection import Warehouse, load_postgres_extension
from lsq_pipeline.warehouse.schema import ensure_schema

REPO = Path(__file__).resolve().parents[1]
START = date(2026, 10, 1)
TABLE = "loan_applications"
OWNERS = ("priya.sharma@lendco.example", "arjun.mehta@lendco.example", "meera.iyer@lendco.example",
          "rahul.verma@lendco.example")
PRODUCTS = ("Personal Loan", "Home Loan", "Auto Loan", "Business Loan", "Education Loan")
STAGES = ("New", "Documents Pending", "Under Review", "Approved", "Disbursed", "Rejected")
WRITES = ("create", "update")


def applications_sql(rows: int, days: int) -> str:
    """`rows` valid applications, one key each, `updated_at` rising from START over `days` days."""
    def pick(values: tuple[str, ...], salt: int) -> str:
        listed = ", ".join(f"'{value}'" for value in values)
        return f"([{listed}])[1 + (i * {salt}) % {len(values)}]"
    step = days * 86_400 / rows
    return f"""
        SELECT 'APP-' || lpad(CAST(i AS VARCHAR), 8, '0') AS application_id,
               'Applicant ' || CAST(i AS VARCHAR) AS applicant_name,
               'applicant.' || CAST(i AS VARCHAR) || '@mail.example' AS email,
               '+91 9' || lpad(CAST(i % 1000000000 AS VARCHAR), 9, '0') AS phone,
               {pick(PRODUCTS, 7)} AS product,
               CAST(10000 + (i * 37) % 990000 AS DECIMAL(12, 2)) AS amount,
               {pick(STAGES, 11)} AS stage,
               {pick(OWNERS, 13)} AS owner_email,
               TIMESTAMPTZ '{START.isoformat()} 00:00:00+00' + to_seconds(CAST(floor(i * {step}) AS BIGINT))
                   - INTERVAL 2 HOUR AS created_at,
               TIMESTAMPTZ '{START.isoformat()} 00:00:00+00' + to_seconds(CAST(floor(i * {step}) AS BIGINT))
                   AS updated_at
        FROM range({rows}) AS r(i)"""


def make_sources(rows: int, days: int, out: Path, postgres_url: str, server) -> Path:
    """Write the applications to the DuckDB file `out/analytics.duckdb` and to PostgreSQL (day
    order, an index on updated_at); the DuckDB file's path."""
    duckdb_file = out / "analytics.duckdb"
    duckdb_file.unlink(missing_ok=True)
    began = time.perf_counter()
    with duckdb.connect(str(duckdb_file)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"CREATE TABLE {TABLE} AS {applications_sql(rows, days)} ORDER BY updated_at")
        load_postgres_extension(conn)
        conn.execute(f"ATTACH '{postgres_url}' AS pg (TYPE postgres)")
        conn.execute(f"CREATE TABLE pg.public.{TABLE} AS SELECT * FROM {TABLE} ORDER BY updated_at")
        conn.execute("DETACH pg")
    server.psql(f"CREATE INDEX ON {TABLE} (updated_at); ANALYZE {TABLE}", postgres_url.rsplit("/", 1)[1])
    print(f"sources    {time.perf_counter() - began:6.1f} s  (not part of a bar) {rows:,} rows over {days} days "
          f"in PostgreSQL ({TABLE}, index on updated_at) and {duckdb_file.name}")
    return duckdb_file


def timed(action: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def read_case(source: SourceTable, mapping: Mapping, days: int, repeat: int, memory_limit: str) -> bool:
    """One day's read against every day's, through the extract's reader; whether the bar holds."""
    all_days = [START + timedelta(days=n) for n in range(days)]
    one_day = [all_days[len(all_days) // 2]]
    columns, key = mapping.application_columns(), mapping.opportunity.source_id.column
    results: dict[str, list[float]] = {"one day": [], "whole table": []}
    read: dict[str, int] = {}
    with duckdb.connect(config={"memory_limit": memory_limit}) as conn:
        for _ in range(repeat):
            for name, wanted in (("one day", one_day), ("whole table", all_days)):
                seconds, staged = timed(lambda: stage_table(conn, source, "applications", columns, key, wanted))
                results[name].append(seconds)
                read[name] = sum(staged.counts.values())
                conn.execute(f"DROP TABLE {staged.table}")
    medians = {name: statistics.median(seconds) for name, seconds in results.items()}
    for name, seconds in results.items():
        print(f"read {name:<12} {medians[name]:6.2f} s median of {', '.join(f'{s:.2f}' for s in seconds)}  "
              f"{read[name]:,} rows")
    share = medians["one day"] / medians["whole table"]
    passed = share <= 0.10
    print(f"one day / whole table: {share:.1%} of the time for {read['one day'] / read['whole table']:.1%} of the "
          f"rows (bar: <= 10 %) -> {'PASS' if passed else 'FAIL'}")
    return passed


def snapshot_case(name: str, source: SourceTable, mapping: Mapping, warehouse: Path, memory_limit: str) -> float:
    """Sync the snapshot once (state faked), then time extract + transform + plan of it unchanged."""
    for leftover in (warehouse, Path(f"{warehouse}.wal")):
        leftover.unlink(missing_ok=True)
    sources, day = Sources(applications=source), [snapshot_day()]
    with Warehouse(str(warehouse), "public", memory_limit=memory_limit).connect() as conn:
        conn.execute("SET enable_progress_bar = false")
        ensure_schema(conn)

        def steps() -> dict[str, int]:
            extract_days(conn, sources, day, mapping)
            rejected = transform_days(conn, day, mapping).get("rejected", 0)
            planned = plan_days(conn, day, mapping, snapshot=True)
            return planned | {"gone": gone_share(conn, day).gone, "rejected": rejected}

        first_seconds, first = timed(steps)
        conn.execute("""INSERT OR REPLACE INTO opportunity_state (source_id, opportunity_id, event_code, sent_hash,
                            sent_fields, source_updated_at, status)
                        SELECT source_id, 'OPP-' || source_id, 12002, record_hash, full_fields, source_updated_at,
                               'in_sync' FROM sync_plan_payloads""")
        seconds, planned = timed(steps)
    writes = sum(planned[action] for action in WRITES)
    print(f"snapshot {name:<10} first {first_seconds:6.1f} s ({first['create']:,} creates); unchanged "
          f"{seconds:6.1f} s: {planned['unchanged']:,} unchanged, {writes} writes, {planned['gone']} gone, "
          f"{planned['rejected']} rejected")
    if writes or planned["gone"] or planned["unchanged"] != first["create"]:
        raise SystemExit(f"snapshot {name}: expected every record unchanged, 0 writes and 0 gone, got {planned}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="reads of each kind, the median kept")
    parser.add_argument("--case", choices=("read", "snapshot", "both"), default="both")
    parser.add_argument("--memory-limit", default=AccountSettings.model_fields["duckdb_memory_limit"].default)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mapping = load_mapping(REPO / "data" / "mapping.yaml")
    sys.path.insert(0, str(REPO))  # lsq_pipeline_tests is not installed: it is the repository's
    from lsq_pipeline_tests.postgres import start_server

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, "
          f"memory_limit {args.memory_limit}")
    server = start_server()
    try:
        url = server.url(server.new_database("table_sources"))
        print(f"PostgreSQL: {server.psql('SHOW server_version')} on this machine (a server of the script's own)")
        duckdb_file = make_sources(args.rows, args.days, args.out, url, server)
        passed = True
        if args.case in ("read", "both"):
            daily = SourceTable(table=f"public.{TABLE}", database=url, day_column="updated_at")
            passed &= read_case(daily, mapping, args.days, args.repeat, args.memory_limit)
        if args.case in ("snapshot", "both"):
            on_postgres = snapshot_case("PostgreSQL", SourceTable(table=f"public.{TABLE}", database=url), mapping,
                                        args.out / "warehouse_pg_source.duckdb", args.memory_limit)
            on_duckdb = snapshot_case("DuckDB", SourceTable(table=f"main.{TABLE}", database=str(duckdb_file)),
                                      mapping, args.out / "warehouse_duckdb_source.duckdb", args.memory_limit)
            ratio = on_postgres / on_duckdb
            passed &= ratio <= 2
            print(f"snapshot, no change: PostgreSQL / DuckDB table = {ratio:.2f}x (bar: <= 2x) -> "
                  f"{'PASS' if ratio <= 2 else 'FAIL'}")
        print(f"load average {os.getloadavg()[0]:.1f}; {'all bars met' if passed else 'a bar was missed'}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
