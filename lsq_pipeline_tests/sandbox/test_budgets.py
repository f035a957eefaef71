"""The sandbox's budgets: plans, the bulk class, the daily limit, `POST /sandbox/day`, refusals
counted per class and reason; options the same in `run_sandbox`, the command line and `ensure_sandbox`."""

from __future__ import annotations

import argparse

import pytest
import requests

from lsq_pipeline.sandbox import SandboxOptions, ensure_sandbox, stop_sandbox
from lsq_pipeline.sandbox.__main__ import add_server_arguments
from lsq_pipeline.sandbox.rate_limit import AccountLimiter

KEYS = {"x-LSQ-AccessKey": "sandbox-access-key", "x-LSQ-SecretKey": "sandbox-secret-key"}
READ = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
READ_BODY = {"SearchParameters": [{"EventCode": "12002", "ProspectActivityId": ["x"], "Columns": {"Include_CSV": "Owner"}}]}


def _read(url: str) -> requests.Response:
    return requests.post(url + READ, json=READ_BODY, headers=KEYS, timeout=5)


def _stats(url: str) -> dict:
    return requests.get(url + "/sandbox/stats", headers=KEYS, timeout=5).json()


def test_a_plan_sets_both_windows_and_the_day_and_explicit_values_win() -> None:
    pro = SandboxOptions(plan="pro")
    assert (pro.rate_limit_calls, pro.rate_limit_seconds, pro.bulk_rate_limit_calls, pro.daily_limit) == (5, 5.0, 1, 86_400)
    custom = SandboxOptions(plan="lite", rate_limit_calls=3, daily_limit=10)
    assert (custom.rate_limit_calls, custom.bulk_rate_limit_calls, custom.daily_limit) == (3, 1, 10)
    default = SandboxOptions()
    assert (default.rate_limit_calls, default.bulk_rate_limit_calls, default.bulk_rate_limit_seconds, default.daily_limit) == (25, 25, 5.0, 0)
    assert SandboxOptions(rate_limit_calls=0).bulk_rate_limit_calls == 0  # off means off for both


def test_command_line_options() -> None:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    args = parser.parse_args(["--plan", "standard", "--bulk-rate-limit", "2/5", "--daily-limit", "100"])
    assert (args.plan, args.rate_limit, args.bulk_rate_limit, args.daily_limit) == ("standard", None, (2, 5.0), 100)
    with pytest.raises(SystemExit):
        parser.parse_args(["--plan", "gold"])


def test_daily_limit_refuses_with_the_rate_limit_exception_until_a_new_day(start_sandbox) -> None:
    sandbox = start_sandbox(daily_limit=3)
    assert [_read(sandbox.url).status_code for _ in range(3)] == [200, 200, 200]
    refused = _read(sandbox.url)
    body = refused.json()
    assert refused.status_code == 429
    assert body["ExceptionType"] == "MXAPIRateLimitExceededException"
    assert "daily limit of 3" in body["ExceptionMessage"]
    stats = _stats(sandbox.url)
    assert stats["Refused"] == {"general": {"window": 0, "daily": 1}, "bulk": {"window": 0, "daily": 0}}
    assert (stats["CallsToday"], stats["DailyLimit"]) == (3, 3)

    assert requests.post(sandbox.url + "/sandbox/day", headers=KEYS, timeout=5).json() == {"Status": "ok"}
    after = _stats(sandbox.url)
    assert after["CallsToday"] == 0 and after["Refused"]["general"]["daily"] == 1  # nothing else reset
    assert _read(sandbox.url).status_code == 200


