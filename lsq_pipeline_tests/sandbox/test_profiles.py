"""Each profile's switches over real HTTP: `documented` (today's choices), `terse`, `field`."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import FrozenInstanceError, asdict

import pytest

from lsq_pipeline.sandbox import SandboxOptions, load_account
from lsq_pipeline.sandbox.profiles import DOCUMENTED, PROFILES, get_profile
from lsq_pipeline_tests.sandbox.conftest import (
    BULK_ADD,
    BULK_UPDATE,
    CAPTURE,
    EXAMPLES_ACCOUNT,
    GET_BY_IDS,
    LEAD_BULK_CREATE,
    LEAD_BULK_CREATE_OR_UPDATE,
    Api,
    lead,
    loan_capture,
    loan_fields,
    loan_row,
)

BY_EMAIL = {"SearchBy": "EmailAddress"}
SEEDED_12003 = "4f530c63-4c93-4150-8b8e-83487befb3b2"


@pytest.fixture(params=list(PROFILES))
def profile(request) -> str:
    return request.param


def test_the_running_profile_is_readable(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    api = Api(running.url)
    assert api.stats()["Profile"] == profile
    assert api.get("/sandbox/profile").json() == {"Profile": asdict(PROFILES[profile])}


def test_unknown_profile_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="documented, terse, field"):
        get_profile("chatty")
    with pytest.raises(ValueError):
        SandboxOptions(profile="chatty")


def test_the_cli_takes_a_profile(tmp_path):
    command = [sys.executable, "-m", "lsq_pipeline.cli", "sandbox", "--port", "0", "--rate-limit", "0",
               "--profile", "terse"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = server.stdout.readline().split()[-1]
        assert Api(url).stats()["Profile"] == "terse"
    finally:
        server.terminate()
        server.wait(timeout=10)


# ----- Bulk Add: duplicates and failed rows ---------------------------------------------------


def test_duplicate_answer_carries_the_existing_id_or_not(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    api = Api(running.url)
    first = api.post(BULK_ADD, [loan_row()], params=BY_EMAIL).json()["Response"][0]
    (again,) = api.post(BULK_ADD, [loan_row()], params=BY_EMAIL).json()["Response"]
    assert again["OpportunityCreated"] is False and len(api.opportunities()) == 6
    assert again["ExceptionType"] == "MXDuplicateEntryException" and again["ExceptionMessage"]
    if PROFILES[profile].duplicate_answer_has_id:
        assert again["ProspectOpportunityId"] == first["ProspectOpportunityId"]
    else:
        assert "ProspectOpportunityId" not in again


def test_failed_rows_carry_exception_fields_or_only_the_flag(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    api = Api(running.url)
    mandatory = {**loan_row(), "Fields": loan_fields()[:1]}
    (row,) = api.post(BULK_ADD, [mandatory], params=BY_EMAIL).json()["Response"]
    update = api.post(BULK_UPDATE, [{"ProspectOpportunityId": "nope", "OpportunityEventCode": 12003}]).json()
    if profile == "terse":
        assert row == {"RowNumber": 1, "OpportunityCreated": False}
        assert update == {"Response": [{"RowNumber": 1, "OpportunityUpdated": False}]}
    else:
        assert row["ExceptionType"] == "MXMandatoryAttributeMissingException"
        assert update["Response"][0]["ExceptionType"] == "MXRecordNotFoundException"


def test_missing_lead_says_so_worded_per_profile(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    (row,) = Api(running.url).post(BULK_ADD, [loan_row(email="nobody@example.com")],
                                   params=BY_EMAIL).json()["Response"]
    assert row["OpportunityCreated"] is False and row["ExceptionType"] == "MXRecordNotFoundException"
    message = row["ExceptionMessage"]
    if profile == "terse":
        assert "nobody@example.com" in message and "does not exist" not in message and "not found" not in message
    else:
        assert message == "Lead with EmailAddress 'nobody@example.com' does not exist."


def test_one_bad_value_fails_the_whole_call_only_under_terse(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    api = Api(running.url)
    good = loan_row(app_id="G1")
    bad = loan_row(app_id="B1", OpportunityNote="n" * 201)
    answer = api.post(BULK_ADD, [good, bad], params=BY_EMAIL)
    updates = api.post(BULK_UPDATE, [
        {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003,
         "Fields": [{"SchemaName": "mx_Custom_1", "Value": "x" * 201}]},
        {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003,
         "Fields": [{"SchemaName": "Status", "Value": "Won"}]}])
    stored = {o["ProspectOpportunityId"]: o for o in api.opportunities()}
    if profile == "terse":
        for call in (answer, updates):
            assert call.status_code == 500
            assert call.json()["ExceptionType"] == "MXInvalidFieldValueException"
            assert call.json()["ExceptionMessage"].startswith("Row ")
        assert len(stored) == 5 and stored[SEEDED_12003]["Fields"]["Status"] == "Open"  # nothing written
    else:
        assert answer.status_code == updates.status_code == 200
        assert [r["OpportunityCreated"] for r in answer.json()["Response"]] == [True, False]
        assert [r["OpportunityUpdated"] for r in updates.json()["Response"]] == [False, True]
        assert len(stored) == 6 and stored[SEEDED_12003]["Fields"]["Status"] == "Won"


def test_rows_that_are_not_bad_values_still_fail_alone_under_terse(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile="terse")
    answer = Api(running.url).post(BULK_ADD, [loan_row(), loan_row(email="nobody@example.com", app_id="A2")],
                                   params=BY_EMAIL)
    assert answer.status_code == 200
    assert [r["OpportunityCreated"] for r in answer.json()["Response"]] == [True, False]


# ----- Capture ------------------------------------------------------------------------------


def test_capture_doubles_only_under_field(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    api = Api(running.url)
    first = api.post(CAPTURE, loan_capture()).json()
    again = api.post(CAPTURE, loan_capture()).json()
    count = len(api.opportunities())
    assert first["IsUnique"] is True and first["CreatedOpportunityId"]
    if profile == "field":
        assert again["IsUnique"] is True and again["CreatedOpportunityId"] not in (None, first["CreatedOpportunityId"])
        assert again["ConflictedOpportunityId"] is None and count == 7
    else:
        assert again["IsUnique"] is False and again["ConflictedOpportunityId"] == first["CreatedOpportunityId"]
        assert again["CreatedOpportunityId"] is None and count == 6


def test_bulk_add_still_finds_duplicates_under_field(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile="field")
    api = Api(running.url)
    created = api.post(CAPTURE, loan_capture(email="janehewitt@example.com")).json()["CreatedOpportunityId"]
    (row,) = api.post(BULK_ADD, [loan_row()], params=BY_EMAIL).json()["Response"]
    assert row["OpportunityCreated"] is False and row["ProspectOpportunityId"] == created


# ----- drop-downs -----------------------------------------------------------------------------


@pytest.mark.parametrize("account_validates", [False, True])
def test_dropdowns_follow_the_account_under_documented_always_under_terse_never_under_field(
        profile, account_validates, start_sandbox):
    account = load_account(EXAMPLES_ACCOUNT)
    account.validate_dropdowns = account_validates
    running = start_sandbox(profile=profile, account=account)
    row = {**loan_row(), "Fields": loan_fields(mx_Custom_2="Boat Loan")}
    answer = Api(running.url).post(BULK_ADD, [row, loan_row(app_id="A2")], params=BY_EMAIL)
    refused = {"documented": account_validates, "terse": True, "field": False}[profile]
    if not refused:
        assert [r["OpportunityCreated"] for r in answer.json()["Response"]] == [True, True]
    elif profile == "terse":
        assert answer.status_code == 500 and answer.json()["ExceptionType"] == "MXInvalidFieldValueException"
    else:
        assert [r["OpportunityCreated"] for r in answer.json()["Response"]] == [False, True]


# ----- rate limit ---------------------------------------------------------------------------


def test_rate_limit_answer_status(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile, rate_limit_calls=1, rate_limit_seconds=5)
    api = Api(running.url)
    api.post(GET_BY_IDS, {"SearchParameters": [{"EventCode": 12003, "ProspectActivityId": [SEEDED_12003],
                                                "Columns": {"Include_CSV": "Owner"}}]})
    refused = api.post(CAPTURE, loan_capture())
    assert refused.status_code == (200 if profile == "field" else 429)
    assert refused.json()["ExceptionType"] == "MXAPIRateLimitExceededException"
    assert SandboxOptions(profile=profile, rate_limit_status=429).rate_limit_status == 429  # an explicit choice wins


def test_refused_calls_take_a_place_in_the_window_only_under_terse(profile, start_sandbox):
    """One call per 0.5 s, asked every 0.1 s for 1.3 s: refusals that count keep the window full."""
    admitted = 0
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile, rate_limit_calls=1, rate_limit_seconds=0.5,
                            rate_limit_status=429)
    api = Api(running.url)
    deadline = time.monotonic() + 1.3
    while time.monotonic() < deadline:
        admitted += api.post(LEAD_BULK_CREATE, [lead(EmailAddress="a@example.com")]).status_code == 200
        time.sleep(0.1)
    assert admitted == 1 if profile == "terse" else admitted >= 2


# ----- lead bulk answers ----------------------------------------------------------------------


def test_lead_bulk_answer_rows_or_count(profile, start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, profile=profile)
    api = Api(running.url)
    created = api.post(LEAD_BULK_CREATE, [lead(EmailAddress="a@example.com"),
                                          lead(EmailAddress="janehewitt@example.com")]).json()
    upserted = api.post(LEAD_BULK_CREATE_OR_UPDATE, [lead(EmailAddress="a@example.com", City="Pune")]).json()
    if PROFILES[profile].lead_bulk_answer == "count":
        assert created == {"Status": "Success", "Message": {"AffectedRows": 1}}
        assert upserted == {"Status": "Success", "Message": {"AffectedRows": 1}}
    else:
        assert [r["LeadCreated"] for r in created["Response"]] == [True, False]
        assert upserted["Response"][0]["LeadUpdated"] is True


def test_profiles_are_frozen_tables():
    with pytest.raises(FrozenInstanceError):
        DOCUMENTED.bad_value_fails_batch = True  # type: ignore[misc]


def test_fault_endpoints_name_known_endpoints_only() -> None:
    assert SandboxOptions(fault_endpoints=["Capture", "BulkAdd"]).fault_endpoints == ["Capture", "BulkAdd"]
    with pytest.raises(ValueError, match="unknown endpoints in fault_endpoints: Captur"):
        SandboxOptions(fault_endpoints=["Captur"])
