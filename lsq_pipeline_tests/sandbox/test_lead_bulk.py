"""Contract tests of Create Leads in Bulk and Create or Update Leads in Bulk (NOTES.md), over real HTTP."""

from __future__ import annotations

import pytest
import requests

from lsq_pipeline_tests.sandbox.conftest import (
    BULK_ADD,
    EXAMPLES_ACCOUNT,
    GUID,
    LEAD_BULK_CREATE,
    LEAD_BULK_CREATE_OR_UPDATE,
    Api,
    lead,
    loan_row,
)

JANE = "a368678f-1e81-4fb8-af0a-4b896f6330e1"
ASHA = "5b1f0c1e-0000-4000-8000-000000000794"
SEEDED_LEADS = 5


def leads(api: Api) -> dict[str, dict]:
    return {x["ProspectId"]: x["Fields"] for x in api.get("/sandbox/leads").json()["Leads"]}


# ----- Create Leads in Bulk -------------------------------------------------------------------


def test_create_fifty_leads_then_add_opportunities_on_them(api):
    batch = [lead(EmailAddress=f"new{i}@example.com", FirstName=f"New {i}") for i in range(50)]
    answer = api.post(LEAD_BULK_CREATE, batch)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["Response"]
    assert [r["RowNumber"] for r in rows] == list(range(1, 51)) and all(r["LeadCreated"] for r in rows)
    assert all(GUID.match(r["LeadId"]) for r in rows)
    stored = leads(api)
    assert len(stored) == SEEDED_LEADS + 50 and stored[rows[7]["LeadId"]]["FirstName"] == "New 7"
    # The lead is found afterwards by Bulk Add through its SearchBy field.
    added = api.post(BULK_ADD, [loan_row(email="NEW7@example.com")], params={"SearchBy": "EmailAddress"})
    assert added.json()["Response"][0]["OpportunityCreated"] is True


@pytest.mark.parametrize("path, limit", [(LEAD_BULK_CREATE, 50), (LEAD_BULK_CREATE_OR_UPDATE, 25)])
def test_over_the_limit_or_empty_is_refused_whole(api, path, limit):
    too_many = [lead(EmailAddress=f"n{i}@example.com") for i in range(limit + 1)]
    for body, message in ((too_many, f"up to {limit}"), ([], "at least one")):
        answer = api.post(path, body)
        assert answer.status_code == 500
        assert answer.json()["ExceptionType"] == "MXInvalidInputException" and message in answer.json()["ExceptionMessage"]
    assert len(leads(api)) == SEEDED_LEADS
    assert api.post(path, too_many[:limit]).status_code == 200


def test_a_lead_whose_unique_field_exists_is_not_created_again(api):
    answer = api.post(LEAD_BULK_CREATE, [
        lead(EmailAddress="JaneHewitt@example.com", FirstName="Jane again"),  # a seeded lead, other case
        lead(Phone="+91-2543456794"),                                          # a seeded lead's phone
        lead(EmailAddress="twin@example.com"),
        lead(EmailAddress="twin@example.com", Phone="+1-555-0100"),            # twin of row 3, same call
        lead(EmailAddress="other@example.com", Phone="+1-555-0101"),
    ])
    rows = answer.json()["Response"]
    assert [r["LeadCreated"] for r in rows] == [False, False, True, False, True]
    assert rows[0] == {"LeadId": JANE, "RowNumber": 1, "LeadCreated": False,
                       "ExceptionType": "MXDuplicateEntryException",
                       "ExceptionMessage": "A Lead with same Email already exists."}
    assert rows[1]["LeadId"] == ASHA and rows[3]["LeadId"] == rows[2]["LeadId"]
    stored = leads(api)
    assert len(stored) == SEEDED_LEADS + 2 and stored[JANE]["FirstName"] == "Jane"  # untouched


@pytest.mark.parametrize("pairs, exception_type", [
    ([{"Attribute": "FirstName", "Value": "No unique field"}], "MXInvalidInputException"),
    ([{"Attribute": "EmailAddress", "Value": ""}], "MXInvalidInputException"),
    ([{"Attribute": "EmailAddress", "Value": "x@example.com"}, {"Attribute": "Shoe", "Value": "42"}],
     "MXInvalidInputException"),
    ([{"Value": "x@example.com"}], "MXMandatoryAttributeMissingException"),
])
def test_a_bad_lead_fails_only_its_row(api, pairs, exception_type):
    answer = api.post(LEAD_BULK_CREATE, [pairs, lead(EmailAddress="fine@example.com")])
    assert answer.status_code == 200, answer.text
    bad, good = answer.json()["Response"]
    assert bad["LeadCreated"] is False and bad["ExceptionType"] == exception_type and "LeadId" not in bad
    assert good["LeadCreated"] is True
    assert len(leads(api)) == SEEDED_LEADS + 1


