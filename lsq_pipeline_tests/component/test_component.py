"""`LeadSquaredSyncComponent` in a dg defs folder: scaffolded, several accounts side by side,
loading that never fails on the disk, the environment or the current folder, a bad mapping named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from lsq_pipeline import LeadSquaredSyncComponent
from lsq_pipeline.orchestration.jobs import settings_of
from lsq_pipeline.orchestration.runs import pick_account
from lsq_pipeline.orchestration.translator import account_specs, keys_of
from lsq_pipeline.settings import AccountSettings, SettingsError

REPO = Path(__file__).resolve().parents[2]
TWO_ACCOUNTS = """\
type: lsq_pipeline.LeadSquaredSyncComponent
attributes:
  account: acme
  source_dir: data/acme/source
  mapping: {mapping}
  warehouse: data/acme/warehouse.duckdb
  sandbox: true
  first_day: "2026-11-01"
  owners: ["team:crm-data"]
---
type: lsq_pipeline.LeadSquaredSyncComponent
attributes:
  account: globex
  source_dir: data/globex/source
  mapping: {mapping}
  warehouse: data/globex/warehouse.duckdb
  first_day: "2026-11-01"
  api_host: https://api-in21.leadsquared.com
  access_key_env: GLOBEX_LSQ_ACCESS_KEY_NOT_SET
  secret_key_env: GLOBEX_LSQ_SECRET_KEY_NOT_SET
  schedule: "30 4 * * *"
  executor: multiprocess
