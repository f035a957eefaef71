"""How fast the LeadSquared client updates opportunities against the sandbox; prints figures.

1. At the default limit (25 calls / 5 s) with 1 s latency per call: 3,000 updates, items/s as a
   share of the ceiling (25 items x 25 calls / 5 s = 125 items/s), and the 429s the server counted.
2. With no rate limit and no latency: the client's own overhead, in items/s.

The opportunities are created first straight through the sandbox's backend (not measured).
Run: `.venv/bin/python benchmarks/client_throughput.py [--items 3000] [--max-in-flight 8]`.
"""

from __future__ import annotations

import argparse
import math
import platform
import os
import time
from datetime import datetime, timezone

import requests

from lsq_pipeline.leadsquared import LeadSquaredClient, OpportunityUpdate, fields_from_dict
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.sandbox import run_sandbox

ACCESS_KEY, SECRET_KEY = "sandbox-access-key", "sandbox-secret-key"
EVENT_CODE = 12002
LEAD_EMAIL = "benchmark@example.com"


def seed_opportunities(backend, count: int) -> list[str]:
    """Create `count` opportunities of the demo type on one lead, through the backend (no HTTP)."""
    backend.capture(
        {
            "LeadDetails": [{"Attribute": "EmailAddress", "Value": LEAD_EMAIL}, {"Attribute": "SearchBy", "Value": "EmailAddress"}],
            "Opportunity": {"OpportunityEventCode": EVENT_CODE, "Fields": _fields("BENCH-SEED")},
        }
    )
    ids: list[str] = []
    for start in range(0, count, MAX_ITEMS_PER_WRITE):
        rows = [
            {"SearchByValue": LEAD_EMAIL, "OpportunityEventCode": EVENT_CODE, "Fields": _fields(f"BENCH-{n}")}
            for n in range(start, min(count, start + MAX_ITEMS_PER_WRITE))
        ]
        answer = backend.bulk_add("EmailAddress", rows)
        ids.extend(row["ProspectOpportunityId"] for row in answer["Response"])
    assert len(ids) == count
    return ids


def _fields(application_id: str) -> list[dict]:
    return [
        {"SchemaName": "mx_Custom_1", "Value": application_id},
        {"SchemaName": "mx_Custom_2", "Value": "Home Loan"},
        {"SchemaName": "mx_Custom_3", "Value": "100000"},
    ]


def updates(ids: list[str], stage: str) -> list[OpportunityUpdate]:
    return [
        OpportunityUpdate(opportunity_id=i, event_code=EVENT_CODE, fields=fields_from_dict({"mx_Custom_5": stage})) for i in ids
    ]


def server_stats(url: str) -> dict:
    headers = {"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY}
    return requests.get(f"{url}/sandbox/stats", headers=headers, timeout=10).json()


def at_the_limit(items: int, max_in_flight: int, calls: int = 25, seconds: float = 5.0, latency_ms: int = 1000) -> dict:
    with run_sandbox(access_key=ACCESS_KEY, secret_key=SECRET_KEY, rate_limit_calls=calls, rate_limit_seconds=seconds, latency_ms=latency_ms) as server:
        ids = seed_opportunities(server.backend, items)
        batch = updates(ids, "Under Review")
        with LeadSquaredClient(
            server.url, ACCESS_KEY, SECRET_KEY, rate_limit_calls=calls, rate_limit_seconds=seconds, max_in_flight=max_in_flight
        ) as client:
            started = time.perf_counter()
            results = client.update_opportunities(batch)
            elapsed = time.perf_counter() - started
            stats = client.stats()
        assert all(result.ok for result in results), "an update failed"
        server_side = server_stats(server.url)
    n_calls = math.ceil(items / MAX_ITEMS_PER_WRITE)
    ceiling = MAX_ITEMS_PER_WRITE * calls / seconds
    # The fastest schedule the server allows for this job: `calls` starts at once, the next
    # `calls` one window later, ..., and the last answer one latency after the last start.
    best_possible = (math.ceil(n_calls / calls) - 1) * seconds + latency_ms / 1000
    return {
        "items": items,
        "calls": stats.calls,
        "seconds": elapsed,
        "items_per_second": items / elapsed,
        "share_of_ceiling": items / elapsed / ceiling,
        "share_of_best_schedule": best_possible / elapsed,
        "server_429": server_side["RateLimited"],
        "client_rate_limited": stats.rate_limited,
        "window_wait_seconds": stats.window_wait_seconds,
    }


def no_limit(items: int, max_in_flight: int, rounds: int = 3) -> dict:
    with run_sandbox(access_key=ACCESS_KEY, secret_key=SECRET_KEY, rate_limit_calls=0) as server:
        ids = seed_opportunities(server.backend, items)
        with LeadSquaredClient(server.url, ACCESS_KEY, SECRET_KEY, rate_limit_calls=0, max_in_flight=max_in_flight) as client:
            rates = []
            for round_number in range(rounds):
                batch = updates(ids, ["New", "Approved", "Under Review"][round_number % 3])
                started = time.perf_counter()
                results = client.update_opportunities(batch)
                elapsed = time.perf_counter() - started
                assert all(result.ok for result in results), "an update failed"
                rates.append(items / elapsed)
    return {"items": items, "rounds": rounds, "items_per_second_best": max(rates), "items_per_second_median": sorted(rates)[len(rates) // 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--skip-limited", action="store_true", help="only the no-limit run")
    args = parser.parse_args()

    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cpu, {platform.machine()}, "
          f"Python {platform.python_version()}; max_in_flight={args.max_in_flight}")
    if not args.skip_limited:
        limited = at_the_limit(args.items, args.max_in_flight)
        print(
            f"25 calls / 5 s, 1,000 ms latency: {limited['items']} updates in {limited['calls']} calls, "
            f"{limited['seconds']:.1f} s = {limited['items_per_second']:.1f} items/s = "
            f"{limited['share_of_ceiling']:.3f} of the 125 items/s ceiling "
            f"({limited['share_of_best_schedule']:.3f} of the fastest schedule the server allows for this job); "
            f"429s at the server: {limited['server_429']}, seconds waiting for the window: {limited['window_wait_seconds']:.1f}"
        )
    free = no_limit(args.items, args.max_in_flight)
    print(
        f"no limit, no latency: {free['items']} updates x {free['rounds']} rounds: "
        f"best {free['items_per_second_best']:.0f} items/s, median {free['items_per_second_median']:.0f} items/s"
    )


if __name__ == "__main__":
    main()
