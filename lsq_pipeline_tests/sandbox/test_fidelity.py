"""Contract tests of the fidelity fixes, over real HTTP on the documented profile."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from lsq_pipeline.sandbox import load_account
from lsq_pipeline.sandbox.payloads import MAX_BODY_BYTES, MAX_JSON_DEPTH, json_depth
from lsq_pipeline_tests.sandbox.conftest import (
    ACTIVITIES,
    BULK_ADD,
    BULK_UPDATE,
    CAPTURE,
    EXAMPLES_ACCOUNT,
    GET_BY_IDS,
    KEYS,
    Api,
    loan_capture,
    loan_fields,
    loan_row,
)

SEEDED_12003 = "4f530c63-4c93-4150-8b8e-83487befb3b2"
BY_EMAIL = {"SearchBy": "EmailAddress"}


def read_body(**parameter) -> dict:
    return {"SearchParameters": [{"EventCode": "12003", "ProspectActivityId": [SEEDED_12003],
                                  "Columns": {"Include_CSV": "Owner"}, **parameter}]}


def without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


# ----- mandatory attributes: 500 MXMandatoryAttributeMissingException -------------------------


@pytest.mark.parametrize("missing", ["SearchByValue", "OpportunityEventCode"])
def test_bulk_add_row_without_a_mandatory_attribute_fails_alone(api, missing):
    answer = api.post(BULK_ADD, [loan_row(app_id="A1"), without(loan_row(app_id="A2"), missing)], params=BY_EMAIL)
    assert answer.status_code == 200, answer.text
    good, bad = answer.json()["Response"]
    assert good["OpportunityCreated"] is True
    assert bad["OpportunityCreated"] is False and bad["RowNumber"] == 2
    assert bad["ExceptionType"] == "MXMandatoryAttributeMissingException"
    assert missing in bad["ExceptionMessage"]
    assert len(api.opportunities()) == 6


@pytest.mark.parametrize("missing", ["ProspectOpportunityId", "OpportunityEventCode"])
def test_bulk_update_row_without_a_mandatory_attribute_fails_alone(api, missing):
    row = {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003,
           "Fields": [{"SchemaName": "Status", "Value": "Won"}]}
    answer = api.post(BULK_UPDATE, [without(row, missing), row])
    assert answer.status_code == 200, answer.text
    bad, good = answer.json()["Response"]
    assert bad == {"RowNumber": 1, "OpportunityUpdated": False,
                   "ExceptionType": "MXMandatoryAttributeMissingException", "ExceptionMessage": bad["ExceptionMessage"]}
    assert missing in bad["ExceptionMessage"] and good["OpportunityUpdated"] is True


@pytest.mark.parametrize("missing", ["ActivityEvent", "ActivityOwnerEmail"])
def test_activity_row_without_a_mandatory_attribute_fails_alone(api, missing):
    row = {"ActivityEvent": 102, "ActivityOwnerEmail": "sri.sudhan@example.com"}
    answer = api.post(ACTIVITIES, [without(row, missing), row], params={"opportunityId": SEEDED_12003})
    assert answer.status_code == 200, answer.text
    bad, good = answer.json()["Response"]
    assert bad["ActivityCreated"] is False and bad["ExceptionType"] == "MXMandatoryAttributeMissingException"
    assert good["ActivityCreated"] is True


@pytest.mark.parametrize("missing", ["OpportunityEventCode", "Opportunity", "LeadDetails"])
def test_capture_without_a_mandatory_attribute_is_a_500(api, missing):
    body = loan_capture()
    body = without(body, missing) if missing != "OpportunityEventCode" else {
        **body, "Opportunity": without(body["Opportunity"], missing)}
    answer = api.post(CAPTURE, body)
    assert answer.status_code == 500
    assert answer.json()["ExceptionType"] == "MXMandatoryAttributeMissingException"
    assert missing in answer.json()["ExceptionMessage"]
    assert api.get("/sandbox/leads").json()["Count"] == 5


@pytest.mark.parametrize("parameter", [{"EventCode": None}, {"ProspectActivityId": None}, {"Columns": None},
                                       {"Columns": {}}, {"Columns": {"Include_CSV": " , "}}])
def test_get_by_ids_without_a_mandatory_parameter_is_a_500(api, parameter):
    body = read_body(**parameter)
    body["SearchParameters"][0] = {k: v for k, v in body["SearchParameters"][0].items() if v is not None}
    answer = api.post(GET_BY_IDS, body)
    assert answer.status_code == 500, answer.text
    assert answer.json()["ExceptionType"] == "MXMandatoryAttributeMissingException"


def test_get_by_ids_with_include_csv_answers(api):
    answer = api.post(GET_BY_IDS, read_body())
    assert answer.status_code == 200 and answer.json()[0]["RecordCount"] == 1


def test_a_wrong_type_is_still_a_400(api):
    answer = api.post(BULK_ADD, [{**loan_row(), "OpportunityEventCode": "twelve"}], params=BY_EMAIL)
    assert answer.status_code == 400 and answer.json()["ExceptionType"] == "MXInvalidJsonException"


# ----- URL parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("path, params, body, name", [
    (BULK_ADD, None, [loan_row()], "SearchBy"),
    (BULK_ADD, {"SearchBy": ""}, [loan_row()], "SearchBy"),
    (ACTIVITIES, None, [{"ActivityEvent": 102, "ActivityOwnerEmail": "sri.sudhan@example.com"}], "opportunityId"),
    (ACTIVITIES, {"opportunityId": ""}, [{"ActivityEvent": 102, "ActivityOwnerEmail": "sri.sudhan@example.com"}],
     "opportunityId"),
])
def test_missing_url_parameter_is_an_mx_error_without_python_none(api, path, params, body, name):
    answer = api.post(path, body, params=params)
    assert answer.status_code == 500
    error = answer.json()
    assert error["Status"] == "Error" and error["ExceptionType"] == "MXMandatoryAttributeMissingException"
    assert name in error["ExceptionMessage"] and "None" not in error["ExceptionMessage"]
    assert len(api.opportunities()) == 5 and api.get("/sandbox/activities").json()["Count"] == 0


# ----- body size and depth --------------------------------------------------------------------


def test_deeply_nested_body_is_a_400_not_a_crash(api):
    answer = api.post(BULK_ADD, b"[" * 100_000 + b"]" * 100_000, params=BY_EMAIL)
    assert answer.status_code == 400
    assert answer.json()["ExceptionType"] == "MXInvalidJsonException"
    assert str(MAX_JSON_DEPTH) in answer.json()["ExceptionMessage"]
    assert api.post(GET_BY_IDS, read_body()).status_code == 200  # still serving


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth(b'[{"a": "[[[[{{{{"}]') == 2
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * 40 + b"]" * 40) == 40


def raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    """Send bytes on a fresh socket and read until the server closes the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: sandbox", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in KEYS.items()), *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_declared_huge_length_is_refused_before_reading(sandbox):
    started = time.monotonic()
    answer = raw_request(sandbox.url, request_head(CAPTURE, "Content-Length: 1000000000000"), b"{")
    assert time.monotonic() - started < 2
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413") and b"Connection: close" in status
    assert b'"ExceptionType": "MXRequestTooLargeException"' in body and b"1000000000000" in body


