"""The UI as a person meets it: `.venv/bin/lsq-pipeline ui` started without an activated venv,
driven by headless Chromium (the system's, through Playwright): the asset graph, a 2-day
backfill launched with "Materialize all", `opportunity_state`'s page (row count, column schema,
check results) and the push's run-history metadata. Screenshots go to `test-artifacts/ui/`.

Without a browser the test skips with how to install one; under CI=true it fails instead."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import requests

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from lsq_pipeline_tests.cli.test_first_run import COMMAND, clean_env, project
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.processes import free_port, stop_group

CHROMIUM = Path(os.environ.get("LSQ_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("LSQ_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "ui"
DAYS = [FIRST_DAY, FIRST_DAY + timedelta(days=1)]
STARTUP_SECONDS = 180
BACKFILL_SECONDS = 300
RUNS = "{ runsOrError { ... on Runs { results { runId status jobName } } } }"


def _graphql(base: str, query: str) -> dict:
    answer = requests.post(f"{base}/graphql", json={"query": query}, timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]


@pytest.fixture(scope="module")
def browser_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = (f"no browser at {CHROMIUM}: install Debian's chromium (sudo apt-get install -y chromium) "
               "or point LSQ_TEST_CHROMIUM at a Chromium binary")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`lsq-pipeline ui` from .venv/bin with PATH free of the venv, in a project folder of its
    own, against a sandbox in this process; its process group is ended at the end."""
    folder = project(tmp_path_factory.mktemp("ui_project"), rows=30, days=len(DAYS))
    port = free_port()
    log_path = folder / "ui.log"
    with run_sandbox(rate_limit_calls=0) as sandbox:
        env = clean_env(LSQ_API_HOST=sandbox.url, LSQ_ACCESS_KEY=SANDBOX_ACCESS_KEY,
                        LSQ_SECRET_KEY=SANDBOX_SECRET_KEY, LSQ_MAX_REJECT_RATE="0.5")
        with open(log_path, "wb") as log:
            process = subprocess.Popen([str(COMMAND), "ui", "--port", str(port)], cwd=folder, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_served(base, process, log_path)
            yield base, folder, sandbox
        finally:
            stop_group(process)


def _wait_until_served(base: str, process: subprocess.Popen, log_path: Path) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "lsq-pipeline ui exited:\n" + log_path.read_text(errors="replace")[-3000:]
        try:
            entries = _graphql(base, query)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            entries = []
        if any(e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
               for e in entries):
            return
        time.sleep(1)
    raise AssertionError("the UI did not load the code location:\n" + log_path.read_text(errors="replace")[-3000:])


def test_ui_starts_from_the_venv_without_activation(ui):
    base, folder, _ = ui
    log = (folder / "ui.log").read_text(errors="replace")
    assert "/dagster dev -m lsq_pipeline.definitions" in log  # outside a dg project: the packaged account
    assert (folder / "instance" / "dagster.yaml").exists()
    assert requests.get(f"{base}/server_info", timeout=10).ok


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + BACKFILL_SECONDS + 240)
def test_a_person_backfills_two_days_and_reads_the_state_in_the_ui(ui, browser_path):
    from playwright.sync_api import expect, sync_playwright

    base, folder, sandbox = ui
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(browser_path), headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        page.goto(f"{base}/asset-groups")
        _dismiss_welcome(page)
        for asset in ("raw_applications", "sync_plan", "opportunities", "opportunity_state"):  # one group: no boxes
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "01_asset_graph.png")

        page.get_by_role("button", name="Materialize all").click()
        field = page.get_by_placeholder("No matching partitions")
        field.fill(f"[{DAYS[0]}...{DAYS[-1]}]")
        field.press("Enter")
        expect(page.get_by_text(f"{len(DAYS)} partitions", exact=True)).to_be_visible()
        page.screenshot(path=ARTIFACTS / "02_backfill_dialog.png")
        page.get_by_role("button", name="Launch backfill").click()
        runs = _wait_for_runs(base)
        assert {run["status"] for run in runs} == {"SUCCESS"}, runs

        warehouse = folder / "data" / "warehouse.duckdb"
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            days = {row[0] for row in conn.execute("SELECT DISTINCT day FROM sync_plan").fetchall()}
            statuses = dict(conn.execute("SELECT status, count(*) FROM opportunity_state GROUP BY ALL").fetchall())
            accepted = {row[0] for row in conn.execute("SELECT DISTINCT source_id FROM opportunity_records").fetchall()}
            state_rows = conn.execute("SELECT count(*) FROM opportunity_state").fetchone()[0]
        assert days == set(DAYS)
        assert set(statuses) <= {"in_sync", "rejected"} and statuses.get("in_sync") == len(accepted)
        remote = {o.fields.get("mx_Custom_1") for o in sandbox.backend.opportunities.values()}
        assert remote == accepted

        page.goto(f"{base}/assets/opportunity_state")
        expect(page.get_by_text("table_total_rows", exact=True).first).to_be_visible()  # the whole table, not a day's
        expect(page.get_by_text(f"{state_rows:,}", exact=True).first).to_be_visible()
        for column in ("source_id", "opportunity_id", "attempts"):
            expect(page.get_by_text(column, exact=True).first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "03_opportunity_state.png", full_page=True)

        page.goto(f"{base}/assets/leadsquared/opportunities")  # what the push materialized
        for name in ("succeeded_create", "run_api_calls_bulk_add", "failed_records", "run_items_per_second"):
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "04_push_run_history.png", full_page=True)
        page.get_by_role("tab", name="Checks").click()
        for check in ("one_opportunity_per_record", "pushed_records_in_sync"):
            expect(page.get_by_text(check).first).to_be_visible()
        expect(page.get_by_text("Passed").first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "05_checks.png", full_page=True)
        browser.close()

    # The daemon's run-status sensor wrote the UI's run to the history table.
    _wait_for(lambda: _history(warehouse), "a sync_runs row written by the sensor")
    assert {row[1] for row in _history(warehouse)} == {"succeeded"}


def _dismiss_welcome(page) -> None:
    """A new instance greets a person with a newsletter dialog: skip it, as they would."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=8_000)
    except Exception:  # noqa: BLE001 - Playwright's TimeoutError: no dialog this time
        return
    skip.click()


def _wait_for_runs(base: str) -> list[dict]:
    deadline = time.monotonic() + BACKFILL_SECONDS
    while time.monotonic() < deadline:
        runs = _graphql(base, RUNS)["runsOrError"]["results"]
        if runs and all(run["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for run in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"the backfill's runs did not finish in time: {runs}")


def _history(warehouse: Path) -> list[tuple]:
    try:
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            return conn.execute("SELECT run_id, status FROM sync_runs").fetchall()
    except duckdb.Error:
        return []


def _wait_for(condition, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")
