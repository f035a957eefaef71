"""The API models: aliases out, tolerant parsing in, per-row failures read."""

from __future__ import annotations

import json

from lsq_pipeline.leadsquared.models import (
    ActivityAdd,
    BulkAddResponse,
    BulkUpdateResponse,
    CaptureRequest,
    CaptureResponse,
    OpportunityAdd,
    OpportunityGroup,
    OpportunityUpdate,
    fields_from_dict,
)



def test_bulk_add_item_serializes_with_api_names_and_no_nones() -> None:
    item = OpportunityAdd(
        search_by_value="a@example.com",
        event_code=12002,
        fields=fields_from_dict({"mx_Custom_1": "APP-1", "mx_Custom_3": 250000, "mx_Flag": True}),
        do_not_change_owner=True,
    )
    assert item.to_api() == {
        "SearchByValue": "a@example.com",
        "OpportunityEventCode": 12002,
        "DoNotChangeOwner": True,
        "Fields": [
            {"SchemaName": "mx_Custom_1", "Value": "APP-1"},
            {"SchemaName": "mx_Custom_3", "Value": "250000"},
            {"SchemaName": "mx_Flag", "Value": "true"},
        ],
    }


def test_requests_accept_api_names() -> None:
    update = OpportunityUpdate.model_validate(
        {"ProspectOpportunityId": "id-1", "OpportunityEventCode": 12003, "Fields": [{"SchemaName": "Status", "Value": "Won"}]}
    )
    assert update.opportunity_id == "id-1" and update.fields[0].value == "Won"
    capture = CaptureRequest.model_validate(
        {
            "LeadDetails": [{"Attribute": "EmailAddress", "Value": "x@example.com"}, {"Attribute": "SearchBy", "Value": "EmailAddress"}],
            "Opportunity": {"OpportunityEventCode": 12000, "UpdateEmptyFields": True, "Fields": []},
        }
    )
    assert capture.opportunity.update_empty_fields is True
    assert capture.to_api()["Opportunity"] == {"OpportunityEventCode": 12000, "UpdateEmptyFields": True, "Fields": []}
    activity = ActivityAdd.model_validate({"ActivityEvent": 102, "ActivityNote": "Meeting completed", "ActivityOwnerEmail": "sri.sudhan@example.com"})
    assert activity.to_api() == {"ActivityEvent": 102, "ActivityNote": "Meeting completed", "ActivityOwnerEmail": "sri.sudhan@example.com"}


def test_bulk_rows_read_failures_and_ignore_unknown_keys() -> None:
    answer = BulkAddResponse.model_validate(
        {
            "Response": [
                {"ProspectOpportunityId": "o-1", "RowNumber": 1, "OpportunityCreated": True, "Surprise": 1},
                {
                    "RowNumber": 2,
                    "OpportunityCreated": False,
                    "ProspectOpportunityId": "o-existing",
                    "ExceptionType": "MXDuplicateEntryException",
                    "ExceptionMessage": "duplicate",
                },
            ],
            "Extra": "ignored",
        }
    )
    assert [row.created for row in answer.rows] == [True, False]
    assert answer.rows[1].exception_type == "MXDuplicateEntryException"
    assert answer.rows[1].opportunity_id == "o-existing"
    update = BulkUpdateResponse.model_validate({"Response": [{"RowNumber": 1, "OpportunityUpdated": False, "ExceptionType": "MXX"}]})
    assert update.rows[0].updated is False and update.rows[0].exception_type == "MXX"


def test_documented_responses_parse() -> None:
    capture = CaptureResponse.model_validate(
        json.loads(
            '{"AdditionalDetails":[{"ActivityId":"b7","PostDeDupActionPerformed":1}],"ConflictedOpportunityId":null,'
            '"CreatedOpportunityId":"d5","ExceptionMessage":null,"ExceptionType":null,"IsUnique":true,"PrimaryAction":1,'
            '"RelatedProspectId":"48","RequestId":"c3","SecondaryAction":2,"Status":0}'
        )
    )
    assert capture.created_opportunity_id == "d5" and capture.is_unique and capture.additional_details[0].post_dedup_action == 1
    group = OpportunityGroup.model_validate(
        {
            "EventCode": "12003",
            "RecordCount": 1,
            "Opportunities": [
                {"ProspectId": "p", "ProspectActivityId": "o", "CreatedOn": "4/6/2023 3:23:34 PM", "Owner": "u"}
            ],
        }
    )
    record = group.opportunities[0]
    assert record.opportunity_id == "o" and record["CreatedOn"] == "4/6/2023 3:23:34 PM"
    assert record.get("Missing") is None and record["ProspectActivityId"] == "o"
