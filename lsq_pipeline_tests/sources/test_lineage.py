"""The lineage of a table, query or upstream-asset source, as Dagster shows it: an upstream asset
(`asset:`) is the extract's dependency with no source asset of ours, a table or query without it
is the external asset `source/applications` with its table name or query, the LeadSquared fields'
column lineage names the source's own columns, and a run reads an upstream asset's table name
(and the extract's metadata names the table it read and the rows)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from lsq_pipeline.demo.project import DATA
from lsq_pipeline.mapping import load_mapping
from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.orchestration.metadata import QUERY_CHARS
from lsq_pipeline.orchestration.translator import account_specs, source_specs
from lsq_pipeline.orchestration.upstream import run_sources, upstream_table_name
from lsq_pipeline.settings import AccountSettings, settings_from

MAPPING = load_mapping(DATA / "mapping.yaml")
DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
DBT_TABLE = "analytics.main.loan_applications"
"""What dagster-dbt 0.29 writes as `dagster/table_name` for a model in analytics.duckdb."""
EVENTS = {"table": "analytics.loan_events", "database": "data/analytics.duckdb", "day_column": "occurred_at"}


def account(root: Path, applications: dict, events: dict | None = EVENTS) -> AccountSettings:
    return settings_from({
        "account": "acme", "sandbox": True, "first_day": "2026-11-01", "root": root,
        "mapping": str(DATA / "mapping.yaml"), "warehouse": "data/warehouse.duckdb",
        "source": {"applications": applications, **({"events": events} if events else {})},
    })


def acme(*names: str) -> dg.AssetKey:
    return dg.AssetKey(["acme", *names])


def column_deps(spec: dg.AssetSpec, column: str) -> list[tuple[dg.AssetKey, str]]:
    return [(dep.asset_key, dep.column_name)
            for dep in spec.metadata["dagster/column_lineage"].deps_by_column[column]]


def test_an_upstream_asset_is_the_extracts_dependency_in_place_of_a_source_asset_of_ours(tmp_path):
    settings = account(tmp_path, {"asset": "loan_applications", "database": "data/analytics.duckdb",
                                  "day_column": "updated_at"},
                       {**EVENTS, "asset": "analytics/loan_events"})
    specs = account_specs(settings, DAYS, MAPPING)
    assert "source/applications" not in specs and "source/events" not in specs and not source_specs(specs)
    assert {dep.asset_key for dep in specs["raw_applications"].deps} == {dg.AssetKey("loan_applications")}
    assert {dep.asset_key for dep in specs["raw_events"].deps} == {dg.AssetKey(["analytics", "loan_events"])}
    assert specs["raw_applications"].freshness_policy is not None  # a table source's freshness is the extract's
    opportunities, activities = specs["leadsquared/opportunities"], specs["leadsquared/activities"]
    assert column_deps(opportunities, "mx_Custom_3") == [(dg.AssetKey("loan_applications"), "amount")]
    event_type = MAPPING.events.type_column
    assert column_deps(activities, "ActivityEvent") == [(dg.AssetKey(["analytics", "loan_events"]), event_type)]


def test_a_table_or_query_without_asset_is_the_external_source_asset_with_its_table_name_or_query(tmp_path):
    query = "SELECT id, amount FROM crm.events WHERE kind <> 'test'"
    settings = account(tmp_path, {"table": "analytics.loan_applications",
                                  "database": "postgresql://lsq@db.internal:5432/crm", "day_column": "updated_at"},
                       {"query": query, "database": "data/analytics.duckdb", "day_column": "occurred_at"})
    specs = account_specs(settings, DAYS, MAPPING)
    applications, events = specs["source/applications"], specs["source/events"]
    assert source_specs(specs) == [applications, events]
    assert applications.key == acme("source", "applications") and events.key == acme("source", "events")
    assert applications.kinds == {"postgres", "source"} and events.kinds == {"duckdb", "source"}
    assert applications.metadata["dagster/table_name"] == "analytics.loan_applications"
    assert applications.metadata["database"].value == "postgresql://lsq@db.internal:5432/crm"
    assert "dagster/table_name" not in events.metadata and events.metadata["query"].value == query
    assert events.metadata["database"].value == str(tmp_path / "data" / "analytics.duckdb")
    assert "analytics.loan_applications" in applications.description and "updated_at" in applications.description
    assert {dep.asset_key for dep in specs["raw_applications"].deps} == {applications.key}
    assert applications.freshness_policy is None and specs["raw_applications"].freshness_policy is not None
    assert column_deps(specs["leadsquared/opportunities"], "mx_Custom_3") == [(applications.key, "amount")]
    assert column_deps(specs["leadsquared/activities"], "ActivityEvent") == [
        (events.key, MAPPING.events.type_column)]


def test_a_table_in_the_warehouse_takes_its_kind_and_a_long_query_is_cut(tmp_path):
    query = "SELECT * FROM loan_applications WHERE note <> '" + "x" * 3 * QUERY_CHARS + "'"
    specs = account_specs(account(tmp_path, {"query": query, "day_column": "updated_at"}), DAYS, MAPPING)
    shown = specs["source/applications"].metadata["query"].value
    assert len(shown) == QUERY_CHARS and shown.endswith("…") and query.startswith(shown[:-1])
    assert specs["source/applications"].kinds == {"duckdb", "source"}  # the warehouse's kind
    assert "database" not in specs["source/applications"].metadata


def test_export_files_keep_their_observed_csv_assets_and_the_raw_tables_column_lineage(tmp_path):
    specs = account_specs(settings_from({"account": "acme", "sandbox": True, "root": tmp_path,
                                         "source_dir": "data/source"}), DAYS, MAPPING)
    source = specs["source/applications"]
    assert source.kinds == {"csv", "source"} and source.freshness_policy is not None
    day_file = tmp_path / "data" / "source" / "YYYY-MM-DD" / "applications.{csv,parquet}"
    assert source.metadata["path"].value == str(day_file)
    assert "CSV or Parquet" in source.description
    assert specs["raw_applications"].freshness_policy is None
    assert column_deps(specs["leadsquared/opportunities"], "mx_Custom_3") == [(acme("raw_applications"), "amount")]


def test_each_record_set_read_from_its_own_folder_shows_that_folder_as_its_path(tmp_path):
    specs = account_specs(account(tmp_path, {"files": "exports/applications"}, {"files": "/srv/events"}), DAYS, MAPPING)
    paths = {name: specs[f"source/{name}"].metadata["path"].value for name in ("applications", "events")}
    applications = tmp_path / "exports" / "applications" / "YYYY-MM-DD" / "applications.{csv,parquet}"
    assert paths == {"applications": str(applications), "events": "/srv/events/YYYY-MM-DD/events.{csv,parquet}"}


def test_no_events_means_no_events_source_asset(tmp_path):
    settings = account(tmp_path, {"table": "analytics.loan_applications", "database": "data/analytics.duckdb",
                                  "day_column": "updated_at"}, events=None)
    specs = account_specs(settings, DAYS, MAPPING)
    assert "source/events" not in specs and not specs["raw_events"].deps
    assert [spec.key for spec in source_specs(specs)] == [acme("source", "applications")]


@dg.asset(metadata={"dagster/table_name": DBT_TABLE}, kinds={"dbt"})
def loan_applications() -> None:
    """Stands for a dbt model: dagster-dbt puts the model's table on its spec."""