def test_chunked_body_over_the_cap_is_refused(sandbox):
    chunk = b"x" * (1024 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY_BYTES // len(chunk) + 1))
    answer = raw_request(sandbox.url, request_head(CAPTURE, "Transfer-Encoding: chunked"), chunks + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")


def test_body_under_the_cap_is_read(api):
    padding = " " * (MAX_BODY_BYTES - 10_000)
    answer = api.post(CAPTURE, '{"LeadDetails": [], ' + padding + '"Opportunity": {"OpportunityEventCode": 12002}}')
    assert answer.status_code == 500 and answer.json()["ExceptionType"] != "MXRequestTooLargeException"


# ----- OpportunityNote ------------------------------------------------------------------------


def test_note_over_200_characters_is_refused(api):
    rows = [loan_row(app_id="N1", OpportunityNote="n" * 200), loan_row(app_id="N2", OpportunityNote="n" * 201)]
    fits, too_long = api.post(BULK_ADD, rows, params=BY_EMAIL).json()["Response"]
    assert fits["OpportunityCreated"] is True
    assert too_long["OpportunityCreated"] is False and too_long["ExceptionType"] == "MXInvalidFieldValueException"
    assert "OpportunityNote" in too_long["ExceptionMessage"]
    stored = {o["ProspectOpportunityId"]: o for o in api.opportunities()}
    assert stored[fits["ProspectOpportunityId"]]["OpportunityNote"] == "n" * 200
    answer = api.post(CAPTURE, loan_capture(app_id="N3", OpportunityNote="n" * 201))
    assert answer.status_code == 500 and answer.json()["ExceptionType"] == "MXInvalidFieldValueException"
    assert len(api.opportunities()) == 6


# ----- Capture with DoNotPostDuplicateActivity --------------------------------------------------


def test_capture_duplicate_without_duplicate_activity_never_says_created(api):
    first = api.post(CAPTURE, loan_capture()).json()
    again = api.post(CAPTURE, loan_capture(DoNotPostDuplicateActivity=True))
    assert again.status_code == 200
    body = again.json()
    assert body["IsUnique"] is False and body["CreatedOpportunityId"] is None
    assert body["ConflictedOpportunityId"] == first["CreatedOpportunityId"]
    assert body["PrimaryAction"] == 0
    (details,) = body["AdditionalDetails"]
    assert details["PostDeDupActionPerformed"] == 0  # neither "created" (1) nor "duplicate posted" (3)
    activities = {a["ProspectActivityId"]: a for a in api.get("/sandbox/activities").json()["Activities"]}
    assert activities[details["ActivityId"]]["Kind"] == "OpportunityCaptured"
    assert all(a["Kind"] != "DuplicateDetected" for a in activities.values())
    assert len(api.opportunities()) == 6


def test_capture_answers_created_only_with_an_id(api):
    for flags in ({}, {"DoNotPostDuplicateActivity": True}):
        for _ in range(2):
            body = api.post(CAPTURE, loan_capture(**flags)).json()
            created = [d for d in body["AdditionalDetails"] if d["PostDeDupActionPerformed"] == 1]
            assert not created or body["CreatedOpportunityId"]


# ----- drop-downs: accepted unless validation is on ---------------------------------------------


def test_dropdown_values_outside_the_options_are_accepted_by_default(api):
    row = {**loan_row(), "Fields": loan_fields(mx_Custom_2="Boat Loan", mx_Custom_5="under review")}
    (answer,) = api.post(BULK_ADD, [row], params=BY_EMAIL).json()["Response"]
    assert answer["OpportunityCreated"] is True
    stored = {o["ProspectOpportunityId"]: o for o in api.opportunities()}[answer["ProspectOpportunityId"]]
    assert stored["Fields"]["mx_Custom_2"] == "Boat Loan"          # kept as sent
    assert stored["Fields"]["mx_Custom_5"] == "Under Review"       # a known option takes its own spelling


@pytest.mark.parametrize("on_account, on_type, refused", [
    (True, None, True), (False, True, True), (True, False, False), (False, None, False)])
def test_dropdown_validation_is_an_account_setting(on_account, on_type, refused, start_sandbox):
    account = load_account(EXAMPLES_ACCOUNT)
    account.validate_dropdowns = on_account
    account.opportunity_type(12002).validate_dropdowns = on_type
    running = start_sandbox(account=account)
    row = {**loan_row(), "Fields": loan_fields(mx_Custom_2="Boat Loan")}
    (answer,) = Api(running.url).post(BULK_ADD, [row], params=BY_EMAIL).json()["Response"]
    assert answer["OpportunityCreated"] is (not refused)
    if refused:
        assert answer["ExceptionType"] == "MXInvalidFieldValueException" and "Home Loan" in answer["ExceptionMessage"]
