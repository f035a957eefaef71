"""The account's budget on the client: plan presets, classes, the limit learned from a 429, the
daily count (the client's own and the server's), shared through SQLite; against the sandbox over HTTP."""

from __future__ import annotations

import logging
import threading
import time
from datetime import date

import pytest
import requests

from lsq_pipeline.leadsquared import (
    PLANS,
    AccountBudget,
    AccountLimits,
    DailyBudgetExhausted,
    OpportunityUpdate,
    WindowLimit,
    account_limits,
    fields_from_dict,
)
from lsq_pipeline.leadsquared.budget import is_daily_refusal, limit_named_in
from lsq_pipeline.leadsquared.budget_store import SQLiteStore
from lsq_pipeline.sandbox import rate_limit as sandbox_limits
from lsq_pipeline.sandbox.exceptions import MXAPIRateLimitExceededException
from lsq_pipeline_tests.leadsquared.conftest import (
    ACCESS_KEY,
    EVENT_CODE,
    LEAD_EMAILS,
    SECRET_KEY,
    inspect,
    loan,
    make_client,
    seed_leads,
)

MISSING_ID = "00000000-0000-0000-0000-000000000000"


def _update(n: int) -> OpportunityUpdate:
    """An update of an opportunity that does not exist: one row refused, the call still spent."""
    return OpportunityUpdate(opportunity_id=MISSING_ID, event_code=EVENT_CODE, fields=fields_from_dict({"mx_Custom_5": str(n)}))


def _post_day(server) -> None:
    answer = requests.post(f"{server.url}/sandbox/day", headers={"x-LSQ-AccessKey": ACCESS_KEY, "x-LSQ-SecretKey": SECRET_KEY}, timeout=5)
    answer.raise_for_status()


# --- limits as configuration ------------------------------------------------------------------


def test_default_is_25_in_5_for_both_classes_and_no_daily_count() -> None:
    assert account_limits() == AccountLimits(WindowLimit(25, 5.0), WindowLimit(25, 5.0), 0, True)


def test_plan_presets_and_explicit_values_over_them() -> None:
    assert account_limits("lite") == AccountLimits(WindowLimit(2, 5.0), WindowLimit(1, 5.0), 34_560)
    assert account_limits("ENTERPRISE").general == WindowLimit(25, 5.0)
    custom = account_limits("pro", rate_limit_calls=8, bulk_rate_limit_seconds=10, daily_call_limit=500,
                            bulk_counts_against_general=False)
    assert custom == AccountLimits(WindowLimit(8, 5.0), WindowLimit(1, 10.0), 500, False)
    with pytest.raises(ValueError, match="unknown plan 'gold'"):
        account_limits("gold")


def test_the_client_and_the_sandbox_know_the_same_plans() -> None:
    assert set(PLANS) == set(sandbox_limits.PLANS)
    for name, limits in PLANS.items():
        general, bulk, daily = sandbox_limits.PLANS[name]
        assert (limits.general, limits.bulk, limits.daily_calls) == (
            WindowLimit(general, sandbox_limits.PLAN_SECONDS), WindowLimit(bulk, sandbox_limits.PLAN_SECONDS), daily
        )


def test_refusal_messages_name_the_window_or_the_day() -> None:
    window = MXAPIRateLimitExceededException(5, 5).message
    daily = MXAPIRateLimitExceededException.daily(1000).message
    assert limit_named_in(window) == WindowLimit(5, 5.0) and not is_daily_refusal(window)
    assert limit_named_in("API calls exceeded the limit of 10 in 0.5 second(s)") == WindowLimit(10, 0.5)
    assert limit_named_in(daily) is None and is_daily_refusal(daily)


# --- classes ------------------------------------------------------------------------------------


def test_bulk_calls_take_both_windows_and_the_classes_never_wait_on_each_other() -> None:
    budget = AccountBudget(AccountLimits(WindowLimit(2, 1.0), WindowLimit(1, 1.0)))
    assert [w.rate_class for w in budget.windows_of("bulk")] == ["bulk", "general"]
    assert [w.rate_class for w in budget.windows_of("general")] == ["general"]
    budget.acquire("bulk", "lead_bulk_create")  # spends the bulk window and one general start
    done: list[str] = []
    general = threading.Thread(target=lambda: (budget.acquire("general", "bulk_update"), done.append("general")))
    bulk = threading.Thread(target=lambda: (budget.acquire("bulk", "lead_bulk_create"), done.append("bulk")))
    began = time.monotonic()
    bulk.start()
    general.start()
    general.join()
    general_wait = time.monotonic() - began
    bulk.join()
    # The general call had a start left (2 in 1 s, less the pacing); it never queued behind the
    # bulk caller that waits a whole bulk window.
    assert done[0] == "general" and general_wait < 0.8
    separate = AccountBudget(AccountLimits(WindowLimit(1, 1.0), WindowLimit(1, 1.0), bulk_counts_against_general=False))
    assert [w.rate_class for w in separate.windows_of("bulk")] == ["bulk"]
    separate.acquire("general", "bulk_update")
    assert separate.acquire("bulk", "lead_bulk_create") < 0.1  # a full general window does not hold a bulk call


