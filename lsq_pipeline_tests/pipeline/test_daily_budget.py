"""The day's call budget in the whole flow: the push stops cleanly when LeadSquared refuses for the
day, the records not sent stay planned, the run says so, and the next day's re-run finishes the
work with no double. Plans and overrides come from the environment."""

from __future__ import annotations

import os
import shutil
import subprocess

import dagster as dg
import pytest
import requests

from lsq_pipeline.orchestration.definitions import build_resources
from lsq_pipeline.leadsquared import AccountLimits, WindowLimit
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from lsq_pipeline_tests.accounts import default_account
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.chaos.checks import subprocess_env
from lsq_pipeline_tests.pipeline.harness import REPO, Pipeline

DAILY_LIMIT = 12


def _push_metadata(result) -> dict:
    """What the push's materializations say, of both assets (their run_* figures are distinct)."""
    return {key: value.value for m in result.asset_materializations_for_node("push") for key, value in m.metadata.items()}


def _reconcile_metadata(result) -> dict:
    return {key: value.value for key, value in result.asset_materializations_for_node("opportunity_state")[0].metadata.items()}


def test_the_push_stops_at_the_daily_count_and_the_next_day_finishes_without_a_double(tmp_path, start_sandbox,
                                                                                      warehouse_target) -> None:
    source = tmp_path / "source"
    generate(source, rows=60, days=1, seed=11, start_day=FIRST_DAY, dirty_rate=0.0)
    sandbox = start_sandbox(daily_limit=DAILY_LIMIT)
    pipeline = Pipeline(source_dir=source, warehouse=warehouse_target, sandbox_url=sandbox.url)
    spent_days = 0
    reconcile_skipped = []
    for _ in range(20):  # each run gets one day of 12 calls
        result = pipeline.run(FIRST_DAY)
        assert result.success
        metadata = _push_metadata(result)
        if not metadata["run_daily_budget_exhausted"]:
            break
        spent_days += 1
        reconcile_skipped.append(_reconcile_metadata(result)["run_daily_budget_exhausted"])
        waiting = metadata["run_records_waiting"] + metadata["run_activities_waiting"]
        assert waiting > 0
        # Nothing is lost: every planned record is synced, pending, failed, or waits in the plan.
        assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'sent'") == 0
        requests.post(f"{sandbox.url}/sandbox/day", headers=pipeline.key_headers(), timeout=5).raise_for_status()
    else:
        pytest.fail("the sync never finished")
    stats = pipeline.stats()
    remote = pipeline.remote_by_source()
    assert spent_days >= 2, "the sync fitted in one day: the test proves nothing"
    assert any(reconcile_skipped)  # the read-back met the spent day too, and the run still succeeded
    assert stats["Refused"]["general"]["daily"] >= spent_days
    planned = pipeline.scalar("SELECT count(DISTINCT source_id) FROM opportunity_records")
    assert len(remote) == planned
    assert all(len(opportunities) == 1 for opportunities in remote.values()), "a record got two opportunities"
    statuses = dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))
    assert statuses.get("in_sync", 0) == planned, statuses
    assert pipeline.scalar("SELECT count(*) FROM push_journal WHERE status = 'not_sent'") > 0


def test_plan_and_overrides_from_the_environment_reach_the_client(monkeypatch, tmp_path, start_sandbox) -> None:
    for variable, value in {
        "LSQ_PLAN": "Pro",
        "LSQ_BULK_RATE_LIMIT_CALLS": "2",
        "LSQ_DAILY_CALL_LIMIT": "5000",
        "LSQ_BULK_COUNTS_AGAINST_GENERAL": "false",
        "LSQ_RATE_LIMIT_DB": str(tmp_path / "budget.sqlite"),
    }.items():
        monkeypatch.setenv(variable, value)
    settings = default_account()
    assert settings.account_limits() == AccountLimits(WindowLimit(5, 5.0), WindowLimit(2, 5.0), 5000, False)
    monkeypatch.setenv("LSQ_ACCESS_KEY", SANDBOX_ACCESS_KEY)
    monkeypatch.setenv("LSQ_SECRET_KEY", SANDBOX_SECRET_KEY)
    sandbox = start_sandbox()
    with dg.build_resources(
        build_resources(settings.model_copy(update={"api_host": sandbox.url, "sandbox": False}))
    ) as resources:
        client = resources.default_leadsquared.get_client()
        assert client.budget.limits == settings.account_limits()
        assert {name: w.calls for name, w in client.budget.windows.items()} == {"general": 5, "bulk": 2}


def test_a_redis_url_never_shows_in_the_resource(monkeypatch) -> None:
    monkeypatch.setenv("LSQ_RATE_LIMIT_REDIS", "redis://:s3cret-password@127.0.0.1:6390/0")
    resource = build_resources(default_account())["default_leadsquared"]
    assert "s3cret-password" not in repr(resource) and "s3cret-password" not in str(resource)
    assert isinstance(resource, dg.ConfigurableResource)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_command_line_says_the_day_is_spent_and_exits_3(tmp_path, start_sandbox, warehouse_target) -> None:
    source = tmp_path / "source"
    generate(source, rows=40, days=1, seed=5, start_day=FIRST_DAY, dirty_rate=0.0)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    sandbox = start_sandbox(daily_limit=DAILY_LIMIT)
    env = subprocess_env(os.environ, sandbox_url=sandbox.url, source=source, warehouse=warehouse_target,
                         dagster_home=home, rate_limit_db=tmp_path / "rate_limit.sqlite")
    # One Capture per record, so the day is spent among the creates (in bulk, 40 rows' leads
    # and opportunities take three calls and the day would be spent among the activities).
    env["LSQ_LEADS_IN_BULK"] = "false"
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "lsq-pipeline"), "sync", "--partition", FIRST_DAY.isoformat()],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("daily call budget spent"))
    waiting = int(line.split(": ")[1].split(" ")[0])
    assert waiting > 0
    assert line == f"daily call budget spent: {waiting} records wait; the next run after 00:00 UTC continues"
