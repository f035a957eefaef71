"""A company's first sync: every lead new, against a sandbox at an account's two rate windows.

Run: `.venv/bin/python benchmarks/first_sync.py [--rows 5000] [--bulk 1/5 5/5] [--latency-ms 1000]`.

For each bulk window given, a fresh sandbox (its own process) with the general window
(`--general`, default 25/5), that bulk window and the latency; then the sync job in process
(ephemeral instance) with the client set to the same windows. Prints the whole run's and the
push step's records/s, as a share of the physical limit of those windows, the refused calls
(429s) and the checks of the bar: no lead or opportunity doubled, every record `in_sync`.

Physical limit (records/s), leads new: the bulk window creates 50 leads a call; their records
take one Bulk Add call per 25; what is left of the general window (less one start per bulk call
when bulk calls also count against it, the default) captures one record a call.
Output goes to benchmarks/out/first_sync/ (gitignored).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import dagster as dg
import requests

from end_to_end import HEADERS, calls, sandbox
from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.orchestration.runs import QUIET_CONSOLE
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE, MAX_LEADS_PER_BULK_CREATE
from lsq_pipeline.sandbox.__main__ import parse_rate_limit
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, AccountSettings
from lsq_pipeline.demo.generate import generate

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 1)


def physical_limit(general: tuple[int, float], bulk: tuple[int, float], bulk_counts_against_general: bool = True) -> float:
    """Records/s when the bulk window creates leads flat out and the general window does the rest."""
    general_calls = general[0] / general[1]
    general_per_lead = 1 / MAX_ITEMS_PER_WRITE + (1 / MAX_LEADS_PER_BULK_CREATE if bulk_counts_against_general else 0)
    leads = min(bulk[0] / bulk[1] * MAX_LEADS_PER_BULK_CREATE, general_calls / general_per_lead)
    captures = general_calls - leads * general_per_lead
    return leads + captures


def label(window: tuple[int, float]) -> str:
    return f"{window[0]}/{window[1]:g}"


def run_case(args: argparse.Namespace, source: Path, bulk: tuple[int, float], out: Path) -> None:
    out.mkdir(parents=True)
    server_args = ["--rate-limit", label(args.general), "--bulk-rate-limit", label(bulk), "--latency-ms", str(args.latency_ms)]
    with sandbox("process", out / "sandbox.log", server_args) as url:
        os.environ.update(LSQ_ACCESS_KEY=SANDBOX_ACCESS_KEY, LSQ_SECRET_KEY=SANDBOX_SECRET_KEY)  # the sandbox's keys
        settings = AccountSettings(
            api_host=url, access_key_env="LSQ_ACCESS_KEY", secret_key_env="LSQ_SECRET_KEY", first_day=DAY.isoformat(),
            source_dir=str(source), warehouse=str(out / "warehouse.duckdb"), mapping=str(REPO / "data" / "mapping.yaml"),
            rate_limit_calls=args.general[0], rate_limit_seconds=args.general[1],
            bulk_rate_limit_calls=bulk[0], bulk_rate_limit_seconds=bulk[1],
            rate_limit_db="", max_in_flight=args.max_in_flight, max_reject_rate=1.0,
        )
        job = build_definitions(settings).resolve_job_def("sync_job")
        began = time.perf_counter()
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=DAY.isoformat(),
                                        run_config=QUIET_CONSOLE, raise_on_error=False)
        seconds = time.perf_counter() - began
        stats = requests.get(f"{url}/sandbox/stats", headers=HEADERS, timeout=30).json()
        leads = requests.get(f"{url}/sandbox/leads", headers=HEADERS, timeout=60).json()
        opportunities = requests.get(f"{url}/sandbox/opportunities", headers=HEADERS, timeout=60).json()
        by_call = calls(url)
    push_seconds = next(e.event_specific_data.duration_ms / 1000 for e in result.get_step_success_events()
                        if e.step_key == "push") if result.success else float("nan")
    states = next(m.metadata["table_total_states"].value for m in result.asset_materializations_for_node("opportunity_state")) \
        if result.success else {}
    records = sum(states.values())
    limit = physical_limit(args.general, bulk)
    emails = [lead["Fields"].get("EmailAddress", "").lower() for lead in leads["Leads"]]
    source_ids = [opportunity["Fields"].get("mx_Custom_1") for opportunity in opportunities["Opportunities"]]
    print(f"\ngeneral {label(args.general)}, bulk {label(bulk)}, latency {args.latency_ms:g} ms: "
          f"{'ok' if result.success else 'FAILED'}")
    print(f"  whole run {seconds:.1f} s: {records / seconds:.1f} records/s = {records / seconds / limit:.0%} "
          f"of the physical limit {limit:.1f} records/s")
    print(f"  push step {push_seconds:.1f} s: {records / push_seconds:.1f} records/s = "
          f"{records / push_seconds / limit:.0%} of the limit")
    print(f"  calls: {dict(sorted(by_call.items()))}; refused (429): {stats['RateLimited']} {stats.get('Refused', '')}")
    print(f"  states: {states}; leads {len(emails):,} ({len(emails) - len(set(emails))} doubled); "
          f"opportunities {len(source_ids):,} ({len(source_ids) - len(set(source_ids))} doubled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--general", type=parse_rate_limit, default=(25, 5.0), metavar="CALLS/SECONDS")
    parser.add_argument("--bulk", type=parse_rate_limit, nargs="+", default=[(1, 5.0), (5, 5.0)], metavar="CALLS/SECONDS")
    parser.add_argument("--latency-ms", type=float, default=1000)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "first_sync")
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    source = args.out / "source"
    counts = generate(source, rows=args.rows, days=1, seed=args.seed, start_day=DAY, dirty_rate=0.0, events=0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{counts['distinct_applications']:,} applications, every lead new, no events, client max_in_flight "
          f"{args.max_in_flight}")
    for bulk in args.bulk:
        run_case(args, source, bulk, args.out / f"bulk_{bulk[0]}_{bulk[1]:g}")


if __name__ == "__main__":
    main()
