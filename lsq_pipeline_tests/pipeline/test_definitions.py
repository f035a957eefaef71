"""The code location loads, with the asset graph, pools, checks, jobs and schedule users rely on;
bad settings fail early, naming the variable."""

from __future__ import annotations

import dagster as dg
import pytest

from lsq_pipeline.orchestration.runs import code_location

defs = code_location()
from lsq_pipeline.settings import SettingsError
from lsq_pipeline_tests.accounts import default_account

ASSETS = {
    "source/applications": set(),
    "source/events": set(),
    "raw_applications": {"source/applications"},
    "raw_events": {"source/events"},
    "opportunity_records": {"raw_applications"},
    "activity_records": {"raw_events", "raw_applications"},
    "rejects": {"raw_applications", "raw_events"},
    "sync_plan": {"opportunity_records", "activity_records"},
    "leadsquared/opportunities": {"sync_plan"},
    "leadsquared/activities": {"sync_plan"},
    "opportunity_state": {"leadsquared/opportunities", "leadsquared/activities"},
}


def test_asset_graph_has_the_lineage_of_the_flow():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(ASSETS)
    for asset, parents in ASSETS.items():
        node = graph.get(dg.AssetKey.from_user_string(asset))
        assert {p.to_user_string() for p in node.parent_keys} == parents, asset
        assert node.partitions_def is not None, asset
        assert node.description, asset


def test_assets_take_the_pools_that_protect_duckdb_and_the_api_budget():
    pools = {}
    for assets_def in defs.assets:
        if not isinstance(assets_def, dg.AssetsDefinition):  # the export files: observed, never run
            continue
        for key in assets_def.keys:
            pools[key.to_user_string()] = assets_def.op.pool
    assert pools["raw_applications"] == pools["opportunity_records"] == pools["sync_plan"] == "lsq_warehouse"
    assert pools["leadsquared/opportunities"] == pools["opportunity_state"] == "leadsquared_api"


def test_checks_jobs_and_schedule_are_defined():
    graph = defs.resolve_asset_graph()
    checks = {key.name for key in graph.asset_check_keys}
    assert checks == {
        "reject_rate_below_threshold", "change_share_below_threshold",
        "one_opportunity_per_record", "pushed_records_in_sync",
    }
    blocking = {key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    assert blocking == {"reject_rate_below_threshold", "change_share_below_threshold"}
    sync_job = defs.resolve_job_def("sync_job")
    dry_run = defs.resolve_job_def("dry_run_job")
    assert sync_job.partitions_def is not None
    assert {k.to_user_string() for k in dry_run.asset_layer.executable_asset_keys} == {
        "raw_applications", "raw_events", "opportunity_records", "activity_records", "rejects", "sync_plan"
    }
    schedule = defs.resolve_schedule_def("daily_sync_schedule")
    assert schedule.job_name == "sync_job"
    assert schedule.cron_schedule == "0 3 * * *"


def schedule_tick(day: int):
    """The daily schedule evaluated at 03:00 UTC on 2026-11-`day`, with the project's resources."""
    import datetime as dt

    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, day, 3, 0, tzinfo=dt.UTC),
        resources={"default_source": defs.resources["default_source"]},
        repository_def=defs.get_repository_def(),
    )
    return defs.resolve_schedule_def("daily_sync_schedule").evaluate_tick(context)


def test_schedule_runs_the_day_that_just_ended():
    requests = list(schedule_tick(15).run_requests)
    assert [r.partition_key for r in requests] == ["2026-11-14"]


def test_schedule_skips_a_day_with_no_folder_with_a_message():
    result = schedule_tick(20)
    assert not result.run_requests
    assert "nothing to sync for 2026-11-19" in result.skip_message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LSQ_RATE_LIMIT_CALLS": "many"}, "LSQ_RATE_LIMIT_CALLS"),
        ({"LSQ_RATE_LIMIT_SECONDS": "0"}, "LSQ_RATE_LIMIT_SECONDS"),
        ({"LSQ_PLAN": "gold"}, "LSQ_PLAN"),
        ({"LSQ_DAILY_CALL_LIMIT": "-1"}, "LSQ_DAILY_CALL_LIMIT"),
        ({"LSQ_BULK_RATE_LIMIT_CALLS": "x"}, "LSQ_BULK_RATE_LIMIT_CALLS"),
        ({"LSQ_API_HOST": "api-in21.leadsquared.com"}, "LSQ_ACCESS_KEY and LSQ_SECRET_KEY"),
        ({"LSQ_API_HOST": "api-in21.leadsquared.com", "LSQ_ACCESS_KEY": "u$abc"}, "LSQ_SECRET_KEY"),
    ],
)
def test_bad_settings_fail_early_naming_the_variable(monkeypatch, env, named):
    for variable in ("LSQ_API_HOST", "LSQ_ACCESS_KEY", "LSQ_SECRET_KEY"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        default_account().check_keys()
    assert named in str(raised.value)
    assert "u$abc" not in str(raised.value)


@pytest.mark.parametrize(("variable", "value"), [("LSQ_SOURCE_DIR", "no/such/dir"), ("LSQ_MAPPING", "no.yaml")])
def test_missing_paths_fail_early_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        default_account().check_paths()