# --- learning the limit from the 429 ------------------------------------------------------------


def test_learns_the_limit_from_the_first_refusal(caplog, start_sandbox) -> None:
    """A sandbox at 5/5, a client that believes 25/5: at most 2 refused calls over 300 records."""
    caplog.set_level(logging.WARNING, logger="lsq_pipeline.leadsquared.budget")
    server = start_sandbox(rate_limit_calls=5, rate_limit_seconds=5)
    with make_client(server.url, rate_limit_calls=25, rate_limit_seconds=5) as client:
        seed_leads(client)
        results = client.add_opportunities("EmailAddress", [loan(f"L-{n}", LEAD_EMAILS[n % 3]) for n in range(300)])
        assert all(result.ok for result in results)
        assert (client.budget.windows["general"].calls, client.budget.windows["general"].seconds) == (5, 5.0)
    refused = inspect(server, "stats")["Refused"]
    assert refused["general"]["window"] <= 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "LSQ_RATE_LIMIT_CALLS=5" in warnings[0] and "LSQ_RATE_LIMIT_SECONDS=5" in warnings[0]


def test_a_learned_limit_reaches_every_process_sharing_the_store(tmp_path, start_sandbox) -> None:
    db = str(tmp_path / "budget.sqlite")
    server = start_sandbox(rate_limit_calls=3, rate_limit_seconds=1)
    with make_client(server.url, rate_limit_calls=25, rate_limit_seconds=1, rate_limit_db=db) as first:
        first.update_opportunities([_update(n) for n in range(25 * 5)])  # 5 calls: meets the 3/1 limit
        assert first.stats().rate_limited >= 1
    refused_before = inspect(server, "stats")["Refused"]["general"]["window"]
    with make_client(server.url, rate_limit_calls=25, rate_limit_seconds=1, rate_limit_db=db) as second:
        second.update_opportunities([_update(n) for n in range(25 * 6)])
        assert second.stats().rate_limited == 0
        assert second.budget.windows["general"].calls == 3
    assert inspect(server, "stats")["Refused"]["general"]["window"] == refused_before


def test_a_call_held_up_after_its_start_is_counted_from_its_send(monkeypatch, start_sandbox) -> None:
    """The first call stalls 0.3 s between its start and its send (store round trips, a busy
    CPU: more than the 50 ms margin); the second, sent at once, still arrives a window later."""
    server = start_sandbox(rate_limit_calls=1, rate_limit_seconds=1)
    with make_client(server.url, rate_limit_calls=1, rate_limit_seconds=1) as client:
        acquire, stalls = client.budget.acquire, iter([0.3])

        def acquire_then_stall(*args: str) -> float:
            waited = acquire(*args)
            time.sleep(next(stalls, 0))
            return waited

        monkeypatch.setattr(client.budget, "acquire", acquire_then_stall)
        client.update_opportunities([_update(n) for n in range(25 * 2)])
        assert client.stats().rate_limited == 0
    assert inspect(server, "stats")["Refused"]["general"]["window"] == 0


def test_a_limit_set_lower_on_purpose_is_kept() -> None:
    """An account split between machines: the client keeps 2/1 though the server names 10/1."""
    budget = AccountBudget(AccountLimits(WindowLimit(2, 1.0)))
    budget.refused("general", "bulk_update", MXAPIRateLimitExceededException(10, 1).message)
    assert budget.windows["general"].calls == 2


def test_a_refusal_at_the_believed_limit_teaches_nothing(tmp_path) -> None:
    """A 429 naming the limit the client already keeps (jitter on a loaded machine, another
    script of the account) pauses the window once and stores no learned limit."""
    budget = AccountBudget(AccountLimits(WindowLimit(25, 5.0)), store=SQLiteStore(str(tmp_path / "b.sqlite")))
    assert budget.refused("general", "bulk_update", MXAPIRateLimitExceededException(25, 5).message)
    window = budget.windows["general"]
    assert (window.calls, window.seconds) == (25, 5.0)
    assert budget.store.learned_limit("general") is None


