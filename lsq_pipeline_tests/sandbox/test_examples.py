"""Every example request of the five reference pages, sent verbatim over HTTP, answered in the documented shape.

The pages show only successes, which every profile answers alike: the examples run under each.
"""

from __future__ import annotations

import json

import pytest

from lsq_pipeline.sandbox import PROFILES
from lsq_pipeline_tests.sandbox import examples
from lsq_pipeline_tests.sandbox.conftest import (
    ACTIVITIES,
    BULK_ADD,
    BULK_UPDATE,
    CAPTURE,
    EXAMPLES_ACCOUNT,
    GET_BY_IDS,
    Api,
    assert_same_shape,
)


@pytest.fixture(params=list(PROFILES))
def sandbox(request, start_sandbox):
    """The examples account under each profile (`documented` first), rate limit off."""
    return start_sandbox(account=EXAMPLES_ACCOUNT, profile=request.param)


def test_bulk_add_example(api):
    answer = api.post(BULK_ADD, examples.BULK_ADD_REQUEST, params={"SearchBy": "Phone"})
    assert answer.status_code == 200, answer.text
    assert_same_shape(answer.json(), json.loads(examples.BULK_ADD_RESPONSE))
    rows = answer.json()["Response"]
    assert [r["RowNumber"] for r in rows] == [1, 2] and all(r["OpportunityCreated"] for r in rows)
    stored = {o["ProspectOpportunityId"]: o for o in api.opportunities()}
    first = stored[rows[0]["ProspectOpportunityId"]]
    assert first["ProspectId"] == "5b1f0c1e-0000-4000-8000-000000000794"
    assert first["EventCode"] == 12114
    assert first["Fields"]["mx_Custom_1"] == "XYZ" and first["Fields"]["Status"] == "Open"


def test_bulk_add_example_with_keys_in_the_query_string(sandbox):
    api = Api(sandbox.url)
    api.session.headers.clear()
    answer = api.session.post(
        sandbox.url + BULK_ADD,
        params={"accessKey": "sandbox-access-key", "secretKey": "sandbox-secret-key", "SearchBy": "Phone"},
        data=examples.BULK_ADD_REQUEST.encode(), headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert all(row["OpportunityCreated"] for row in answer.json()["Response"])


def test_bulk_update_example(api):
    before = {o["ProspectOpportunityId"]: o for o in api.opportunities()}
    answer = api.post(BULK_UPDATE, examples.BULK_UPDATE_REQUEST)
    assert answer.status_code == 200, answer.text
    assert answer.json() == json.loads(examples.BULK_UPDATE_RESPONSE)
    after = {o["ProspectOpportunityId"]: o for o in api.opportunities()}
    won = after["4f530c63-4c93-4150-8b8e-83487befb3b2"]
    assert won["Fields"]["Status"] == "Won"
    assert won["Fields"]["Owner"] == "96105aa0-61f2-11ea-8109-022edb41208c"
    assert after["c5a7f37c-b789-44c9-929b-74aa6250b539"]["Fields"]["mx_Custom_6"] == "23500"
    for opp_id in ("4f530c63-4c93-4150-8b8e-83487befb3b2", "c5a7f37c-b789-44c9-929b-74aa6250b539"):
        assert after[opp_id]["ModifiedOn"] > before[opp_id]["ModifiedOn"]


def test_capture_example(api):
    answer = api.post(CAPTURE, examples.CAPTURE_REQUEST)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_same_shape(body, json.loads(examples.CAPTURE_RESPONSE))
    assert body["Status"] == 0 and body["IsUnique"] is True
    assert body["PrimaryAction"] == 1 and body["SecondaryAction"] == 2
    assert body["AdditionalDetails"][0]["PostDeDupActionPerformed"] == 1
    # __UseUserDefinedGuid__: the new lead takes the ProspectID sent.
    assert body["RelatedProspectId"] == "4d03f397-49e7-4e4e-8168-5f51d591c592"
    leads = {lead["ProspectId"]: lead for lead in api.get("/sandbox/leads").json()["Leads"]}
    assert leads[body["RelatedProspectId"]]["Fields"]["EmailAddress"] == "johndoe4633@example.com"
    assert body["CreatedOpportunityId"] in {o["ProspectOpportunityId"] for o in api.opportunities()}


def test_capture_example_on_the_default_account(start_sandbox):
    """The default account alone (no seed records) takes the capture example."""
    answer = Api(start_sandbox().url).post(CAPTURE, examples.CAPTURE_REQUEST)
    assert answer.status_code == 200, answer.text
    assert answer.json()["IsUnique"] is True


def test_get_opportunities_by_id_example(api):
    answer = api.post(GET_BY_IDS, examples.GET_BY_IDS_REQUEST)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_same_shape(body, json.loads(examples.GET_BY_IDS_RESPONSE))
    assert [group["EventCode"] for group in body] == ["12003", "12001"]
    # 2232837f… is of type 12003, so the 12001 group leaves it out, as the page's answer shows.
    assert body[1] == {"EventCode": "12001", "RecordCount": 0, "Opportunities": []}
    first = body[0]
    assert first["RecordCount"] == len(first["Opportunities"]) == 2
    jane = first["Opportunities"][0]
    assert list(jane) == ["ProspectId", "EmailAddress", "ProspectActivityId", "CreatedOn", "ModifiedOn",
                          "Owner", "OwnerEmailAddress"]
    assert jane["ProspectActivityId"] == "24cf277e-70fe-4b2f-a9c2-9a68f45feaba"
    assert jane["EmailAddress"] == "janehewitt@example.com"
    assert jane["CreatedOn"] == "4/6/2023 3:23:34 PM"
    assert jane["OwnerEmailAddress"] == "sri.sudhan@example.com"
    assert first["Opportunities"][1]["ModifiedOn"] == "5/4/2022 7:26:35 PM"


@pytest.mark.parametrize("opportunity_id", ["24cf277e-70fe-4b2f-a9c2-9a68f45feaba"])
def test_post_bulk_activities_example(api, opportunity_id):
    answer = api.post(ACTIVITIES, examples.ACTIVITIES_REQUEST, params={"opportunityId": opportunity_id})
    assert answer.status_code == 200, answer.text
    assert_same_shape(answer.json(), json.loads(examples.ACTIVITIES_RESPONSE))
    created = {a["ProspectActivityId"]: a for a in api.get("/sandbox/activities").json()["Activities"]}
    first, second = (created[row["ProspectActivityId"]] for row in answer.json()["Response"])
    assert (first["ActivityEvent"], first["Fields"], first["OpportunityId"]) == (
        208, {"mx_Custom_2": "AAAAA1111A"}, opportunity_id)
    assert second["ActivityEvent"] == 102 and second["OwnerId"] == "d5d08e32-5ca9-11ea-8dd7-029e1407a868"
