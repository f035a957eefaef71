"""The mapping file: the demo loads, and every kind of mistake fails at load naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lsq_pipeline.mapping import MappingError, load_mapping, parse_mapping

from .conftest import DEMO_MAPPING


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEMO_MAPPING.read_text(encoding="utf-8"))


def test_demo_mapping_loads_with_the_shared_facts(mapping):
    opp = mapping.opportunity
    assert opp.event_code == 12002
    assert (opp.lead.search_by.field, opp.lead.search_by.column) == ("EmailAddress", "email")
    assert (opp.source_id.column, opp.source_id.field) == ("application_id", "mx_Custom_1")
    assert opp.fields["Status"].value_map["Disbursed"] == "Won"
    assert opp.owner.users["priya.sharma@lendco.example"] == "0b6f2c1e-1a2b-4c3d-8e9f-000000000001"
    assert opp.status_comment.field == "mx_Custom_19"
    assert {n: t.activity_event for n, t in mapping.events.types.items()} == {
        "document_collected": 208, "meeting_held": 102, "credit_check": 211}


def _error(data: dict) -> str:
    with pytest.raises(MappingError) as caught:
        parse_mapping(data)
    return str(caught.value)


def test_unknown_type_names_the_key(raw):
    raw["opportunity"]["fields"]["mx_Custom_3"]["type"] = "money"
    assert "mapping.yaml: opportunity.fields.mx_Custom_3.type:" in _error(raw)


def test_unknown_key_is_refused(raw):
    raw["opportunity"]["fields"]["mx_Custom_4"]["maxlen"] = 10
    assert "opportunity.fields.mx_Custom_4.maxlen: Extra inputs are not permitted" in _error(raw)


def test_value_map_onto_a_value_outside_the_options(raw):
    raw["opportunity"]["fields"]["Status"]["value_map"]["Disbursed"] = "Closed"
    message = _error(raw)
    assert "opportunity.fields.Status" in message and "'Disbursed' -> 'Closed'" in message


def test_duplicate_schema_name_across_sections(raw):
    raw["opportunity"]["fields"]["Owner"] = {"column": "owner_email"}
    assert "opportunity.owner.field: duplicate schema name 'Owner'" in _error(raw)


def test_the_columns_are_the_sources_own(raw, mapping):
    """Any column name loads (whether it exists is found when the source is read, naming it), and
    the mapping lists the columns it reads, templates' included."""
    raw["opportunity"]["fields"]["mx_Custom_4"]["column"] = "full_name"
    raw["opportunity"]["status_comment"]["template"] = "Stage: {status}"
    changed = parse_mapping(raw)
    assert "full_name" in changed.application_columns() and "status" in changed.application_columns()
    assert mapping.application_columns()[:4] == ["application_id", "updated_at", "email", "owner_email"]
    assert set(mapping.application_columns()) <= {
        "application_id", "applicant_name", "email", "phone", "product", "amount", "stage", "owner_email",
        "created_at", "updated_at"}
    assert mapping.event_columns()[:5] == ["event_id", "application_id", "event_type", "occurred_at", "owner_email"]


def test_dropdown_without_options_and_bad_user_id(raw):
    broken = copy.deepcopy(raw)
    del broken["opportunity"]["fields"]["mx_Custom_5"]["options"]
    assert "opportunity.fields.mx_Custom_5: Value error, a dropdown needs 'options'" in _error(broken)
    raw["opportunity"]["owner"]["users"]["priya.sharma@lendco.example"] = "priya"
    assert "opportunity.owner" in _error(raw) and "not a user id" in _error(raw)


def test_duplicate_yaml_key_is_refused(tmp_path: Path):
    text = DEMO_MAPPING.read_text(encoding="utf-8").replace(
        "    mx_Custom_4: {column: applicant_name, max_length: 100}\n",
        "    mx_Custom_4: {column: applicant_name, max_length: 100}\n    mx_Custom_4: {column: email}\n")
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=r"mapping.yaml: line \d+: duplicate key 'mx_Custom_4'"):
        load_mapping(path)


def test_templates_only_where_they_are_rendered(raw):
    raw["events"]["note"] = {"template": "{note}"}
    assert "events.note.template: templates are supported in opportunity.fields and opportunity.note only" in _error(raw)


def test_mode_and_ownership_are_read_with_defaults(raw, mapping):
    assert mapping.opportunity.mode == "upsert"
    assert mapping.opportunity.crm_owned() == [] and mapping.opportunity.repaired() == []
    raw["opportunity"]["mode"] = "create_only"
    raw["opportunity"]["fields"]["mx_Custom_3"]["owner"] = "crm"
    raw["opportunity"]["fields"]["mx_Custom_4"]["on_drift"] = "repair"
    opp = parse_mapping(raw).opportunity
    assert (opp.mode, opp.crm_owned(), opp.repaired()) == ("create_only", ["mx_Custom_3"], ["mx_Custom_4"])