def upstream_account(root: Path, **applications: str) -> AccountSettings:
    return account(root, {"asset": "loan_applications", "database": "data/analytics.duckdb",
                          "day_column": "updated_at", **applications})


def test_the_graph_starts_at_the_upstream_asset_of_the_same_code_location(tmp_path):
    defs = dg.Definitions.merge(dg.Definitions(assets=[loan_applications]),
                                build_definitions(upstream_account(tmp_path)))
    graph = defs.resolve_asset_graph()
    upstream = graph.get(dg.AssetKey("loan_applications"))
    assert upstream.is_materializable and upstream.kinds == {"dbt"}
    assert dg.AssetKey("loan_applications") in graph.get(acme("raw_applications")).parent_keys
    assert not any(graph.has(key) for key in (acme("source", "applications"), dg.AssetKey(["source", "applications"])))
    stubs = [node.key for node in graph.asset_nodes if node.metadata.get("dagster/auto_created_stub_asset")]
    assert stubs == []  # a wrong key would show as a dangling external asset


def resolve_in_a_run(definitions: dg.Definitions, settings: AccountSettings, instance: dg.DagsterInstance):
    """What `run_sources` gives inside a run of an asset downstream of loan_applications, or its error."""
    seen: dict[str, object] = {}

    @dg.asset(deps=[dg.AssetKey("loan_applications")])
    def reader(context) -> None:  # no annotation: this module postpones them, which dagster refuses
        try:
            seen["sources"] = run_sources(context, settings)
            seen["table"] = upstream_table_name(context, dg.AssetKey("loan_applications"))
        except dg.Failure as failure:
            seen["failure"] = failure.description

    job = dg.define_asset_job("read", selection=[reader])
    merged = dg.Definitions.merge(definitions, dg.Definitions(assets=[reader], jobs=[job]))
    assert merged.resolve_job_def("read").execute_in_process(instance=instance).success
    return seen


def test_a_run_reads_the_table_name_from_the_upstream_assets_definition(tmp_path):
    settings = upstream_account(tmp_path)
    seen = resolve_in_a_run(dg.Definitions(assets=[loan_applications]), settings, dg.DagsterInstance.ephemeral())
    sources = seen["sources"]
    assert seen["table"] == DBT_TABLE and sources.applications.table == DBT_TABLE
    assert sources.events.table == EVENTS["table"]  # a table given stays as given


