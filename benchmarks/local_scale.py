"""Local cost at scale: generate 1,000,000 application rows, then time extract, transform and plan.

Run: `.venv/bin/python benchmarks/local_scale.py [--rows N] [--days D] [--memory-limit 768MB] [--repeat R]`.
Prints seconds and the process's peak resident memory (ru_maxrss) after each step. The plan
runs twice: with an empty state (all creates) and after marking every record synced (the
compare path: all unchanged). `--repeat` runs it all R times, each in a new process on a new
warehouse (a shared machine varies by half a second from run to run), and ends with the median.
Output goes to benchmarks/out/ (gitignored).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import duckdb

from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.sync.extract import extract_days
from lsq_pipeline.sync.generate import generate
from lsq_pipeline.sync.mapping import Mapping, load_mapping
from lsq_pipeline.sync.plan import plan_days
from lsq_pipeline.sync.validate import transform_days
from lsq_pipeline.sync.warehouse import ensure_schema

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
    args = parser.parse_args()

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

    run = (args.out / "warehouse.duckdb", args.memory_limit, source, days, mapping)
    if args.repeat == 1:
        _run(*run)
        return
    # Each run in a process of its own: its peak memory is its own (ru_maxrss never goes down).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        totals = [pool.submit(_run, *run).result() for _ in range(args.repeat)]
    print(f"{len(totals)} runs: {', '.join(f'{total:.1f}' for total in totals)} s; "
          f"median {statistics.median(totals):.1f} s, best {min(totals):.1f} s")


def _run(warehouse: Path, memory_limit: str, source: Path, days: list[date], mapping: Mapping) -> float:
    """Extract, transform and plan on a new warehouse, then the re-plan; prints each step, returns the total."""
    for leftover in (warehouse, warehouse.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    conn = duckdb.connect(str(warehouse), config={"memory_limit": memory_limit})
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
    conn.close()
    return total


def _extract_all(conn: duckdb.DuckDBPyConnection, source: Path, days: list[date]) -> dict[str, int]:
    loaded = extract_days(conn, source, days).values()
    return {kind: sum(counts[kind] for counts in loaded) for kind in ("applications", "events")}


if __name__ == "__main__":
    main()