def test_window_refusals_are_counted_per_class_and_reason(start_sandbox) -> None:
    sandbox = start_sandbox(rate_limit_calls=2, rate_limit_seconds=30)
    statuses = [_read(sandbox.url).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert "limit of 2 in 30 second(s)" in _read(sandbox.url).json()["ExceptionMessage"]
    assert _stats(sandbox.url)["Refused"]["general"] == {"window": 3, "daily": 0}
    assert requests.post(sandbox.url + "/sandbox/day", headers=KEYS, timeout=5).ok
    assert _read(sandbox.url).status_code == 429  # a new day leaves the window alone


def test_bulk_routes_have_their_own_window_and_also_count_against_general() -> None:
    now = [0.0]
    limiter = AccountLimiter((3, 5.0), (1, 5.0), clock=lambda: now[0])
    assert limiter.admit("LeadBulkCreate") is None
    refusal = limiter.admit("LeadBulkCreateOrUpdate")
    assert (refusal.rate_class, refusal.reason) == ("bulk", "window")
    assert "limit of 1 in 5 second(s)" in refusal.error.message
    assert limiter.admit("BulkUpdate") is None and limiter.admit("BulkUpdate") is None
    assert limiter.admit("BulkUpdate").reason == "window"  # the bulk call took one of the 3 general starts
    now[0] = 5.0
    assert limiter.admit("LeadBulkCreate") is None
    assert limiter.as_dict()["Refused"] == {"general": {"window": 1, "daily": 0}, "bulk": {"window": 1, "daily": 0}}

    apart = AccountLimiter((1, 5.0), (1, 5.0), bulk_counts_against_general=False, clock=lambda: now[0])
    assert apart.admit("BulkUpdate") is None and apart.admit("LeadBulkCreate") is None


def test_refused_calls_count_against_the_window_when_asked() -> None:
    now = [0.0]
    counting = AccountLimiter((2, 5.0), (2, 5.0), counts_refused=True, clock=lambda: now[0])
    forgiving = AccountLimiter((2, 5.0), (2, 5.0), clock=lambda: now[0])
    for limiter in (counting, forgiving):
        limiter.admit("BulkUpdate")
        now[0] = 3.0
        limiter.admit("BulkUpdate")
        assert limiter.admit("BulkUpdate") is not None  # at t=3 s: full
        now[0] = 5.5  # the first start has left the window; the refused one (t=3 s) has not
        admitted = limiter.admit("BulkUpdate") is None
        assert admitted is (limiter is forgiving)
        now[0] = 0.0


def test_ensure_sandbox_starts_the_server_with_the_budget(tmp_path) -> None:
    state = tmp_path / "sandbox"
    url = ensure_sandbox(state, access_key="sandbox-access-key", secret_key="sandbox-secret-key",
                         rate_limit_calls=0, bulk_rate_limit_calls=1, bulk_rate_limit_seconds=5, daily_limit=2,
                         idle_timeout=60)
    try:
        assert [_read(url).status_code for _ in range(3)] == [200, 200, 429]
        assert _stats(url)["DailyLimit"] == 2
        same = ensure_sandbox(state, access_key="sandbox-access-key", secret_key="sandbox-secret-key",
                              rate_limit_calls=0, bulk_rate_limit_calls=1, bulk_rate_limit_seconds=5, daily_limit=2,
                              idle_timeout=60)
        assert same == url
        planned = ensure_sandbox(state, access_key="sandbox-access-key", secret_key="sandbox-secret-key",
                                 plan="lite", rate_limit_calls=None, rate_limit_seconds=None, idle_timeout=60)
        assert _stats(planned)["DailyLimit"] == 34_560  # other options: a new server
    finally:
        stop_sandbox(state)


def test_lead_bulk_routes_are_in_the_bulk_class_over_http(start_sandbox) -> None:
    from lsq_pipeline_tests.sandbox.conftest import LEAD_BULK_CREATE, lead

    sandbox = start_sandbox(plan="pro", rate_limit_calls=None)  # the plan's windows: general 5 / 5 s, bulk 1 / 5 s

    def create(n: int) -> requests.Response:
        return requests.post(sandbox.url + LEAD_BULK_CREATE, json=[lead(EmailAddress=f"bulk{n}@example.com")],
                             headers=KEYS, timeout=5)

    assert create(1).status_code == 200
    refused = create(2)
    assert refused.status_code == 429 and "limit of 1 in 5 second(s)" in refused.json()["ExceptionMessage"]
    # The bulk call took one general start: 4 of the 5 are left for the other endpoints.
    assert [_read(sandbox.url).status_code for _ in range(5)] == [200] * 4 + [429]
    assert _stats(sandbox.url)["Refused"] == {"general": {"window": 1, "daily": 0}, "bulk": {"window": 1, "daily": 0}}
