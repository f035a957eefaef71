"""Reads that lag writes: GetOpportunitiesById leaves out an opportunity created in the
last N seconds and shows an updated one as it was; writes and the duplicate rule see the truth."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from lsq_pipeline.sandbox import SandboxBackend, SandboxOptions, ensure_sandbox, load_account, stop_sandbox
from lsq_pipeline.sandbox.profiles import PROFILES
from lsq_pipeline_tests.sandbox.conftest import (
    BULK_ADD,
    EXAMPLES_ACCOUNT,
    GET_BY_IDS,
    Api,
    fields,
    loan_row,
)

LAG = 10.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lagging(clock) -> SandboxBackend:
    return SandboxBackend(load_account(EXAMPLES_ACCOUNT), clock=clock, read_lag_seconds=LAG)


def read(backend: SandboxBackend, opportunity_id: str) -> dict | None:
    (group,) = backend.get_opportunities_by_id({"SearchParameters": [{
        "EventCode": "12002", "ProspectActivityId": [opportunity_id],
        "Columns": {"Include_CSV": "mx_Custom_2,ModifiedOn"}}]})
    return group["Opportunities"][0] if group["Opportunities"] else None


def update(backend: SandboxBackend, opportunity_id: str, product: str) -> None:
    (row,) = backend.bulk_update([{"ProspectOpportunityId": opportunity_id, "OpportunityEventCode": 12002,
                                   "Fields": fields(mx_Custom_2=product)}])["Response"]
    assert row["OpportunityUpdated"] is True


def test_a_created_opportunity_is_left_out_of_reads_for_the_lag(lagging, clock):
    (row,) = lagging.bulk_add("EmailAddress", [loan_row()])["Response"]
    created = row["ProspectOpportunityId"]
    assert read(lagging, created) is None
    clock.advance(LAG - 0.5)
    assert read(lagging, created) is None
    clock.advance(0.5)
    assert read(lagging, created)["mx_Custom_2"] == "Home Loan"
    # The inspection listing is the account's truth, never lagged.
    assert created in {o["ProspectOpportunityId"] for o in lagging.list_opportunities()}


def test_an_updated_opportunity_reads_as_its_previous_version_for_the_lag(lagging, clock):
    created = lagging.bulk_add("EmailAddress", [loan_row()])["Response"][0]["ProspectOpportunityId"]
    clock.advance(LAG)
    before = read(lagging, created)
    clock.advance(2)
    update(lagging, created, "Gold Loan")
    clock.advance(3)
    update(lagging, created, "Car Loan")  # two updates inside the lag: the read shows the version before both
    assert read(lagging, created) == before
    clock.advance(LAG - 3)  # the first update is LAG old
    first = read(lagging, created)
    assert first["mx_Custom_2"] == "Gold Loan" and first["ModifiedOn"] != before["ModifiedOn"]
    clock.advance(3)
    assert read(lagging, created)["mx_Custom_2"] == "Car Loan"


def test_writes_and_the_duplicate_rule_see_what_reads_do_not_yet(lagging, clock):
    created = lagging.bulk_add("EmailAddress", [loan_row()])["Response"][0]["ProspectOpportunityId"]
    (again,) = lagging.bulk_add("EmailAddress", [loan_row()])["Response"]
    assert again["OpportunityCreated"] is False and again["ProspectOpportunityId"] == created
    update(lagging, created, "Gold Loan")  # Bulk Update finds an opportunity the read does not show yet
    assert read(lagging, created) is None
    clock.advance(LAG)
    assert read(lagging, created)["mx_Custom_2"] == "Gold Loan"


def test_an_edit_by_a_person_lags_like_any_write(lagging, clock):
    created = lagging.bulk_add("EmailAddress", [loan_row()])["Response"][0]["ProspectOpportunityId"]
    clock.advance(LAG)
    lagging.edit_opportunity(created, {"mx_Custom_2": "Gold Loan"})
    assert read(lagging, created)["mx_Custom_2"] == "Home Loan"
    clock.advance(LAG)
    assert read(lagging, created)["mx_Custom_2"] == "Gold Loan"


def test_without_a_lag_reads_see_every_write_at_once(clock):
    backend = SandboxBackend(load_account(EXAMPLES_ACCOUNT), clock=clock)
    created = backend.bulk_add("EmailAddress", [loan_row()])["Response"][0]["ProspectOpportunityId"]
    assert read(backend, created)["mx_Custom_2"] == "Home Loan"
    update(backend, created, "Gold Loan")
    assert read(backend, created)["mx_Custom_2"] == "Gold Loan"


def test_the_field_profile_lags_a_few_seconds_and_an_option_overrides_it(start_sandbox):
    assert PROFILES["field"].read_lag_seconds == 3.0
    assert PROFILES["documented"].read_lag_seconds == PROFILES["terse"].read_lag_seconds == 0.0
    assert SandboxOptions(profile="field").read_lag_seconds == 3.0
    assert SandboxOptions(profile="field", read_lag_seconds=0).read_lag_seconds == 0.0
    assert SandboxOptions(read_lag_seconds=120).read_lag_seconds == 120.0
    with pytest.raises(ValueError):
        SandboxOptions(read_lag_seconds=-1)
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile="field", read_lag_seconds=7)
    assert Api(running.url).get("/sandbox/profile").json()["Profile"]["read_lag_seconds"] == 7.0


def _read_over_http(api: Api, opportunity_id: str) -> int:
    body = {"SearchParameters": [{"EventCode": "12002", "ProspectActivityId": [opportunity_id],
                                  "Columns": {"Include_CSV": "mx_Custom_1"}}]}
    return api.post(GET_BY_IDS, body).json()[0]["RecordCount"]


def test_the_cli_takes_a_read_lag():
    command = [sys.executable, "-m", "lsq_pipeline.sandbox", "--port", "0", "--rate-limit", "0",
               "--read-lag-seconds", "1.5", "--account", str(EXAMPLES_ACCOUNT), "--quiet"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        api = Api(server.stdout.readline().split()[-1])
        created = api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"}).json()["Response"][0]
        assert _read_over_http(api, created["ProspectOpportunityId"]) == 0
        time.sleep(1.6)
        assert _read_over_http(api, created["ProspectOpportunityId"]) == 1
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_ensure_sandbox_takes_a_read_lag_and_a_change_replaces_the_server(tmp_path):
    state_dir = tmp_path / "sandbox"
    try:
        plain = ensure_sandbox(state_dir, access_key="k", secret_key="s", rate_limit_calls=0)
        lagging = ensure_sandbox(state_dir, access_key="k", secret_key="s", rate_limit_calls=0, read_lag_seconds=30)
        assert lagging != plain
        assert ensure_sandbox(state_dir, access_key="k", secret_key="s", rate_limit_calls=0,
                              read_lag_seconds=30) == lagging
        api = Api(lagging)
        api.session.headers.update({"x-LSQ-AccessKey": "k", "x-LSQ-SecretKey": "s"})
        assert api.session.get(lagging + "/sandbox/profile").json()["Profile"]["read_lag_seconds"] == 30.0
    finally:
        stop_sandbox(state_dir)
