"""A bulk call takes a start from the bulk window and one from the general window, together, just
before it is sent: under a busy general window, bulk lead creates are never refused."""

from __future__ import annotations

import threading
import time

from lsq_pipeline.leadsquared.rate_limit import SlidingWindow
from lsq_pipeline_tests.leadsquared.conftest import inspect, loan, make_client, seed_leads


def test_wait_until_free_waits_for_the_window_without_taking_a_start() -> None:
    window = SlidingWindow(1, 0.5, safety_margin=False)
    assert window.acquire() < 0.05
    began = time.monotonic()
    window.wait_until_free()
    assert 0.4 < time.monotonic() - began < 0.8
    assert window.acquire() < 0.05  # the start was still free: waiting took none


def test_bulk_creates_under_a_busy_general_window_are_never_refused(start_sandbox) -> None:
    limits = dict(rate_limit_calls=10, rate_limit_seconds=1.0, bulk_rate_limit_calls=2, bulk_rate_limit_seconds=1.0)
    server = start_sandbox(**limits, latency_ms=50)
    with make_client(server.url, **limits, max_in_flight=8) as client:
        seed_leads(client)
        stop = threading.Event()

        def keep_the_general_window_busy() -> None:
            number = 0
            while not stop.is_set():
                client.add_opportunities("EmailAddress", [loan(f"BUSY-{number}")])
                number += 1

        busy = [threading.Thread(target=keep_the_general_window_busy) for _ in range(6)]
        for thread in busy:
            thread.start()
        try:
            outcomes = client.create_leads([{"EmailAddress": f"w{n}@example.com"} for n in range(400)])
        finally:
            stop.set()
            for thread in busy:
                thread.join()
        stats = inspect(server, "stats")
    assert [o.status for o in outcomes] == ["answered"] * 8
    assert stats["Calls"]["LeadBulkCreate"] == 8 and stats["Calls"]["BulkAdd"] > 20
    assert stats["Refused"]["bulk"]["window"] == 0 and stats["Refused"]["general"]["window"] == 0
