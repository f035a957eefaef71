"""End to end: sync N generated records against the sandbox (no rate limit, no latency), then
re-sync with no change, plainly and with a full reconcile.

Run: `.venv/bin/python benchmarks/end_to_end.py [--rows 100000] [--days 1] [--server process|thread]
[--warehouse duckdb|postgres|postgresql://user@host:port/db]`.

`--warehouse` (default `duckdb`: a new DuckDB file under the output folder): `postgres` starts a
PostgreSQL server of the script's own (lsq_pipeline_tests.postgres) with a new database, stopped
at the end; a `postgresql://` URL (no password) uses that database, in a new schema dropped at the end.

`--server process` (default) runs the sandbox as its own process (`python -m lsq_pipeline.sandbox`),
so the client and the server do not share one GIL; `--server thread` serves it from a thread of
this process (`run_sandbox`). The sync job runs in process (execute_in_process) on an ephemeral
instance with the client at `rate_limit_calls=0` and `--max-in-flight` calls in the air.

Prints, for the first sync: wall seconds, records/s, the push step's items/s, and the sandbox's
calls by endpoint; for each re-sync: write calls (must be 0) and read calls (at most
ceil(n / 2,000) on the full reconcile; a plain re-sync reads only what it touched: nothing).
Output goes to benchmarks/out/end_to_end/ (gitignored).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import requests

from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.orchestration.runs import QUIET_CONSOLE, run_config
from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, AccountSettings
from lsq_pipeline.warehouse.connection import is_postgres
from lsq_pipeline.demo.generate import generate

REPO = Path(__file__).resolve().parents[1]
START = date(2026, 11, 1)
WRITES = ("LeadBulkCreate", "BulkAdd", "BulkUpdate", "Capture", "BulkActivities")
READ = "GetOpportunitiesById"
HEADERS = {"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": SANDBOX_SECRET_KEY}


@contextlib.contextmanager
def sandbox(kind: str, log: Path, server_args: Sequence[str] = ("--rate-limit", "0")):
    """The sandbox's URL, served from a thread of this process or from its own process
    (`server_args`: its command-line options)."""
    if kind == "thread":
        with run_sandbox(rate_limit_calls=0) as running:
            yield running.url
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lsq_pipeline.sandbox", "--port", str(port), *server_args, "--quiet"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if requests.get(f"{url}/sandbox/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def warehouse_of(kind: str, out: Path) -> Iterator[tuple[str, str | None]]:
    """A new warehouse as (warehouse, warehouse_schema): a DuckDB file under `out`, a new database of a
    PostgreSQL server of our own (stopped on exit), or a new schema of the database at a URL (dropped on exit)."""
    if kind == "duckdb":
        yield str(out / "warehouse.duckdb"), None
        return
    if kind == "postgres":
        sys.path.insert(0, str(REPO))  # lsq_pipeline_tests is not installed: it is the repository's
        from lsq_pipeline_tests.postgres import start_server

        server = start_server()
        try:
            yield server.url(server.new_database("end_to_end")), None
        finally:
            server.stop()
        return
    schema = f"end_to_end_{uuid.uuid4().hex[:8]}"
    try:
        yield kind, schema
    finally:
        import psycopg2

        with psycopg2.connect(kind) as session, session.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def calls(url: str) -> dict[str, int]:
    return requests.get(f"{url}/sandbox/stats", headers=HEADERS, timeout=30).json()["Calls"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dirty-rate", type=float, default=0.0)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "end_to_end")
    parser.add_argument("--warehouse", default="duckdb",
                        help="duckdb (a new file, the default), postgres (a server of the script's own) or a "
                             "postgresql:// URL without password")
    args = parser.parse_args()
    if args.warehouse not in ("duckdb", "postgres") and not is_postgres(args.warehouse):
        parser.error("--warehouse: duckdb, postgres or a postgresql:// URL")

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    source = args.out / "source"
    started = time.perf_counter()
    counts = generate(source, rows=args.rows, days=args.days, seed=args.seed, start_day=START,
                      dirty_rate=args.dirty_rate)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"sandbox in a {args.server}; warehouse: {args.warehouse}")
    print(f"generated {counts['applications']:,} application rows ({counts['distinct_applications']:,} "
          f"applications) and {counts['events']:,} events over {args.days} day(s) in "
          f"{time.perf_counter() - started:.1f} s")
    last = START + timedelta(days=args.days - 1)
    tags = {"dagster/asset_partition_range_start": START.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}

    with warehouse_of(args.warehouse, args.out) as (warehouse, schema), \
            sandbox(args.server, args.out / "sandbox.log") as url:
        os.environ.update(LSQ_ACCESS_KEY=SANDBOX_ACCESS_KEY, LSQ_SECRET_KEY=SANDBOX_SECRET_KEY)  # the sandbox's keys
        settings = AccountSettings(
            api_host=url, access_key_env="LSQ_ACCESS_KEY", secret_key_env="LSQ_SECRET_KEY", first_day=START.isoformat(),
            source_dir=str(source), warehouse=warehouse, warehouse_schema=schema, mapping=str(REPO / "data" / "mapping.yaml"),
            rate_limit_calls=0, rate_limit_db="", max_in_flight=args.max_in_flight, max_reject_rate=1.0,
        )
        job = build_definitions(settings).resolve_job_def("sync_job")
        instance = dg.DagsterInstance.ephemeral()

        def run(label: str, full: bool = False) -> None:
            before = calls(url)
            began = time.perf_counter()
            result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config(settings, full) | QUIET_CONSOLE,
                                            raise_on_error=False)
            seconds = time.perf_counter() - began
            after = calls(url)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
            steps = {}
            push_items_per_s = None
            for event in result.get_step_success_events():
                steps[event.step_key] = event.event_specific_data.duration_ms / 1000
            for m in result.asset_materializations_for_node("push"):
                if "run_items_per_second" in m.metadata:  # leadsquared/opportunities (not activities)
                    push_items_per_s = m.metadata["run_items_per_second"].value
            states = {}
            for m in result.asset_materializations_for_node("opportunity_state"):
                states = m.metadata["table_total_states"].value
            records = sum(v for k, v in states.items() if k != "rejected")
            writes = sum(delta.get(w, 0) for w in WRITES)
            print(f"\n{label}: {'ok' if result.success else 'FAILED'} in {seconds:.1f} s "
                  f"(steps: {', '.join(f'{k} {v:.1f}s' for k, v in steps.items())})")
            print(f"  states: {states}")
            print(f"  write calls {writes} {({w: delta.get(w, 0) for w in WRITES})}, read calls {delta.get(READ, 0)} "
                  f"(ceil(n / 2,000) = {math.ceil(records / 2000)})")
            if label.startswith("first") and result.success:
                print(f"  {records / seconds:,.0f} records/s over the whole run; push step {push_items_per_s:,} items/s "
                      f"(creates, captures, updates and activities written per second)")

        run("first sync")
        run("re-sync, no change")
        run("re-sync, no change, full reconcile", full=True)


if __name__ == "__main__":
    main()
