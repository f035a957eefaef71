"""A real dbt project as the source, in one dg project with dagster-dbt's DbtProjectComponent: a
seed and two models built by `dbt build` (a table, and a view whose SQL names the DuckDB file's
stem), two accounts each reading one model by its asset key alone, the lineage in `dg list defs`
starting at the dbt models, every record of each in sync (dbt and the sync also materialized in one
`dg launch`), and a changed seed row sent as one Bulk Update of the changed fields."""

from __future__ import annotations

import json

import pytest

from lsq_pipeline_tests.sources.dg_project import TeamProject

ACCOUNTS = {"acme": "loan_applications", "globex": "loan_applications_view"}
"""Each account and the dbt model it reads: the table, and the view."""
ROWS = 6  # the seed's applications
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}  # one process: the run's steps start faster


def _built(team: TeamProject, accounts: dict[str, str] = ACCOUNTS) -> TeamProject:
    """The dbt project built into its DuckDB file (no `dg` call yet: dagster-dbt reads the manifest
    `dbt build` left in the project), and an account on each model of `accounts`."""
    team.add_dbt_project()
    team.dbt("build")
    for account, model in accounts.items():
        team.add_account(account, {"applications": {"database": str(team.analytics), "asset": model}})
    return team


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_dbt_models_are_upstream_of_the_extract_as_executable_dbt_assets(team):
    assets = _built(team).listed_assets()
    for account, model in ACCOUNTS.items():
        assert model in assets[f"{account}/raw_applications"]["dependency_keys"]
        assert assets[model]["is_executable"] and "dbt" in assets[model]["kinds"]  # not a dangling external
        assert f"{account}/source/applications" not in assets  # the model stands for the source
    assert (team.defs / ".local_defs_state").is_dir()  # dagster-dbt parsed its copy of the project


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_dbt_view_naming_its_file_stem_syncs_in_full(team):
    _built(team, {"globex": "loan_applications_view"})
    team.sync("globex")
    assert team.statuses("globex") == {"in_sync": ROWS}
    assert len(team.sandbox("globex", "opportunities")["Opportunities"]) == ROWS


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_dbt_table_and_the_sync_materialized_in_one_run_end_in_sync_and_a_changed_row_is_one_update(team):
    team.add_dbt_project()
    team.add_account("acme", {"applications": {"database": str(team.analytics), "asset": "loan_applications"}})
    # Dagster runs dbt from its copy of the project (the profile's absolute path), then the sync.
    team.run("dg", "launch", "--assets", "*", "--config-json", json.dumps(IN_PROCESS))
    assert team.statuses("acme") == {"in_sync": ROWS}

    team.set_seed_value("APP-0000003", amount="2700000", updated_at="2026-11-04 10:00:00")
    team.dbt("build")
    before = team.writes("acme")
    team.sync("acme")

    assert team.sent_since("acme", before) == {"BulkUpdate": 1}
    [payload] = [json.loads(row[0]) for row in team.warehouse(
        "acme", "SELECT payload FROM push_journal WHERE kind = 'update'")]
    assert sorted(field["SchemaName"] for field in payload["Fields"]) == ["mx_Custom_3", "mx_Custom_7"]
    [opportunity] = [opportunity for opportunity in team.sandbox("acme", "opportunities")["Opportunities"]
                     if opportunity["Fields"]["mx_Custom_1"] == "APP-0000003"]
    assert opportunity["Fields"]["mx_Custom_3"] == "2700000"
    assert team.statuses("acme") == {"in_sync": ROWS}