def test_mode_and_ownership_mistakes_name_the_key(raw):
    bad_mode = copy.deepcopy(raw)
    bad_mode["opportunity"]["mode"] = "insert"
    assert "opportunity.mode: Input should be 'upsert', 'update_only' or 'create_only'" in _error(bad_mode)
    both = copy.deepcopy(raw)
    both["opportunity"]["fields"]["mx_Custom_3"].update(owner="crm", on_drift="repair")
    assert "opportunity.fields.mx_Custom_3: Value error, a field owned by the CRM is never sent again" in _error(both)
    lead = copy.deepcopy(raw)
    lead["opportunity"]["lead"]["capture_fields"]["Phone"]["owner"] = "crm"
    assert ("opportunity.lead.capture_fields.Phone: 'owner' and 'on_drift' apply to opportunity.fields only"
            in _error(lead))
    status = copy.deepcopy(raw)
    status["opportunity"]["fields"]["Status"]["owner"] = "crm"
    assert "opportunity.status_field: 'Status' is owned by the CRM" in _error(status)


@pytest.mark.parametrize(
    "name", ['mx_Custom_3"; DROP TABLE opportunity_state; --', "mx Custom 3", "3mx", "mx-Custom", "", "Státus"]
)
def test_a_field_name_that_is_not_a_leadsquared_schema_name_is_refused(raw, name):
    raw["opportunity"]["fields"][name] = raw["opportunity"]["fields"].pop("mx_Custom_3")
    assert "is not a LeadSquared schema name" in _error(raw)


@pytest.mark.parametrize(
    "path",
    [("opportunity", "source_id", "field"), ("opportunity", "owner", "field"), ("opportunity", "status_field"),
     ("opportunity", "status_comment", "field")],
)
def test_every_schema_name_of_the_mapping_is_checked(raw, path):
    *parents, key = path
    section = raw
    for part in parents:
        section = section[part]
    section[key] = "mx_Custom_1'--"
    message = _error(raw)
    assert ".".join(path) in message and "is not a LeadSquared schema name" in message


def test_activity_field_names_are_checked(raw):
    fields = raw["events"]["types"]["credit_check"]["fields"]
    fields["mx Score"] = fields.pop(next(iter(fields)))
    assert "events.types.credit_check.fields.mx Score" in _error(raw)


def test_creates_are_declared_safe_only_with_a_duplicate_rule(raw, mapping):
    assert mapping.opportunity.source_id.duplicate_rule is True
    del raw["opportunity"]["source_id"]["duplicate_rule"]
    assert parse_mapping(raw).opportunity.source_id.duplicate_rule is False


def test_a_changed_file_is_parsed_again_and_the_same_text_once(tmp_path):
    """Each step of a run loads the mapping: the same text is parsed once per process, and an
    edit between two loads is seen by the second."""
    path = tmp_path / "mapping.yaml"
    text = DEMO_MAPPING.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first = load_mapping(path)
    assert load_mapping(path) is first
    path.write_text(text.replace("event_code: 12002", "event_code: 12003"), encoding="utf-8")
    changed = load_mapping(path)
    assert changed.opportunity.event_code == 12003 and first.opportunity.event_code == 12002
    path.write_text("opportunity: [", encoding="utf-8")
    with pytest.raises(MappingError, match="mapping.yaml: cannot read"):
        load_mapping(path)


def test_adoption_options_are_read_with_defaults(raw, mapping):
    assert (mapping.opportunity.on_existing, mapping.opportunity.keep_owner) == ("overwrite", False)
    assert mapping.opportunity.adoption() is None  # overwrite: what LeadSquared holds is what was sent
    raw["opportunity"].update(on_existing="fill_empty", keep_owner=True)
    adoption = parse_mapping(raw).opportunity.adoption()
    assert adoption.flags() == {"OverwriteFields": False, "UpdateEmptyFields": True, "DoNotChangeOwner": True}
    raw["opportunity"].update(on_existing="keep", keep_owner=False)
    assert parse_mapping(raw).opportunity.adoption().flags() == {"OverwriteFields": False}
    raw["opportunity"].update(on_existing="overwrite", keep_owner=True)
    assert parse_mapping(raw).opportunity.adoption().flags() == {"OverwriteFields": True, "DoNotChangeOwner": True}


def test_adoption_option_mistakes_name_the_file_and_key(raw, tmp_path: Path):
    raw["opportunity"]["on_existing"] = "merge"
    raw["opportunity"]["keep_owner"] = "sometimes"
    path = tmp_path / "adopt.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert "adopt.yaml: opportunity.on_existing: Input should be 'overwrite', 'fill_empty' or 'keep'" in message
    assert "adopt.yaml: opportunity.keep_owner: Input should be a valid boolean" in message


def test_formula_guard_is_read_per_field_and_checked(raw, mapping):
    assert mapping.opportunity.fields["mx_Custom_4"].guard == "reject"
    raw["opportunity"]["fields"]["mx_Custom_4"]["formula_guard"] = "quote"
    raw["opportunity"]["lead"]["capture_fields"]["FirstName"]["formula_guard"] = "off"
    opp = parse_mapping(raw).opportunity
    assert (opp.fields["mx_Custom_4"].guard, opp.lead.capture_fields["FirstName"].guard) == ("quote", "off")
    wrong = copy.deepcopy(raw)
    wrong["opportunity"]["fields"]["mx_Custom_4"]["formula_guard"] = "escape"
    assert ("mapping.yaml: opportunity.fields.mx_Custom_4.formula_guard: Input should be 'reject', 'quote' or 'off'"
            in _error(wrong))
    number = copy.deepcopy(raw)
    number["opportunity"]["fields"]["mx_Custom_3"]["formula_guard"] = "off"
    assert ("mapping.yaml: opportunity.fields.mx_Custom_3: Value error, 'formula_guard' only applies to a string, "
            "not to type number") in _error(number)
