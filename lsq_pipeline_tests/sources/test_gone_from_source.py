"""Rows gone from a snapshot, over a real DuckDB table: a deleted row becomes gone_from_source
with nothing sent, and comes back as any record when the table has it again; a snapshot that lost
half its rows, or all of them, is stopped by the gone-share check before anything changes, and a
higher max_gone_share lets a real mass deletion through (on both warehouses, and from the
command line, whose run line counts the records gone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.orchestration.runs import run_config
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline_tests.pipeline.harness import MAPPING, Pipeline, key_variable
from lsq_pipeline_tests.sources.dg_project import TeamProject

on_both_warehouses = pytest.mark.parametrize("warehouse_backend", ["duckdb", "postgres"], indirect=True)

TABLE = "crm.loan_applications"
WRITES = ("BulkAdd", "BulkUpdate", "Capture", "LeadBulkCreate", "LeadBulkCreateOrUpdate", "OpportunityUpdate")


@dataclass
class SnapshotPipeline(Pipeline):
    """The account `acme` reading its applications from a table of a DuckDB file, as a snapshot."""

    analytics: Path = Path()

    def settings(self) -> AccountSettings:
        return AccountSettings(
            account="acme", api_host=self.sandbox_url, access_key_env=key_variable(self.access_key),
            secret_key_env=key_variable(self.secret_key), mapping=str(self.mapping), warehouse=str(self.warehouse),
            source={"applications": {"table": TABLE, "database": str(self.analytics)}},
            rate_limit_calls=0, rate_limit_db=str(self.analytics.parent / "rate_limit.sqlite"), **self.overrides,
        )

    def sync(self, max_gone_share: float | None = None, full: bool = False):
        """One snapshot run, in process (no partition), with the command line's options."""
        return self.definitions().resolve_job_def("acme_sync_job").execute_in_process(
            instance=self.instance, raise_on_error=False,
            run_config=run_config(self.settings(), full, max_gone_share=max_gone_share))

    def source(self, sql: str) -> None:
        with duckdb.connect(str(self.analytics)) as conn:
            conn.execute(sql)

    def statuses(self) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))

    def writes(self) -> dict[str, int]:
        calls = self.stats()["Calls"]
        return {name: calls[name] for name in WRITES if calls.get(name)}


def ten_applications(analytics: Path) -> None:
    """Ten applications in `crm.loan_applications` of the DuckDB file `analytics`, typed as a team keeps them."""
    with duckdb.connect(str(analytics)) as conn:
        conn.execute(f"""
            CREATE SCHEMA crm;
            CREATE TABLE {TABLE} AS
            SELECT printf('APP-%07d', n) AS application_id, 'Applicant Number' || n AS applicant_name,
                   'applicant' || n || '@mail.example' AS email, printf('09%09d', n) AS phone,
                   ['Personal Loan', 'Home Loan', 'Auto Loan'][n % 3 + 1] AS product,
                   100000 + n * 1000 AS amount, 'New' AS stage, 'priya.sharma@lendco.example' AS owner_email,
                   TIMESTAMPTZ '2026-11-01 09:00:00+00' + to_minutes(n) AS created_at,
                   TIMESTAMPTZ '2026-11-01 09:30:00+00' + to_minutes(n) AS updated_at
            FROM range(1, 11) AS t(n)""")


@pytest.fixture
def pipeline(tmp_path: Path, sandbox, warehouse_target) -> SnapshotPipeline:
    analytics = tmp_path / "analytics.duckdb"
    ten_applications(analytics)
    return SnapshotPipeline(source_dir=tmp_path, warehouse=warehouse_target, sandbox_url=sandbox.url,
                            mapping=MAPPING, analytics=analytics)


def _metadata(result, step: str) -> dict[str, object]:
    [materialization] = [m for m in result.asset_materializations_for_node(f"acme__{step}")
                         if m.asset_key.path[-1] == step]
    return {name: value.value for name, value in materialization.metadata.items()}


def _failed_checks(result) -> set[str]:
    return {event.event_specific_data.check_name for event in result.all_events
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
            and not event.event_specific_data.passed}


@on_both_warehouses
def test_a_deleted_row_is_gone_with_nothing_sent_and_comes_back_as_any_record(pipeline):
    assert pipeline.sync().success
    assert pipeline.statuses() == {"in_sync": 10}
    held = pipeline.remote()

    pipeline.source(f"DELETE FROM {TABLE} WHERE application_id = 'APP-0000004'")
    before = pipeline.writes()
    gone = pipeline.sync(full=True)  # a full read-back too: it leaves the gone record alone
    assert gone.success
    assert _metadata(gone, "sync_plan")["planned_gone"] == 1
    assert _metadata(gone, "opportunity_state")["run_gone_from_source"] == 1
    assert pipeline.statuses() == {"in_sync": 9, "gone_from_source": 1}
    assert pipeline.writes() == before, "nothing is sent for a gone record"
    assert pipeline.remote() == held, "LeadSquared holds what it held"
    assert pipeline.query("SELECT source_id, opportunity_id IS NOT NULL, error FROM opportunity_state "
                          "WHERE status = 'gone_from_source'")[0][:2] == ("APP-0000004", True)

    again = pipeline.sync()  # still gone: not counted again, still nothing sent
    assert again.success and _metadata(again, "sync_plan")["planned_gone"] == 0
    assert pipeline.writes() == before

    pipeline.source(f"""INSERT INTO {TABLE} SELECT 'APP-0000004', 'Applicant Number4', 'applicant4@mail.example',
                        '09000000004', 'Home Loan', 104000, 'New', 'priya.sharma@lendco.example',
                        TIMESTAMPTZ '2026-11-01 09:04:00+00', TIMESTAMPTZ '2026-11-01 09:34:00+00'""")
    back = pipeline.sync()
    assert back.success
    assert _metadata(back, "opportunity_state")["run_back_in_source"] == 1
    assert pipeline.statuses() == {"in_sync": 10}  # unchanged: read back, nothing sent
    assert pipeline.writes() == before and len(pipeline.remote()) == 10


