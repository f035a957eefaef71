"""The push's promises where LeadSquared's answers are not documented: a call refused whole is
split down to the bad row, journalled, nothing sent twice; creates without a declared duplicate
rule are refused naming the rule; a missing lead goes to Capture whatever the answer says."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import pytest
import yaml

from lsq_pipeline.sandbox.account import SeedLead, load_account
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import MAPPING, Pipeline


def _account(*, name_length: int | None = None, duplicate_rule: bool = True, lead_emails=()):
    """The default account, with Applicant Name shorter than the mapping allows, the duplicate
    rule removed, or leads that exist already."""
    account = load_account()
    types = []
    for opportunity_type in account.opportunity_types:
        if opportunity_type.event_code == 12002:
            fields = [f.model_copy(update={"max_length": name_length}) if f.schema_name == "mx_Custom_4" and name_length
                      else f for f in opportunity_type.fields]
            opportunity_type = opportunity_type.model_copy(
                update={"fields": fields, "duplicate_rule": opportunity_type.duplicate_rule if duplicate_rule else []})
        types.append(opportunity_type)
    leads = [SeedLead(id=str(uuid.uuid4()), fields={"EmailAddress": email}) for email in sorted(lead_emails)]
    return account.model_copy(update={"opportunity_types": types, "leads": leads})


def _source(tmp_path: Path, rows: int = 60) -> tuple[Path, list[dict]]:
    source = tmp_path / "source"
    generate(source, rows=rows, days=1, seed=21, start_day=FIRST_DAY, dirty_rate=0.0)
    path = source / FIRST_DAY.isoformat() / "applications.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        return source, list(csv.DictReader(handle))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("profile", ["documented", "terse"])
def test_one_refused_value_never_takes_the_good_rows_with_it(tmp_path, profile, start_sandbox, warehouse_target):
    source, rows = _source(tmp_path)
    long_names = {row["application_id"] for row in rows if len(row["applicant_name"].strip()) > 12}
    assert 0 < len(long_names) < len(rows) // 2
    # The account allows 12 characters for Applicant Name; the mapping allows 100.
    account = _account(name_length=12, lead_emails={row["email"].strip().lower() for row in rows})
    sandbox = start_sandbox(account=account, profile=profile)
    pipeline = Pipeline(source, warehouse_target, sandbox.url)
    assert pipeline.run(FIRST_DAY).success
    remote = pipeline.remote_by_source()
    calls = pipeline.stats()["Calls"]
    accepted = {row[0] for row in pipeline.query("SELECT source_id FROM opportunity_records")}
    assert set(remote) == accepted - long_names and all(len(o) == 1 for o in remote.values())
    failed = dict(pipeline.query("SELECT source_id, error FROM opportunity_state WHERE status = 'failed'"))
    assert set(failed) == long_names and all("mx_Custom_4" in error or "Applicant Name" in error for error in failed.values())
    # Each record got exactly one final answer; rows of a refused call were split, never answered twice.
    finals = pipeline.query(
        """SELECT source_id, count(*) FROM push_journal WHERE kind IN ('create', 'capture') AND status IN ('ok', 'failed')
           GROUP BY source_id HAVING count(*) > 1""")
    assert not finals
    splits = pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'split'")
    halves = pipeline.scalar("SELECT count(DISTINCT batch_id) FROM push_journal WHERE parent_batch_id IS NOT NULL")
    if profile == "terse":
        assert splits > 0 and halves > 0
        assert pipeline.scalar(
            "SELECT count(*) FROM push_journal WHERE parent_batch_id NOT IN (SELECT batch_id FROM push_journal)") == 0
    else:
        assert splits == halves == 0 and calls["BulkAdd"] == -(-len(accepted) // 25)


@pytest.mark.timeout(120)
def test_without_a_declared_duplicate_rule_no_opportunity_is_created(tmp_path, start_sandbox, warehouse_target):
    source, rows = _source(tmp_path, rows=20)
    mapping = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    mapping["opportunity"]["source_id"]["duplicate_rule"] = False
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    sandbox = start_sandbox(account=_account(duplicate_rule=False), profile="field")
    pipeline = Pipeline(source, warehouse_target, sandbox.url, mapping=mapping_path)
    assert pipeline.run(FIRST_DAY).success
    assert pipeline.remote() == []
    assert pipeline.run(FIRST_DAY).success  # a re-run creates nothing either, and sends nothing
    assert pipeline.remote() == []
    assert pipeline.stats()["Calls"].get("BulkAdd", 0) == pipeline.stats()["Calls"].get("Capture", 0) == 0
    errors = dict(pipeline.query("SELECT source_id, error FROM opportunity_state"))
    assert errors and len(errors) == len({row["application_id"] for row in rows})
    assert all("no duplicate detection rule on mx_Custom_1" in error for error in errors.values())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("profile", ["documented", "terse", "field"])
def test_a_missing_lead_goes_to_capture_whatever_the_answer_says(tmp_path, profile, start_sandbox, warehouse_target):
    source, rows = _source(tmp_path, rows=30)
    # Half the leads exist: those records go through Bulk Add, the others through Capture (leads
    # in bulk off, so that Bulk Add meets the missing leads).
    emails = sorted({row["email"].strip().lower() for row in rows})
    sandbox = start_sandbox(account=_account(lead_emails=emails[::2]), profile=profile)
    pipeline = Pipeline(source, warehouse_target, sandbox.url, leads_in_bulk=False)
    assert pipeline.run(FIRST_DAY).success
    remote = pipeline.remote_by_source()
    calls = pipeline.stats()["Calls"]
    accepted = {row[0] for row in pipeline.query("SELECT source_id FROM opportunity_records")}
    assert set(remote) == accepted and all(len(o) == 1 for o in remote.values())
    assert calls["Capture"] == len(accepted) - pipeline.scalar(
        "SELECT count(*) FROM push_journal WHERE kind = 'create' AND status = 'ok'")
    assert {row[0] for row in pipeline.query("SELECT DISTINCT status FROM opportunity_state")} == {"in_sync"}