"""


def load(defs_yaml: str, roots: list[Path] | None = None) -> dg.Definitions:
    """The definitions of a dg project whose defs folder holds `defs_yaml` (its root put in `roots`)."""
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "accounts"
        folder.mkdir()
        (folder / "defs.yaml").write_text(defs_yaml)
        (roots if roots is not None else []).append(sandbox.project_root)
        with sandbox.build_all_defs() as defs:
            return defs


def test_scaffold_writes_a_starter_named_after_the_folder():
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=LeadSquaredSyncComponent, defs_path="acme")
        document = yaml.safe_load((path / "defs.yaml").read_text())
    assert document["type"] == "lsq_pipeline.component.LeadSquaredSyncComponent" or document["type"].endswith(
        "LeadSquaredSyncComponent")
    assert document["attributes"]["account"] == "acme"
    assert document["attributes"]["access_key_env"] == "ACME_LSQ_ACCESS_KEY"
    assert document["attributes"]["source_dir"] == "data/acme/source"
    assert document["attributes"]["sandbox"] is True  # asked for, never implied
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    assert document["attributes"]["first_day"] == yesterday.isoformat()  # no day folder yet: yesterday (UTC)
    assert document["requirements"]["env"] == ["ACME_LSQ_ACCESS_KEY", "ACME_LSQ_SECRET_KEY"]  # `dg list env`


@pytest.mark.parametrize(("attributes", "expected"), [
    ("  first_day: '2026-11-01'\n", "account initech: api_host is not set"),
    ("  first_day: '2026-11-01'\n  sandbox: true\n  api_host: https://api-in21.leadsquared.com\n",
     "account initech: api_host is set and sandbox is true"),
    ("  sandbox: true\n", "account initech: first_day is not set"),
    ("  sandbox: true\n  first_day: '2026-11-01'\n  max_in_flight: many\n", "account initech: max_in_flight"),
])
def test_an_account_that_names_no_leadsquared_or_no_first_day_fails_the_load_naming_the_file(attributes, expected):
    with pytest.raises(Exception) as raised:
        load(f"type: lsq_pipeline.LeadSquaredSyncComponent\nattributes:\n  account: initech\n{attributes}")
    cause = raised.value.__cause__
    assert isinstance(cause, SettingsError) and "\n" not in str(cause)
    assert str(cause).split(": ")[0].endswith("accounts/defs.yaml") and expected in str(cause)


def test_blank_variables_leave_defaults_and_owners_take_the_comma_form(monkeypatch):
    monkeypatch.setenv("TEST_OWNERS", "team:crm-data, alice@example.com")
    defs = load("type: lsq_pipeline.LeadSquaredSyncComponent\nattributes:\n  account: initech\n  sandbox: true\n"
                "  first_day: '2026-11-01'\n  rate_limit_calls: \"{{ env('TEST_NOT_SET', '') }}\"\n"
                "  max_in_flight: \"{{ env('TEST_NOT_SET', '') }}\"\n  owners: \"{{ env('TEST_OWNERS', '') }}\"\n")
    settings = settings_of(defs.resolve_job_def("initech_sync_job"))
    assert settings.rate_limit_calls is None and settings.max_in_flight == AccountSettings.model_fields["max_in_flight"].default
    assert settings.owners == ["team:crm-data", "alice@example.com"]


def test_two_accounts_load_side_by_side_with_their_own_names():
    roots: list[Path] = []
    defs = load(TWO_ACCOUNTS.format(mapping=REPO / "data" / "mapping.yaml"), roots)
    jobs = {job.name for job in defs.jobs}
    for account in ("acme", "globex"):
        assert {f"{account}_sync_job", f"{account}_dry_run_job", f"{account}_retry_job"} <= jobs
        assert defs.resolve_schedule_def(f"{account}_daily_sync_schedule")
        for sensor in ("source_files_arrived", "record_successful_runs", "alert_on_failed_runs"):
            assert defs.resolve_sensor_def(f"{account}_{sensor}")
        assert {f"{account}_{role}" for role in ("warehouse", "leadsquared", "source", "alert_webhook")} <= set(
            defs.resources)
    graph = defs.resolve_asset_graph()
    for account in ("acme", "globex"):  # each account's lineage, export file to LeadSquared, under its prefix
        path = [("source", "applications"), ("raw_applications",), ("opportunity_records",), ("sync_plan",),
                ("leadsquared", "opportunities"), ("opportunity_state",)]
        for upstream, downstream in zip(path, path[1:]):
            assert dg.AssetKey([account, *upstream]) in graph.get(dg.AssetKey([account, *downstream])).parent_keys
    pools = {key.to_user_string(): a.op.pool for a in defs.assets if isinstance(a, dg.AssetsDefinition)
             for key in a.keys}
    assert pools["acme/leadsquared/opportunities"] == "acme_leadsquared_api"
    assert pools["globex/leadsquared/opportunities"] == "globex_leadsquared_api"
    assert pools["acme/raw_applications"] == "acme_lsq_warehouse"
    assert defs.resolve_schedule_def("globex_daily_sync_schedule").cron_schedule == "30 4 * * *"
    assert graph.get(dg.AssetKey(["acme", "sync_plan"])).owners == ["team:crm-data"]
    assert graph.get(dg.AssetKey(["acme", "sync_plan"])).partitions_def.start.date() == date(2026, 11, 1)
    assert defs.resolve_job_def("globex_sync_job").executor_def.name == "multiprocess"
    assert defs.resolve_job_def("acme_sync_job").executor_def.name == "in_process"
    acme = settings_of(defs.resolve_job_def("acme_sync_job"))
    assert acme.path("source_dir") == roots[0] / "data" / "acme" / "source"  # from the project root


def test_a_run_of_an_account_with_missing_paths_fails_at_its_start_naming_the_account_and_attribute(tmp_path):
    defs = load(TWO_ACCOUNTS.format(mapping=REPO / "data" / "mapping.yaml"))  # no data/acme: still loads
    result = defs.resolve_job_def("acme_dry_run_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key="2026-11-01", raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE][:1]
    assert "account acme: source_dir" in failure.step_failure_data.error.to_string()


def test_a_key_variable_that_is_not_set_fails_the_run_not_the_load():
    defs = load(TWO_ACCOUNTS.format(mapping=REPO / "data" / "mapping.yaml"))
    with pytest.raises(dg.DagsterInvalidConfigError, match="GLOBEX_LSQ_ACCESS_KEY_NOT_SET"):
        defs.resolve_job_def("globex_sync_job").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key="2026-11-01", raise_on_error=False
        )


def test_a_bad_mapping_fails_the_load_naming_the_file_and_the_key(tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text((REPO / "data" / "mapping.yaml").read_text().replace("event_code:", "event_codes:", 1))
    with pytest.raises(Exception) as raised:
        load(TWO_ACCOUNTS.format(mapping=mapping))
    text = "".join(str(e) for e in (raised.value, raised.value.__cause__) if e)
    assert mapping.name in text and "opportunity.event_code" in text


def test_the_code_location_loads_from_any_folder_without_any_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LSQ_", "DAGSTER_"))}
    env["LSQ_SOURCE_DIR"] = "no/such/folder"  # a missing folder never fails the load
    script = textwrap.dedent("""
        from lsq_pipeline.orchestration.runs import accounts, code_location
        defs = code_location()
        print(sorted(job.name for job in defs.jobs), accounts()["default"].path("source_dir"))
    """)
    answer = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert "['dry_run_job', 'retry_job', 'sync_job']" in answer.stdout
    assert str(tmp_path / "no/such/folder") in answer.stdout  # LSQ_* paths: from the folder a command runs in


def test_the_account_is_required_when_several_are_defined_and_the_choices_are_named():
    defined = {name: AccountSettings(account=name, sandbox=True) for name in ("acme", "globex")}
    with pytest.raises(SettingsError, match=r"--account is required.*acme, globex"):
        pick_account(None, defined)
    with pytest.raises(SettingsError, match=r"no such account \(defined: acme, globex\)"):
        pick_account("initech", defined)
    assert pick_account("globex", defined).account == "globex"
    assert pick_account(None, {"default": AccountSettings(sandbox=True)}).account == "default"


def test_a_ui_run_belongs_to_the_account_whose_assets_it_materializes():
    from lsq_pipeline.orchestration.sensors import sends_for

    acme, default = AccountSettings(account="acme", sandbox=True), AccountSettings(sandbox=True)
    day = dg.DailyPartitionsDefinition(start_date="2026-11-01")
    acme_keys, default_keys = (keys_of(account_specs(settings, day, None)) for settings in (acme, default))

    def ui_run(*keys: dg.AssetKey) -> dg.DagsterRun:
        return dg.DagsterRun(job_name="__ASSET_JOB", run_id="r", asset_selection=frozenset(keys))

    only_leadsquared = ui_run(dg.AssetKey(["acme", "leadsquared", "opportunities"]))
    assert sends_for(only_leadsquared, acme, acme_keys) and not sends_for(only_leadsquared, default, default_keys)
    default_state = ui_run(dg.AssetKey("opportunity_state"))
    assert sends_for(default_state, default, default_keys) and not sends_for(default_state, acme, acme_keys)
