"""Local cost at scale: generate 1,000,000 application rows, then time extract, transform and plan.

Run: `.venv/bin/python benchmarks/local_scale.py [--rows N] [--days D] [--memory-limit 768MB] [--repeat R]
[--warehouse duckdb|postgres|postgresql://user@host:port/db]`.
Prints seconds and the process's peak resident memory (ru_maxrss) after each step. The plan
runs twice: with an empty state (all creates) and after marking every record synced (the
compare path: all unchanged). `--repeat` runs it all R times, each in a new process on a new
warehouse (a shared machine varies by half a second from run to run), and ends with the median.
Output goes to benchmarks/out/ (gitignored).

`--warehouse` (default `duckdb`: a new DuckDB file under benchmarks/out/) chooses the backend:
`postgres` starts a PostgreSQL server of the script's own (lsq_pipeline_tests.postgres: initdb and
pg_ctl from the machine's package), a new database a run, and stops it at the end; a
`postgresql://` URL (no password) uses that database, a new schema a run, dropped after it. On
PostgreSQL the steps run through `Warehouse(...).connect()`, DuckDB's `postgres` extension, as
the pipeline does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb

from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.warehouse.connection import Warehouse, is_postgres
from lsq_pipeline.steps.extract import extract_days
from lsq_pipeline.demo.generate import generate
from lsq_pipeline.mapping import Mapping, load_mapping
from lsq_pipeline.steps.plan import plan_days
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.schema import ensure_schema

REPO = Path(__file__).resolve().parents[1]
START = date(2026, 11, 1)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system time of this process (all DuckDB threads): on a shared machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-limit", default=AccountSettings.model_fields["duckdb_memory_limit"].default,
                        help="DuckDB memory_limit (default: the pipeline's, LSQ_DUCKDB_MEMORY_LIMIT)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--reuse-source", action="store_true", help="keep the files of the last run")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each in a new process on a new warehouse")
    parser.add_argument("--warehouse", default="duckdb",
                        help="duckdb (a new file, the default), postgres (a server of the script's own) or a "
                             "postgresql:// URL without password")
    args = parser.parse_args()
    if args.warehouse not in ("duckdb", "postgres") and not is_postgres(args.warehouse):
        parser.error("--warehouse: duckdb, postgres or a postgresql:// URL")

    source = args.out / "source"
    if not args.reuse_source:
        shutil.rmtree(source, ignore_errors=True)
    days = [START + timedelta(days=i) for i in range(args.days)]
    mapping = load_mapping(REPO / "data" / "mapping.yaml")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}, "
          f"memory_limit {args.memory_limit}")

    if not args.reuse_source:
        started = time.perf_counter()
        written = generate(source, args.rows, args.days, args.seed)
        print(f"generate   {time.perf_counter() - started:6.1f} s  (not part of the bar) "
              f"{written['applications']:,} application rows, {written['events']:,} event rows")

    with _warehouses(args.warehouse, args.out) as targets:
        print(f"warehouse: {args.warehouse if args.warehouse != 'postgres' else 'PostgreSQL (a server of its own)'}")
        if args.repeat == 1:
            _run(next(targets), args.memory_limit, source, days, mapping)
            return
        # Each run in a process of its own: its peak memory is its own (ru_maxrss never goes down).
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
            totals = [pool.submit(_run, next(targets), args.memory_limit, source, days, mapping).result()
                      for _ in range(args.repeat)]
    print(f"{len(totals)} runs: {', '.join(f'{total:.1f}' for total in totals)} s; "
          f"median {statistics.median(totals):.1f} s, best {min(totals):.1f} s")


@contextmanager
def _warehouses(kind: str, out: Path) -> Iterator[Iterator[tuple[str, str]]]:
    """New warehouses, one a run, as (target, schema): a DuckDB file, a new database of a server of
    our own (stopped on exit), or a new schema of the database at a URL (dropped on exit)."""
    if kind == "duckdb":
        yield iter(lambda: (str(out / "warehouse.duckdb"), "public"), None)
        return
    if kind == "postgres":
        sys.path.insert(0, str(REPO))  # lsq_pipeline_tests is not installed: it is the repository's
        from lsq_pipeline_tests.postgres import start_server

        server = start_server()
        try:
            yield iter(lambda: (server.url(server.new_database("local_scale")), "public"), None)
        finally:
            server.stop()
        return
    made: list[str] = []

    def new_schema() -> tuple[str, str]:
        made.append(f"local_scale_{uuid.uuid4().hex[:8]}")
        return kind, made[-1]

    try:
        yield iter(new_schema, None)
    finally:
        import psycopg2

        with psycopg2.connect(kind) as session, session.cursor() as cursor:
            for schema in made:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _run(target: tuple[str, str], memory_limit: str, source: Path, days: list[date], mapping: Mapping) -> float:
    """Extract, transform and plan on a new warehouse, then the re-plan; prints each step, returns the total."""
    if not is_postgres(target[0]):
        for leftover in (Path(target[0]), Path(target[0] + ".wal")):
            leftover.unlink(missing_ok=True)
    with Warehouse(target[0], target[1], memory_limit=memory_limit).connect() as conn:
        return _steps(conn, source, days, mapping)


def _steps(conn: duckdb.DuckDBPyConnection, source: Path, days: list[date], mapping: Mapping) -> float:
    conn.execute("SET enable_progress_bar = false")  # a session option: DuckDB refuses it in the connect config
    ensure_schema(conn)
    steps: list[tuple[str, float]] = []

    def step(name: str, action) -> object:
        began, cpu_began = time.perf_counter(), cpu_seconds()
        result = action()
        steps.append((name, time.perf_counter() - began))
        print(f"{name:<10} {steps[-1][1]:6.1f} s  cpu {cpu_seconds() - cpu_began:6.1f} s  "
              f"peak {peak_mb():6.0f} MB  {result}")
        return result

    cpu_start = cpu_seconds()
    step("extract", lambda: _extract_all(conn, source, days))
    step("transform", lambda: transform_days(conn, days, mapping))
    step("plan", lambda: plan_days(conn, days, mapping))
    total, cpu_total, peak = sum(seconds for _, seconds in steps), cpu_seconds() - cpu_start, peak_mb()
    conn.execute("""INSERT OR REPLACE INTO opportunity_state (source_id, opportunity_id, event_code, sent_hash,
                        sent_fields, source_updated_at, status)
                    SELECT source_id, 'OPP-' || source_id, 12002, record_hash, full_fields, source_updated_at,
                           'in_sync' FROM sync_plan_payloads""")
    step("replan", lambda: plan_days(conn, days, mapping))
    print(f"extract + transform + plan: {total:.1f} s, cpu {cpu_total:.1f} s, peak {peak:.0f} MB "
          f"(bar: <= 8 s, <= 1024 MB) -> {'PASS' if total <= 8 and peak <= 1024 else 'FAIL'}; "
          f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows the wall time)")
    return total


def _extract_all(conn: duckdb.DuckDBPyConnection, source: Path, days: list[date]) -> dict[str, int]:
    loaded = extract_days(conn, source, days).values()
    return {kind: sum(counts[kind] for counts in loaded) for kind in ("applications", "events")}


if __name__ == "__main__":
    main()
