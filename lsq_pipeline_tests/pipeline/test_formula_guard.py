"""The formula guard over the whole flow: an Indian phone number in a text field is data, sent to
LeadSquared as it is; a text that looks like a formula is still refused, or quoted when the mapping says so."""

from __future__ import annotations

import json

from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import rewrite_rows
from lsq_pipeline_tests.pipeline.test_modes_and_ownership import with_mapping


def phone_as_text(**guard: str):
    """`mx_Custom_4` (String, 100 in the sandbox's type) carries the phone as it is in the export."""
    return lambda opportunity: opportunity["fields"].update(mx_Custom_4={"column": "phone", "max_length": 20, **guard})


def test_a_plus_91_phone_in_a_text_field_is_sent_as_it_is(make_pipeline):
    pipeline = with_mapping(make_pipeline(rows=25, days=1), phone_as_text())
    result = pipeline.run(FIRST_DAY)
    assert result.success
    assert pipeline.scalar("SELECT count(*) FROM rejects") == 0
    sent = {source_id: json.loads(fields).get("mx_Custom_4", "")
            for source_id, fields in pipeline.query("SELECT source_id, fields FROM opportunity_records")}
    signed = {source_id: phone for source_id, phone in sent.items() if phone.startswith("+91")}
    assert signed, "the generated export has +91 numbers"
    held = {source_id: opportunities[0]["Fields"].get("mx_Custom_4")
            for source_id, opportunities in pipeline.remote_by_source().items()}
    assert {source_id: held[source_id] for source_id in signed} == signed
    assert pipeline.query("SELECT DISTINCT status FROM opportunity_state") == [("in_sync",)]


def quote_the_name(opportunity: dict) -> None:
    for spec in (opportunity["fields"]["mx_Custom_4"], *opportunity["lead"]["capture_fields"].values()):
        if spec["column"] == "applicant_name":
            spec["formula_guard"] = "quote"


def test_formula_like_text_is_refused_or_quoted_as_the_field_says(make_pipeline):
    pipeline = make_pipeline(rows=6, days=1)
    applications = pipeline.source_dir / FIRST_DAY.isoformat() / "applications.csv"
    rewrite_rows(applications, lambda row: {**row, "applicant_name": "@SUM(A1) Nair"}
                 if row["application_id"] == "APP-0000001" else row)
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.query("SELECT source_id, field, reason FROM rejects WHERE source_file LIKE '%applications%'") == [
        ("APP-0000001", "applicant_name", "FirstName: looks like a spreadsheet formula (starts with = or @, or with + "
                                          "or - and is not a number); refused by formula_guard: reject")]
    assert "APP-0000001" not in pipeline.remote_by_source()

    with_mapping(pipeline, quote_the_name)
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.scalar("SELECT count(*) FROM rejects") == 0  # its events too, now that it is accepted
    [opportunity] = pipeline.remote_by_source()["APP-0000001"]
    assert opportunity["Fields"]["mx_Custom_4"] == "'@SUM(A1) Nair"