@pytest.mark.parametrize("body", [{"not": "an array"}, [{"Attribute": "EmailAddress"}], [[1, 2]]])
def test_wrong_shape_is_a_400(api, body):
    answer = api.post(LEAD_BULK_CREATE, body)
    assert answer.status_code == 400 and answer.json()["ExceptionType"] == "MXInvalidJsonException"


def test_a_lost_answer_is_harmless(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, lost_response_rate=1.0)
    api = Api(running.url)
    batch = [lead(EmailAddress=f"lost{i}@example.com") for i in range(3)]
    with pytest.raises(requests.ConnectionError):
        api.post(LEAD_BULK_CREATE, batch)
    api.session = requests.Session()
    assert len(leads(api)) == SEEDED_LEADS + 3  # the write landed
    with pytest.raises(requests.ConnectionError):
        api.post(LEAD_BULK_CREATE, batch)  # the blind re-send
    api.session = requests.Session()
    assert len(leads(api)) == SEEDED_LEADS + 3  # nothing doubled
    assert api.stats()["Calls"]["LeadBulkCreate"] == 2


# ----- Create or Update Leads in Bulk -----------------------------------------------------------


def test_create_or_update_matches_on_its_search_by_field(api):
    answer = api.post(LEAD_BULK_CREATE_OR_UPDATE, [
        lead(Phone="+91-2543456794", EmailAddress="asha@example.com", SearchBy="Phone"),  # Asha, by phone
        lead(EmailAddress="janehewitt@example.com", City="Pune"),                          # Jane, by email (default)
        lead(EmailAddress="brand.new@example.com", Phone="+1-555-0199"),                    # nobody: created
        lead(ProspectID=JANE, LastName="Hewitt", SearchBy="ProspectId"),                   # Jane, by id
    ])
    assert answer.status_code == 200, answer.text
    rows = answer.json()["Response"]
    assert [(r["LeadCreated"], r["LeadUpdated"]) for r in rows] == [
        (False, True), (False, True), (True, False), (False, True)]
    assert [rows[0]["LeadId"], rows[1]["LeadId"], rows[3]["LeadId"]] == [ASHA, JANE, JANE]
    stored = leads(api)
    assert stored[ASHA]["EmailAddress"] == "asha@example.com"
    assert stored[JANE]["City"] == "Pune" and stored[JANE]["LastName"] == "Hewitt"
    assert stored[rows[2]["LeadId"]]["Phone"] == "+1-555-0199"
    assert len(stored) == SEEDED_LEADS + 1


@pytest.mark.parametrize("search_by", [{}, {"SearchBy": ""}])
def test_default_match_is_email_then_phone(api, search_by):
    answer = api.post(LEAD_BULK_CREATE_OR_UPDATE, [
        lead(Phone="+91-2543456791", FirstName="Ravi K", **search_by),
        lead(EmailAddress="janehewitt@example.com", Phone="+91-2543456794", **search_by)])
    ravi, jane = answer.json()["Response"]
    assert ravi["LeadUpdated"] is True and ravi["LeadId"] == "5b1f0c1e-0000-4000-8000-000000000791"
    assert leads(api)["5b1f0c1e-0000-4000-8000-000000000791"]["FirstName"] == "Ravi K"
    # Matched on the email (Jane), whose lead cannot take Asha's phone.
    assert jane["LeadUpdated"] is False and jane["ExceptionType"] == "MXDuplicateEntryException"
    assert jane["LeadId"] == ASHA


@pytest.mark.parametrize("pairs, exception_type", [
    (lead(EmailAddress="george.costanza@example.com", Phone="+91-2543456794", SearchBy="Phone"),
     "MXDuplicateEntryException"),                                   # Asha's lead would take George's email
    (lead(EmailAddress="x@example.com", SearchBy="FirstName"), "MXInvalidInputException"),
    (lead(EmailAddress="x@example.com", SearchBy="Phone"), "MXInvalidInputException"),  # no phone sent
    (lead(ProspectID="00000000-0000-4000-8000-000000000000", SearchBy="ProspectId"), "MXRecordNotFoundException"),
])
def test_create_or_update_refuses_a_row_and_changes_nothing(api, pairs, exception_type):
    before = leads(api)
    (row,) = api.post(LEAD_BULK_CREATE_OR_UPDATE, [pairs]).json()["Response"]
    assert row["LeadCreated"] is False and row["LeadUpdated"] is False
    assert row["ExceptionType"] == exception_type
    assert leads(api) == before


def test_lead_bulk_calls_are_counted_under_their_route_names(api):
    api.post(LEAD_BULK_CREATE, [lead(EmailAddress="a@example.com")])
    api.post(LEAD_BULK_CREATE_OR_UPDATE, [lead(EmailAddress="a@example.com")])
    calls = api.stats()["Calls"]
    assert calls["LeadBulkCreate"] == 1 and calls["LeadBulkCreateOrUpdate"] == 1
