"""The backend's rules without a socket: limits, validation, duplicates, flags, capture, reads, activities."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from lsq_pipeline.sandbox import SandboxBackend, load_account
from lsq_pipeline.sandbox.exceptions import (
    MXInvalidInputException,
    MXInvalidJsonException,
    MXMandatoryAttributeMissingException,
)
from lsq_pipeline_tests.sandbox import examples
from lsq_pipeline_tests.sandbox.conftest import EXAMPLES_ACCOUNT, fields, loan_fields, loan_row

JANE = "a368678f-1e81-4fb8-af0a-4b896f6330e1"
GEORGE = "332c7a9f-6451-11ea-8109-022edb41208c"
SRI = "d5d08e32-5ca9-11ea-8dd7-029e1407a868"
GEORGE_BAILEY = "96105aa0-61f2-11ea-8109-022edb41208c"
SEEDED_12003 = "4f530c63-4c93-4150-8b8e-83487befb3b2"


def add(backend, *rows, search_by="EmailAddress"):
    return backend.bulk_add(search_by, list(rows))["Response"]


def only_row(backend, row, search_by="EmailAddress"):
    (answer,) = add(backend, row, search_by=search_by)
    return answer


# ----- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda b, rows: b.bulk_add("EmailAddress", rows),
    lambda b, rows: b.bulk_update(rows),
    lambda b, rows: b.bulk_add_activities(SEEDED_12003, rows),
])
def test_empty_array_and_more_than_25_items_are_refused(backend, call):
    with pytest.raises(MXInvalidInputException, match="at least one"):
        call(backend, [])
    rows = [loan_row(app_id=f"A{i}") for i in range(26)]
    with pytest.raises(MXInvalidInputException, match="up to 25"):
        call(backend, rows)
    assert len(backend.opportunities) == 5  # the seeds only


def test_twenty_five_items_pass(backend):
    answers = add(backend, *[loan_row(app_id=f"A{i}") for i in range(25)])
    assert all(a["OpportunityCreated"] for a in answers)


def test_read_of_more_than_2000_ids_or_none_is_refused(backend):
    def read(ids):
        return backend.get_opportunities_by_id(
            {"SearchParameters": [{"EventCode": "12003", "ProspectActivityId": ids,
                                   "Columns": {"Include_CSV": "Owner"}}]})

    with pytest.raises(MXInvalidInputException, match="2000"):
        read([f"id-{i}" for i in range(2001)])
    with pytest.raises(MXInvalidInputException, match="at least one"):
        read([])
    with pytest.raises(MXInvalidInputException):
        backend.get_opportunities_by_id({"SearchParameters": []})
    assert read([SEEDED_12003] + [f"id-{i}" for i in range(1999)])[0]["RecordCount"] == 1


@pytest.mark.parametrize("body", [{"not": "an array"}, [1, 2], [None],
                                  [{"SearchByValue": "x", "OpportunityEventCode": "abc"}],
                                  [{"SearchByValue": "x", "OpportunityEventCode": 1, "Fields": "no"}]])
def test_wrong_shape_is_a_400_naming_the_key(backend, body):
    with pytest.raises(MXInvalidJsonException) as error:
        backend.bulk_add("EmailAddress", body)
    assert error.value.http_status == 400
    assert len(backend.opportunities) == 5


def test_keys_are_case_insensitive(backend):
    row = {"searchbyvalue": "janehewitt@example.com", "opportunityeventcode": 12002,
           "fields": [{"schemaname": k["SchemaName"], "value": k["Value"]} for k in loan_fields()]}
    assert only_row(backend, row)["OpportunityCreated"] is True


# ----- Bulk Add -------------------------------------------------------------------------


def test_unknown_search_by_is_refused(backend):
    with pytest.raises(MXInvalidInputException, match="not a unique lead field"):
        backend.bulk_add("FirstName", [loan_row()])
    with pytest.raises(MXMandatoryAttributeMissingException, match="'SearchBy' is mandatory"):
        backend.bulk_add(None, [loan_row()])


def test_search_by_prospect_id(backend):
    row = {**loan_row(), "SearchByValue": JANE}
    answer = only_row(backend, row, search_by="ProspectId")
    assert backend.opportunities[answer["ProspectOpportunityId"]].lead_id == JANE


def test_missing_lead_fails_only_that_row(backend):
    good, missing = add(backend, loan_row(app_id="A1"), loan_row(email="nobody@example.com", app_id="A2"))
    assert good["OpportunityCreated"] is True
    assert missing == {"RowNumber": 2, "OpportunityCreated": False, "ExceptionType": "MXRecordNotFoundException",
                       "ExceptionMessage": "Lead with EmailAddress 'nobody@example.com' does not exist."}
    assert len(backend.opportunities) == 6


def test_mandatory_field_missing(backend):
    row = {**loan_row(), "Fields": fields(mx_Custom_1="A1", mx_Custom_2="Home Loan")}
    answer = only_row(backend, row)
    assert answer["OpportunityCreated"] is False
    assert answer["ExceptionType"] == "MXMandatoryAttributeMissingException"
    assert "mx_Custom_3" in answer["ExceptionMessage"]


@pytest.mark.parametrize("name, value", [
    ("mx_Custom_1", "x" * 51),                   # String max length 50
    ("mx_Custom_3", "lots"),                     # Number
    ("mx_Custom_6", "2026-11-02"),               # DateTime wants a time
    ("mx_Custom_6", "02/11/2026 10:00:00"),      # DateTime format
    ("Owner", "00000000-0000-0000-0000-000000000000"),  # unknown user
    ("mx_Custom_99", "x"),                       # not a field of the type
])
def test_values_that_do_not_fit_the_field_fail_the_row(backend, name, value):
    row = {**loan_row(), "Fields": loan_fields(**{name: value})}
    answer = only_row(backend, row)
    assert answer["OpportunityCreated"] is False, answer
    assert answer["ExceptionType"] in ("MXInvalidFieldValueException", "MXInvalidInputException")
    assert len(backend.opportunities) == 5


def test_values_that_fit_are_stored(backend):
    answer = only_row(backend, {**loan_row(), "Fields": loan_fields(
        mx_Custom_1="A" * 50, mx_Custom_3="1234.50", mx_Custom_2="home loan", mx_Custom_6="2026-11-02 10:00:00")})
    stored = backend.opportunities[answer["ProspectOpportunityId"]].fields
    assert stored["mx_Custom_2"] == "Home Loan"  # the option's own spelling
    assert stored["mx_Custom_6"] == "2026-11-02 10:00:00"


def test_date_and_boolean_fields():
    account = load_account(EXAMPLES_ACCOUNT)
    opp_type = account.opportunity_type(12000)
    from lsq_pipeline.sandbox.account import FieldDefinition

    opp_type.fields += [FieldDefinition(schema_name="mx_Custom_8", data_type="Date"),
                        FieldDefinition(schema_name="mx_Custom_9", data_type="Boolean")]
    backend = SandboxBackend(account)
    row = {"SearchByValue": "janehewitt@example.com", "OpportunityEventCode": 12000,
           "Fields": fields(mx_Custom_1="D1", mx_Custom_8="2026-01-31", mx_Custom_9="true")}
    answer = only_row(backend, row)
    assert backend.opportunities[answer["ProspectOpportunityId"]].fields["mx_Custom_9"] == "1"
    bad = {**row, "Fields": fields(mx_Custom_1="D2", mx_Custom_8="2026-02-30")}
    assert only_row(backend, bad)["ExceptionType"] == "MXInvalidFieldValueException"
    bad = {**row, "Fields": fields(mx_Custom_1="D3", mx_Custom_9="yes")}
    assert only_row(backend, bad)["ExceptionType"] == "MXInvalidFieldValueException"


def test_status_needs_a_status_comment_when_comments_are_on(backend):
    answer = only_row(backend, {**loan_row(), "Fields": loan_fields(Status="Won")})
    assert answer == {"RowNumber": 1, "OpportunityCreated": False,
                      "ExceptionType": "MXInvalidActivityFieldsException",
                      "ExceptionMessage": "Field name : 'mx_Custom_19' of datatype : 'String' is mandatory."}
    answer = only_row(backend, {**loan_row(), "Fields": loan_fields(Status="Won", mx_Custom_19="Disbursed")})
    assert answer["OpportunityCreated"] is True


def test_status_without_comment_is_fine_when_comments_are_off(backend):
    row = {"SearchByValue": "janehewitt@example.com", "OpportunityEventCode": 12000,
           "Fields": fields(mx_Custom_1="S1", Status="Lost")}
    assert only_row(backend, row)["OpportunityCreated"] is True


def test_owner_email_sets_the_owner_and_unknown_email_fails(backend):
    answer = only_row(backend, loan_row(OpportunityOwnerEmail="george.bailey@example.com"))
    assert backend.opportunities[answer["ProspectOpportunityId"]].fields["Owner"] == GEORGE_BAILEY
    answer = only_row(backend, loan_row(app_id="A2", OpportunityOwnerEmail="ghost@example.com"))
    assert answer["ExceptionType"] == "MXInvalidInputException"


def test_default_owner_is_the_api_user(backend):
    answer = only_row(backend, loan_row())
    assert backend.opportunities[answer["ProspectOpportunityId"]].fields["Owner"] == SRI


# ----- duplicates -----------------------------------------------------------------------


def test_duplicate_names_the_existing_opportunity(backend):
    first = only_row(backend, loan_row())
    second = only_row(backend, loan_row())
    assert second == {
        "ProspectOpportunityId": first["ProspectOpportunityId"], "RowNumber": 1, "OpportunityCreated": False,
        "ExceptionType": "MXDuplicateEntryException", "ExceptionMessage": second["ExceptionMessage"],
    }
    assert len(backend.opportunities) == 6


def test_duplicate_inside_one_call(backend):
    first, second = add(backend, loan_row(), loan_row())
    assert second["ProspectOpportunityId"] == first["ProspectOpportunityId"]
    assert second["ExceptionType"] == "MXDuplicateEntryException"


def test_same_rule_values_on_another_lead_or_type_are_not_duplicates(backend):
    only_row(backend, loan_row())
    assert only_row(backend, loan_row(email="george.costanza@example.com"))["OpportunityCreated"] is True
    other_type = {"SearchByValue": "janehewitt@example.com", "OpportunityEventCode": 12000,
                  "Fields": fields(mx_Custom_1="APP-1")}
    assert only_row(backend, other_type)["OpportunityCreated"] is True


def test_rule_values_compare_without_case(backend):
    first = only_row(backend, loan_row(app_id="app-7"))
    assert only_row(backend, loan_row(app_id="APP-7"))["ProspectOpportunityId"] == first["ProspectOpportunityId"]


def test_no_rule_means_no_duplicate_detection():
    account = load_account(EXAMPLES_ACCOUNT)
    account.opportunity_type(12002).duplicate_rule = []
    backend = SandboxBackend(account)
    assert all(a["OpportunityCreated"] for a in add(backend, loan_row(), loan_row()))


def test_duplicate_with_overwrite_fields_updates_the_existing_one(backend):
    first = only_row(backend, loan_row())
    row = {**loan_row(), "OverwriteFields": True, "Fields": loan_fields(mx_Custom_3="999", mx_Custom_4="Jane H")}
    answer = only_row(backend, row)
    assert answer["ProspectOpportunityId"] == first["ProspectOpportunityId"]
    assert answer["ExceptionType"] == "MXDuplicateEntryException"
    stored = backend.opportunities[first["ProspectOpportunityId"]].fields
    assert stored["mx_Custom_3"] == "999" and stored["mx_Custom_4"] == "Jane H"


def test_duplicate_without_flags_changes_nothing(backend):
    first = only_row(backend, loan_row())
    only_row(backend, {**loan_row(), "Fields": loan_fields(mx_Custom_3="999", mx_Custom_4="Jane H")})
    stored = backend.opportunities[first["ProspectOpportunityId"]].fields
    assert stored["mx_Custom_3"] == "250000" and "mx_Custom_4" not in stored


def test_duplicate_with_update_empty_fields_fills_only_empty_fields(backend):
    first = only_row(backend, loan_row())
    row = {**loan_row(), "UpdateEmptyFields": True, "Fields": loan_fields(mx_Custom_3="999", mx_Custom_4="Jane H")}
    only_row(backend, row)
    stored = backend.opportunities[first["ProspectOpportunityId"]].fields
    assert stored["mx_Custom_3"] == "250000" and stored["mx_Custom_4"] == "Jane H"


def test_do_not_change_owner_keeps_the_owner_on_overwrite(backend):
    first = only_row(backend, loan_row())
    row = {**loan_row(), "OverwriteFields": True, "DoNotChangeOwner": True,
           "OpportunityOwnerEmail": "george.bailey@example.com", "Fields": loan_fields(mx_Custom_3="5")}
    only_row(backend, row)
    stored = backend.opportunities[first["ProspectOpportunityId"]].fields
    assert stored["Owner"] == SRI and stored["mx_Custom_3"] == "5"
    only_row(backend, {**row, "DoNotChangeOwner": False})
    assert backend.opportunities[first["ProspectOpportunityId"]].fields["Owner"] == GEORGE_BAILEY


def test_duplicate_activity_unless_do_not_post_duplicate_activity(backend):
    only_row(backend, loan_row())
    only_row(backend, loan_row())
    kinds = [a.kind for a in backend.activities.values()]
    assert kinds.count("DuplicateDetected") == 1
    only_row(backend, loan_row(DoNotPostDuplicateActivity=True))
    assert [a.kind for a in backend.activities.values()].count("DuplicateDetected") == 1


# ----- Bulk Update ----------------------------------------------------------------------


def test_update_unknown_id_wrong_event_code_system_field_bad_value(backend):
    created_on_field = json.loads(examples.BULK_UPDATE_CREATED_ON_FIELD)
    rows = [
        {"ProspectOpportunityId": "00000000-0000-0000-0000-000000000000", "OpportunityEventCode": 12003},
        {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12000, "Fields": fields(Status="Won")},
        {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003, "Fields": [created_on_field]},
        {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003, "Fields": fields(mx_Custom_1="x" * 201)},
        {"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003, "Fields": fields(Status="Lost")},
    ]
    answers = backend.bulk_update(rows)["Response"]
    assert [a["OpportunityUpdated"] for a in answers] == [False, False, False, False, True]
    assert [a.get("ExceptionType") for a in answers] == [
        "MXRecordNotFoundException", "MXInvalidInputException", "MXSystemFieldUpdateException",
        "MXInvalidFieldValueException", None]
    assert set(answers[0]) == {"RowNumber", "OpportunityUpdated", "ExceptionType", "ExceptionMessage"}
    assert backend.opportunities[SEEDED_12003].fields["Status"] == "Lost"


@pytest.mark.parametrize("system_field", ["CreatedOn", "ModifiedOn", "CreatedBy", "ModifiedBy"])
def test_every_system_field_is_refused(backend, system_field):
    (answer,) = backend.bulk_update([{"ProspectOpportunityId": SEEDED_12003, "OpportunityEventCode": 12003,
                                      "Fields": fields(**{system_field: "2024-04-02 12:13:44"})}])["Response"]
    assert answer["OpportunityUpdated"] is False and system_field in answer["ExceptionMessage"]


def test_update_moves_modified_on_and_keeps_created_on():
    moments = iter(datetime(2026, 11, 1, 10, 0, 0) + timedelta(minutes=i) for i in range(100))
    backend = SandboxBackend(load_account(EXAMPLES_ACCOUNT), clock=lambda: next(moments))
    created = only_row(backend, loan_row())["ProspectOpportunityId"]
    before = backend.opportunities[created]
    backend.bulk_update([{"ProspectOpportunityId": created, "OpportunityEventCode": 12002,
                          "Fields": fields(mx_Custom_5="Approved")}])
    after = backend.opportunities[created]
    assert after.modified_on > before.modified_on and after.created_on == before.created_on
    assert after.fields["mx_Custom_5"] == "Approved"


def test_update_status_needs_comment_and_mandatory_cannot_be_emptied(backend):
    created = only_row(backend, loan_row())["ProspectOpportunityId"]
    rows = [{"ProspectOpportunityId": created, "OpportunityEventCode": 12002, "Fields": fields(Status="Won")},
            {"ProspectOpportunityId": created, "OpportunityEventCode": 12002, "Fields": fields(mx_Custom_3="")}]
    first, second = backend.bulk_update(rows)["Response"]
    assert first["ExceptionType"] == "MXInvalidActivityFieldsException"
    assert second["ExceptionType"] == "MXMandatoryAttributeMissingException"


# ----- Capture --------------------------------------------------------------------------


def capture_body(email="new.lead@example.com", app_id="CAP-1", **opportunity):
    return {"LeadDetails": [{"Attribute": "EmailAddress", "Value": email},
                            {"Attribute": "FirstName", "Value": "New"},
                            {"Attribute": "SearchBy", "Value": "EmailAddress"}],
            "Opportunity": {"OpportunityEventCode": 12002, "Fields": loan_fields(app_id), **opportunity}}


def test_capture_creates_lead_then_detects_duplicate(backend):
    first = backend.capture(capture_body())
    assert first["IsUnique"] is True and first["CreatedOpportunityId"]
    second = backend.capture(capture_body())
    assert second["IsUnique"] is False and second["CreatedOpportunityId"] is None
    assert second["ConflictedOpportunityId"] == first["CreatedOpportunityId"]
    assert second["RelatedProspectId"] == first["RelatedProspectId"]
    assert second["PrimaryAction"] == 3 and second["AdditionalDetails"][0]["PostDeDupActionPerformed"] == 3
    assert second["ExceptionType"] == "MXDuplicateEntryException"
    assert len([lead for lead in backend.leads.values()
                if lead.fields.get("EmailAddress") == "new.lead@example.com"]) == 1
    kinds = sorted(a.kind for a in backend.activities.values())
    assert kinds == ["DuplicateDetected", "OpportunityCaptured", "OpportunityCaptured"]


def test_capture_updates_an_existing_lead(backend):
    body = capture_body(email="janehewitt@example.com")
    body["LeadDetails"][1]["Value"] = "Janet"
    answer = backend.capture(body)
    assert answer["RelatedProspectId"] == JANE
    assert backend.leads[JANE].fields["FirstName"] == "Janet"


def test_capture_overwrite_and_update_empty_both_true_is_refused(backend):
    with pytest.raises(MXInvalidInputException, match="^OverwriteFields and UpdateEmptyFields both cannot be true$"):
        backend.capture(capture_body(OverwriteFields=True, UpdateEmptyFields=True))
    assert len(backend.leads) == 5


def test_capture_needs_a_unique_lead_field(backend):
    body = capture_body()
    body["LeadDetails"] = [{"Attribute": "FirstName", "Value": "X"}]
    with pytest.raises(MXInvalidInputException, match="unique lead field"):
        backend.capture(body)


def test_capture_refused_opportunity_leaves_no_lead_behind(backend):
    body = capture_body(Fields=fields(mx_Custom_1="C1"))  # mandatory fields missing
    with pytest.raises(Exception, match="Mandatory"):
        backend.capture(body)
    assert len(backend.leads) == 5 and len(backend.activities) == 0


def test_capture_status_comment_example(backend):
    body = capture_body(Fields=loan_fields() + json.loads(examples.CAPTURE_STATUS_COMMENT_FIELDS))
    assert backend.capture(body)["IsUnique"] is True
    body = capture_body(app_id="CAP-2", Fields=loan_fields("CAP-2") + fields(Status="Lost"))
    with pytest.raises(Exception, match=r"^Field name : 'mx_Custom_19' of datatype : 'String' is mandatory\.$"):
        backend.capture(body)


def test_capture_search_by_prospect_id_finds_the_lead(backend):
    body = {"LeadDetails": [{"Attribute": "ProspectID", "Value": JANE},
                            {"Attribute": "SearchBy", "Value": "ProspectId"}],
            "Opportunity": {"OpportunityEventCode": 12002, "Fields": loan_fields()}}
    assert backend.capture(body)["RelatedProspectId"] == JANE


def test_capture_unique_field_of_another_lead_is_a_duplicate_lead(backend):
    body = {"LeadDetails": [{"Attribute": "ProspectID", "Value": JANE},
                            {"Attribute": "EmailAddress", "Value": "george.costanza@example.com"},
                            {"Attribute": "SearchBy", "Value": "ProspectId"}],
            "Opportunity": {"OpportunityEventCode": 12002, "Fields": loan_fields()}}
    with pytest.raises(Exception, match="A Lead with same Email already exists."):
        backend.capture(body)


def test_capture_without_user_defined_guid_makes_its_own_lead_id(backend):
    body = json.loads(examples.CAPTURE_REQUEST)
    body["LeadDetails"] = [d for d in body["LeadDetails"] if d["Attribute"] != "__UseUserDefinedGuid__"]
    body["LeadDetails"][2]["Value"] = "EmailAddress"
    answer = backend.capture(body)
    assert answer["RelatedProspectId"] != "4d03f397-49e7-4e4e-8168-5f51d591c592"


# ----- GetOpportunitiesById -------------------------------------------------------------


def test_get_by_ids_columns_and_other_type(backend):
    created = only_row(backend, loan_row())["ProspectOpportunityId"]
    (group,) = backend.get_opportunities_by_id({"SearchParameters": [{
        "EventCode": 12002, "ProspectActivityId": [created, SEEDED_12003, "missing", created],
        "Columns": {"Include_CSV": "mx_Custom_1,mx_Custom_3,mx_Custom_4,Status,Owner,ModifiedOn"}}]})
    assert group["EventCode"] == "12002" and group["RecordCount"] == 1
    (row,) = group["Opportunities"]
    assert row["mx_Custom_1"] == "APP-1" and row["mx_Custom_3"] == "250000"
    assert row["mx_Custom_4"] is None and row["Status"] is None and row["Owner"] == SRI


# ----- activities -----------------------------------------------------------------------


def test_activity_rows_fail_on_unknown_event_owner_bad_value_and_opportunity(backend):
    rows = [
        {"ActivityEvent": 999, "ActivityOwnerEmail": "sri.sudhan@example.com"},
        {"ActivityEvent": 102, "ActivityOwnerEmail": "ghost@example.com"},
        {"ActivityEvent": 208, "ActivityOwnerEmail": "sri.sudhan@example.com", "Fields": fields(mx_Custom_2="TOO-LONG-PAN")},
        {"ActivityEvent": 211, "ActivityOwnerEmail": "sri.sudhan@example.com", "Fields": fields(mx_Custom_1="high")},
        {"ActivityEvent": 102},
        {"ActivityEvent": 211, "ActivityOwnerEmail": "sri.sudhan@example.com", "Fields": fields(mx_Custom_1="712")},
    ]
    answers = backend.bulk_add_activities(SEEDED_12003, rows)["Response"]
    assert [a["ActivityCreated"] for a in answers] == [False] * 5 + [True]
    assert all("ProspectActivityId" not in a and a["ExceptionType"] for a in answers[:5])
    (unknown,) = backend.bulk_add_activities("00000000-0000-0000-0000-000000000000", rows[-1:])["Response"]
    assert unknown["ActivityCreated"] is False and unknown["ExceptionType"] == "MXRecordNotFoundException"
    assert len(backend.activities) == 1


# ----- edits behind the pipeline's back ---------------------------------------------------


def test_edit_opportunity_changes_fields_and_modified_on(backend):
    before = backend.opportunities[SEEDED_12003]
    described = backend.edit_opportunity(SEEDED_12003, {"Status": "Lost", "mx_Custom_1": None})
    assert described["Fields"]["Status"] == "Lost" and "mx_Custom_1" not in described["Fields"]
    assert backend.opportunities[SEEDED_12003].modified_on > before.modified_on


def test_duplicate_detection_follows_updates_of_rule_fields(backend):
    first = only_row(backend, loan_row(app_id="OLD"))["ProspectOpportunityId"]
    backend.bulk_update([{"ProspectOpportunityId": first, "OpportunityEventCode": 12002,
                          "Fields": fields(mx_Custom_1="NEW")}])
    assert only_row(backend, loan_row(app_id="OLD"))["OpportunityCreated"] is True
    assert only_row(backend, loan_row(app_id="NEW"))["ProspectOpportunityId"] == first