# --- the daily count ----------------------------------------------------------------------------


def test_the_clients_daily_count_stops_before_the_call_and_restarts_the_next_utc_day(tmp_path, start_sandbox) -> None:
    day = [date(2026, 11, 24)]
    db = str(tmp_path / "budget.sqlite")
    server = start_sandbox()
    with make_client(server.url, daily_call_limit=3, rate_limit_db=db, today=lambda: day[0]) as client, \
            make_client(server.url, daily_call_limit=3, rate_limit_db=db, today=lambda: day[0]) as neighbour:
        client.update_opportunities([_update(n) for n in range(25 * 2)])
        neighbour.update_opportunities([_update(0)])  # the same machine's count: 3 of 3
        with pytest.raises(DailyBudgetExhausted) as caught:
            client.update_opportunities([_update(n) for n in range(25 * 2)])
        assert "LSQ_DAILY_CALL_LIMIT" in str(caught.value) and "2026-11-24" in str(caught.value)
        assert ACCESS_KEY not in repr(caught.value) and SECRET_KEY not in repr(caught.value)
        assert caught.value.results == [None] * 50  # nothing of it was sent
        assert inspect(server, "stats")["TotalCalls"] == 3
        day[0] = date(2026, 11, 25)
        assert all(not r.ok for r in client.update_opportunities([_update(0)]))  # sent: the row is refused
        assert inspect(server, "stats")["TotalCalls"] == 4
        assert client.budget.calls_today() == 1


def test_a_refusal_for_the_day_stops_the_rest_and_keeps_what_was_answered(start_sandbox) -> None:
    server = start_sandbox(daily_limit=4)
    with make_client(server.url, max_in_flight=1) as client:
        seed_leads(client)  # 3 calls of 4
        with pytest.raises(DailyBudgetExhausted) as caught:
            client.add_opportunities("EmailAddress", [loan(f"D-{n}", LEAD_EMAILS[0]) for n in range(75)])
        results = caught.value.results
        assert [r is not None and r.ok for r in results] == [True] * 25 + [False] * 50  # one call got through
        assert "daily limit of 4" in str(caught.value)
        stats = inspect(server, "stats")
        assert stats["Refused"]["general"] == {"window": 0, "daily": 1}  # the third batch was never sent
        assert stats["Opportunities"] == 3 + 25

        _post_day(server)  # a new day on the server
        rest = client.add_opportunities("EmailAddress", [loan(f"D-{n}", LEAD_EMAILS[0]) for n in range(25, 75)])
        assert all(r.ok and not r.already_existed for r in rest)
        assert inspect(server, "stats")["Opportunities"] == 3 + 75


def test_sqlite_daily_count_is_exact_across_threads(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "budget.sqlite")
    counted: list[bool] = []
    lock = threading.Lock()

    def spend() -> None:
        for _ in range(20):
            ok = store.count_call("2026-11-24", 50)
            with lock:
                counted.append(ok)

    threads = [threading.Thread(target=spend) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted.count(True) == 50 and store.calls_on("2026-11-24") == 50
    store.close()


def test_one_budget_file_keeps_each_leadsquared_account_apart(tmp_path) -> None:
    """The budget is LeadSquared's: clients of two accounts (other host or key) sharing one SQLite
    file count apart; two clients of one account count together."""
    db = str(tmp_path / "budget.sqlite")
    day = "2026-11-24"
    acme = make_client("http://127.0.0.1:9", access_key="acme", daily_call_limit=10, rate_limit_db=db)
    acme_again = make_client("http://127.0.0.1:9", access_key="acme", daily_call_limit=10, rate_limit_db=db)
    globex = make_client("http://127.0.0.1:9", access_key="globex", daily_call_limit=10, rate_limit_db=db)
    other_host = make_client("http://127.0.0.2:9", access_key="acme", daily_call_limit=10, rate_limit_db=db)
    try:
        for _ in range(3):
            assert acme.budget.store.count_call(day, 10)
        assert acme_again.budget.store.calls_on(day) == 3
        assert globex.budget.store.calls_on(day) == 0 and other_host.budget.store.calls_on(day) == 0
        globex.budget.store.learn_limit("general", 2, 5.0)
        assert globex.budget.store.learned_limit("general") == (2, 5.0)
        assert acme.budget.store.learned_limit("general") is None
    finally:
        for client in (acme, acme_again, globex, other_host):
            client.close()
