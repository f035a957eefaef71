"""Customization from YAML and from a subclass: `translation` applies AssetSpec fields to every asset
of the account (templates see the step), renamed keys keep the jobs, checks and run history
working, and a subclass may override `get_asset_spec` and `execute`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lsq_pipeline import LeadSquaredSyncComponent
from lsq_pipeline.orchestration.assets import Step
from lsq_pipeline.orchestration.history import record_run_outcome
from lsq_pipeline.orchestration.jobs import keys_of_job, settings_of
from lsq_pipeline.orchestration.translator import StepAsset
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.component.test_component import load
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import MAPPING, key_variable

STEPS_SEEN: list[str] = []


class TaggedComponent(LeadSquaredSyncComponent):
    """A team's subclass: a tag on every asset, and each step noted as it runs."""

    def get_asset_spec(self, step: StepAsset) -> dg.AssetSpec:
        return super().get_asset_spec(step).merge_attributes(tags={"team": "growth"})

    def execute(self, context: dg.AssetExecutionContext, step: Step) -> object:
        STEPS_SEEN.append(step.name)
        return super().execute(context, step)


def account_yaml(component: str, source: Path, warehouse: Path, url: str, translation: str = "") -> str:
    return (f"type: {component}\nattributes:\n  account: acme\n  source_dir: {source}\n  mapping: {MAPPING}\n"
            f"  warehouse: {warehouse}\n  first_day: '{FIRST_DAY}'\n  api_host: {url}\n"
            f"  access_key_env: {key_variable('sandbox-access-key')}\n"
            f"  secret_key_env: {key_variable('sandbox-secret-key')}\n  rate_limit_calls: 0\n  rate_limit_db: ''\n"
            + translation)


def test_a_yaml_translation_renames_the_group_adds_an_owner_and_moves_the_push_assets(tmp_path, start_sandbox):
    generate(tmp_path / "source", rows=20, days=1, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    translation = (
        "  translation:\n    group_name: crm_sync\n    owners: ['team:growth']\n"
        "    key: \"{{ 'crm/' ~ data.name if data.step == 'push' else data.spec.key.to_user_string() }}\"\n"
    )
    sandbox = start_sandbox()
    defs = load(account_yaml("lsq_pipeline.LeadSquaredSyncComponent", tmp_path / "source",
                             tmp_path / "warehouse.duckdb", sandbox.url, translation))
    graph = defs.resolve_asset_graph()
    renamed = dg.AssetKey(["crm", "leadsquared", "opportunities"])
    assert {node.group_name for node in graph.asset_nodes} == {"crm_sync"}
    assert all("team:growth" in node.owners for node in graph.asset_nodes)
    assert dg.AssetKey(["acme", "leadsquared", "opportunities"]) not in graph.get_all_asset_keys()
    assert renamed in graph.get(dg.AssetKey(["acme", "opportunity_state"])).parent_keys  # deps follow
    assert {check.asset_key for check in graph.asset_check_keys if check.name == "pushed_records_in_sync"} == {renamed}
    job = defs.resolve_job_def("acme_sync_job")
    assert keys_of_job(job)["leadsquared/opportunities"] == renamed
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, partition_key=FIRST_DAY.isoformat(), raise_on_error=False)
    assert result.success
    assert {m.asset_key for m in result.asset_materializations_for_node("acme__push")} == {
        renamed, dg.AssetKey(["crm", "leadsquared", "activities"])}
    assert all(e.passed for e in result.get_asset_check_evaluations())
    row = record_run_outcome(instance, instance.get_run_by_id(result.run_id),
                             defs.resources["acme_warehouse"], keys_of_job(job))
    assert row["status"] == "succeeded" and row["api_calls_total"] > 0  # the history finds the renamed push


def test_a_subclass_overrides_get_asset_spec_and_execute(tmp_path, start_sandbox):
    generate(tmp_path / "source", rows=10, days=1, seed=6, start_day=FIRST_DAY, dirty_rate=0.0)
    STEPS_SEEN.clear()
    sandbox = start_sandbox()
    defs = load(account_yaml(f"{__name__}.TaggedComponent", tmp_path / "source", tmp_path / "warehouse.duckdb",
                             sandbox.url))
    graph = defs.resolve_asset_graph()
    assert all(node.tags.get("team") == "growth" for node in graph.asset_nodes)
    job = defs.resolve_job_def("acme_sync_job")
    assert settings_of(job).account == "acme"
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=FIRST_DAY.isoformat(),
                                    raise_on_error=False)
    assert result.success
    assert STEPS_SEEN == ["extract", "transform", "plan", "push", "reconcile"]