@on_both_warehouses
def test_a_snapshot_that_lost_half_its_rows_stops_before_the_push_unless_let_through(pipeline):
    assert pipeline.sync().success
    pipeline.source(f"DELETE FROM {TABLE} WHERE application_id <= 'APP-0000005'")
    before, held = pipeline.writes(), pipeline.remote()

    blocked = pipeline.sync()
    assert not blocked.success
    assert _failed_checks(blocked) == {"gone_share_below_threshold"}
    assert pipeline.record(blocked)["status"] == "blocked"
    assert pipeline.statuses() == {"in_sync": 10}, "nothing is marked gone by a stopped run"
    assert pipeline.writes() == before and pipeline.remote() == held

    allowed = pipeline.sync(max_gone_share=0.6)  # what `lsq-pipeline sync --max-gone-share 0.6` runs
    assert allowed.success
    assert pipeline.statuses() == {"in_sync": 5, "gone_from_source": 5}
    assert pipeline.writes() == before


@on_both_warehouses
def test_an_empty_snapshot_is_stopped_by_the_check_not_taken_as_a_wipe(pipeline):
    assert pipeline.sync().success
    pipeline.source(f"DELETE FROM {TABLE}")
    blocked = pipeline.sync()
    assert not blocked.success and _failed_checks(blocked) == {"gone_share_below_threshold"}
    assert pipeline.statuses() == {"in_sync": 10}


@on_both_warehouses
def test_only_a_snapshot_account_has_the_gone_share_check(pipeline):
    def plan_checks(definitions: dg.Definitions) -> set[str]:
        job = definitions.resolve_job_def("acme_sync_job")
        return {key.name for key in job.asset_layer.asset_graph.asset_check_keys}

    assert "gone_share_below_threshold" in plan_checks(pipeline.definitions())
    daily = AccountSettings(**{**pipeline.settings().model_dump(exclude={"source"}),
                               "source_dir": str(pipeline.source_dir), "first_day": "2026-11-01"})
    assert "change_share_below_threshold" in plan_checks(build_definitions(daily))
    assert "gone_share_below_threshold" not in plan_checks(build_definitions(daily))


@pytest.mark.timeout(300)
def test_the_command_line_counts_the_gone_records_and_its_flag_lets_them_through(team: TeamProject):
    ten_applications(team.analytics)
    team.add_account("acme", {"applications": {"table": TABLE, "database": "data/analytics.duckdb"}})
    team.sync("acme")  # its warehouse's folder, data/acme/, is made by the run
    with duckdb.connect(str(team.analytics)) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE application_id <= 'APP-0000005'")

    stopped = team.sync("acme", ok=False)
    assert stopped.returncode == 1 and "gone from source   5" in stopped.stdout, stopped.stdout
    # The command says why, and which flag lets one run past the guard; not "run it again".
    assert "Stopped by gone_share_below_threshold: the snapshot lacks 50% of the 10 known records" in stopped.stdout
    assert "lsq-pipeline sync --account acme --max-gone-share N" in stopped.stdout, stopped.stdout
    assert "Running it again is safe" not in stopped.stdout
    assert team.statuses("acme") == {"in_sync": 10}
    let_through = team.sync("acme", "--max-gone-share", "0.6")
    assert "gone from source   5" in let_through.stdout and "succeeded" in let_through.stdout
    assert team.statuses("acme") == {"in_sync": 5, "gone_from_source": 5}
    (team.root / "data" / "exports").mkdir()
    team.add_account("daily", {"applications": {"files": "data/exports"}}, first_day="2026-11-01")
    refused = team.sync("daily", "--partition", "2026-11-01", "--max-gone-share", "0.6", ok=False)
    assert refused.returncode == 2 and "--max-gone-share is for a snapshot source" in refused.stderr
    # A source that cannot be read fails its step: the command names the step and the cause.
    team.add_account("broken", {"applications": {"table": "analytics.no_such_table", "database": "data/analytics.duckdb"}})
    failed = team.sync("broken", ok=False)
    assert failed.returncode == 1, failed.stdout
    assert "Failed: broken__extract: SourceError: " in failed.stdout, failed.stdout  # the step's error, not Dagster's wrapper
    assert "no_such_table does not exist" in failed.stdout, failed.stdout
    [(reason,)] = team.warehouse("broken", "SELECT reason FROM sync_runs WHERE status = 'failed'")
    assert reason.startswith("broken__extract: SourceError: ") and "no_such_table does not exist" in reason, reason
    assert "Running it again is safe" in failed.stdout