def test_a_given_table_wins_over_the_upstream_assets(tmp_path):
    settings = upstream_account(tmp_path, table="analytics.loan_applications_v2")
    seen = resolve_in_a_run(dg.Definitions(assets=[loan_applications]), settings, dg.DagsterInstance.ephemeral())
    assert seen["sources"].applications.table == "analytics.loan_applications_v2"


def test_an_upstream_asset_of_another_code_location_is_read_from_its_latest_materialization(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    elsewhere = dg.AssetKey("loan_applications")
    seen = resolve_in_a_run(dg.Definitions(), upstream_account(tmp_path), instance)
    assert seen["failure"] == (
        "account acme: source applications: the asset loan_applications has no dagster/table_name, neither in "
        "its definition nor in its latest materialization: give the table (table:)")
    instance.report_runless_asset_event(dg.AssetMaterialization(elsewhere, metadata={"dagster/table_name": DBT_TABLE}))
    seen = resolve_in_a_run(dg.Definitions(), upstream_account(tmp_path), instance)
    assert seen["sources"].applications.table == DBT_TABLE


@pytest.mark.parametrize("asset", ["loan_applications", "analytics/loan_applications"])
def test_an_asset_key_is_read_as_dagster_writes_it(tmp_path, asset):
    specs = account_specs(upstream_account(tmp_path, asset=asset), DAYS, MAPPING)
    assert {dep.asset_key for dep in specs["raw_applications"].deps} == {dg.AssetKey.from_user_string(asset)}


def test_with_eager_automation_the_latest_day_syncs_after_the_upstream_asset_materializes(tmp_path):
    settings = upstream_account(tmp_path).model_copy(update={"automation_condition": "eager"})
    defs = dg.Definitions.merge(dg.Definitions(assets=[loan_applications]), build_definitions(settings))
    instance, now = dg.DagsterInstance.ephemeral(), datetime(2026, 11, 20, 12, tzinfo=timezone.utc)

    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    assert first.total_requested == 0
    instance.report_runless_asset_event(dg.AssetMaterialization("loan_applications"))
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now, cursor=first.cursor)
    assert after.get_requested_partitions(acme("raw_applications")) == {"2026-11-19"}  # not every day since first_day


def three_applications(analytics: Path) -> None:
    """Three applications in `main.loan_applications` of the DuckDB file `analytics`, as a dbt model leaves them."""
    with duckdb.connect(str(analytics)) as conn:
        conn.execute("""
            CREATE TABLE loan_applications AS
            SELECT printf('APP-%07d', n) AS application_id, 'Applicant Number' || n AS applicant_name,
                   'applicant' || n || '@mail.example' AS email, printf('09%09d', n) AS phone,
                   'Home Loan' AS product, 100000 + n * 1000 AS amount, 'New' AS stage,
                   'priya.sharma@lendco.example' AS owner_email,
                   TIMESTAMPTZ '2026-11-01 09:00:00+00' AS created_at, TIMESTAMPTZ '2026-11-01 09:30:00+00' AS updated_at
            FROM range(1, 4) AS t(n)""")


def extract_in_a_run(root: Path, upstream: dg.AssetsDefinition | None) -> tuple[dg.ExecuteInProcessResult, AccountSettings]:
    """The extract of a snapshot account whose applications are the asset loan_applications alone,
    in definitions holding `upstream` (none: an asset of another code location)."""
    three_applications(root / "analytics.duckdb")
    (root / "data").mkdir()  # the warehouse's folder
    settings = account(root, {"asset": "loan_applications", "database": "analytics.duckdb"}, events=None)
    job = dg.define_asset_job("extract", selection=[acme("raw_applications")])
    defs = dg.Definitions.merge(dg.Definitions(assets=[upstream] if upstream else [], jobs=[job]),
                                build_definitions(settings))
    result = defs.resolve_job_def("extract").execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                                                raise_on_error=False)
    return result, settings


def test_the_extract_reads_the_upstream_assets_table_and_names_it_with_the_rows_read(tmp_path):
    result, settings = extract_in_a_run(tmp_path, loan_applications)
    assert result.success
    [raw] = result.asset_materializations_for_node("acme__extract")
    metadata = {name: value.value for name, value in raw.metadata.items()}
    assert (metadata["source_kind"], metadata["source_table"], metadata["run_rows_read"]) == ("table", DBT_TABLE, 3)
    assert metadata["source_database"] == str(tmp_path / "analytics.duckdb")
    with settings.warehouse_location().connect(read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw_applications").fetchone()[0] == 3


def test_an_upstream_asset_without_a_table_name_fails_the_extract_naming_it(tmp_path):
    result, _ = extract_in_a_run(tmp_path, None)
    assert not result.success
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "account acme: source applications: the asset loan_applications has no dagster/table_name" in (
        failure.event_specific_data.error.message)
