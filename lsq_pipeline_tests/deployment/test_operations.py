"""Operations the way Dagster does them, checked on Dagster's own daemons:

- freshness: `dagster-daemon run` on the shipped instance evaluates the source assets' cron
  freshness policy; an export that does not come shows as stale (FAIL), one that arrives makes
  its asset fresh (PASS) again, reported by the `source_files_arrived` sensor;
- run retries: under `dagster dev`, a run launched through GraphQL (as the launchpad does) whose
  run worker gets `kill -9` in the middle of its push is retried by the instance's `run_retries`
  and the retry ends with every promise kept; a run stopped by a blocking check is not retried.

Real processes (each in its own process group, killed with it), real files, the sandbox over
real HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import yaml

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEventType
from dagster._core.instance.utils import RUNLESS_RUN_ID

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.sandbox.server import RunningSandbox
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import ChaosPipeline, subprocess_env
from lsq_pipeline_tests.deployment.harness import (
    LAUNCH_RUN, REPO, STARTUP_SECONDS, graphql, start, tail, wait_for_location, wait_until,
)
from lsq_pipeline_tests.pipeline.harness import MAPPING, rewrite_rows
from lsq_pipeline_tests.processes import free_port, stop_group

APPLICATIONS = dg.AssetKey(["source", "applications"])
EVENTS = dg.AssetKey(["source", "events"])
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


# --------------------------------------------------------------------------------------------
# Shared helpers: a project folder, an export file arriving.
# --------------------------------------------------------------------------------------------

def project_folder(folder: Path, monitoring_poll_seconds: int | None = None) -> Path:
    """data/mapping.yaml, workspace.yaml and a DAGSTER_HOME holding the shipped dagster.yaml;
    returns the home. `monitoring_poll_seconds` shortens only run monitoring's poll (which frees
    a dead run's pool slots) in the copy; run_retries stay as shipped, and are checked to be."""
    (folder / "data").mkdir(parents=True)
    shutil.copy(MAPPING, folder / "data" / "mapping.yaml")
    shutil.copy(REPO / "workspace.yaml", folder / "workspace.yaml")
    home = folder / "dagster_home"
    home.mkdir()
    shipped = yaml.safe_load((REPO / "instance" / "dagster.yaml").read_text())
    assert shipped["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}, shipped["run_retries"]
    assert shipped["run_monitoring"]["enabled"] is True
    if monitoring_poll_seconds is None:
        shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    else:
        shipped["run_monitoring"]["poll_interval_seconds"] = monitoring_poll_seconds
        (home / "dagster.yaml").write_text(yaml.safe_dump(shipped))
    return home


def place(source_day: Path, target_day: Path, file_name: str) -> None:
    """An export file arrives: written under another name, then renamed (never seen half written)."""
    target_day.mkdir(parents=True, exist_ok=True)
    partial = target_day / f".{file_name}.part"
    shutil.copy(source_day / file_name, partial)
    partial.rename(target_day / file_name)


# --------------------------------------------------------------------------------------------
# 1. Freshness
# --------------------------------------------------------------------------------------------

STALE_SECONDS = 150  # a deadline more than a minute after the report: at most two minutes and polls
ARRIVAL_SECONDS = 75  # the sensor looks every 30 s


def freshness(instance: dg.DagsterInstance) -> dict[dg.AssetKey, FreshnessState]:
    records = instance.get_freshness_state_records([APPLICATIONS, EVENTS])
    return {key: record.freshness_state for key, record in records.items()}


def freshness_changes(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[str]:
    """The states the daemon reported for `key` (runless FRESHNESS_STATE_CHANGE events), oldest first."""
    entries = instance.all_logs(RUNLESS_RUN_ID, of_type=DagsterEventType.FRESHNESS_STATE_CHANGE)
    return [data.new_state.value for entry in entries
            if (data := entry.dagster_event.event_specific_data).key == key]


def after_unknown(changes: list[str]) -> list[str]:
    return changes[1:] if changes[:1] == ["UNKNOWN"] else changes


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + STALE_SECONDS + ARRIVAL_SECONDS + 60)
def test_freshness_daemon_reports_a_missing_export_as_stale(tmp_path):
    """A schedule of every minute gives the policy a one-minute window before each minute. The
    exports of the first day are reported at once (fresh); nothing more comes, so both source
    assets go stale at the next deadline but one. Then the second day's events.csv arrives: its
    asset is fresh again, while the one whose applications.csv is missing stays stale."""
    today = datetime.now(timezone.utc).date()
    first, second = today - timedelta(days=3), today - timedelta(days=2)
    home = project_folder(tmp_path / "project")
    exports = tmp_path / "exports"  # the files as the exporting system will deliver them
    generate(exports, rows=20, days=2, seed=19, start_day=first, dirty_rate=0.0)
    source = tmp_path / "project" / "data" / "source"
    for file_name in ("applications.csv", "events.csv"):
        place(exports / first.isoformat(), source / first.isoformat(), file_name)

    env = subprocess_env(
        os.environ, sandbox_url="http://127.0.0.1:9", source=source, warehouse=tmp_path / "warehouse.duckdb",
        dagster_home=home, rate_limit_db=tmp_path / "rate_limit.sqlite",
    )
    env.update(LSQ_SCHEDULE="* * * * *", LSQ_FIRST_DAY=first.isoformat(), LSQ_FILE_SETTLE_SECONDS="0",
               FRESHNESS_DAEMON_INTERVAL_SECONDS="2")
    log = tmp_path / "daemon.log"
    # The storage is made here first, so that two processes never create its tables at once.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        daemon = start(["dagster-daemon", "run", "-w", "workspace.yaml"], tmp_path / "project", env, log)
        started = time.monotonic()
        try:
            def states(*wanted: FreshnessState):
                now = freshness(instance)
                return now if [now.get(APPLICATIONS), now.get(EVENTS)] == list(wanted) else None

            # The sensor reports the first day's files; the policy's evaluation finds them fresh.
            wait_until("both source assets PASS after the first day's exports", lambda: states(
                FreshnessState.PASS, FreshnessState.PASS), STARTUP_SECONDS, log=log, process=daemon)
            arrived = time.monotonic()
            # No export since: stale once a deadline lies more than a minute after the report.
            wait_until("both source assets FAIL (no export for a minute and more)", lambda: states(
                FreshnessState.FAIL, FreshnessState.FAIL), STALE_SECONDS, log=log, process=daemon)
            stale_after = time.monotonic() - arrived
            assert stale_after > 55, f"stale {stale_after:.0f}s after the report: the window is not the cron's minute"
            # The second day's events arrive, its applications do not.
            place(exports / second.isoformat(), source / second.isoformat(), "events.csv")
            wait_until("source/events PASS once its export arrived, source/applications still FAIL", lambda: states(
                FreshnessState.FAIL, FreshnessState.PASS), ARRIVAL_SECONDS, log=log, process=daemon)

            # What the daemon reported, in order (the UI's freshness history); it starts UNKNOWN only
            # when its first evaluation came before the sensor's first report.
            assert after_unknown(freshness_changes(instance, APPLICATIONS)) == ["PASS", "FAIL"]
            assert after_unknown(freshness_changes(instance, EVENTS)) == ["PASS", "FAIL", "PASS"]
            # The state table has the same policy; never materialized here, its state is unknown.
            assert freshness_changes(instance, dg.AssetKey("opportunity_state")) == ["UNKNOWN"]
            # The sensor's reports are materializations of each day's partition that has its file.
            assert instance.get_materialized_partitions(APPLICATIONS) == {first.isoformat()}
            assert instance.get_materialized_partitions(EVENTS) == {first.isoformat(), second.isoformat()}
        finally:
            stop_group(daemon)
    print(f"\nfreshness: stale {stale_after:.0f}s after the last export, test {time.monotonic() - started:.0f}s")


# --------------------------------------------------------------------------------------------
# 2. Run retries
# --------------------------------------------------------------------------------------------

RETRY_SECONDS = 240
KILL_LATENCY_MS = 3000  # every API call of the killed run takes 3 s: it dies with a call in the air
STARTED_PROCESS = re.compile(r"Started process for run \(pid: (\d+)\)")
NOT_RETRIED = "Not retrying run since it failed due to an asset or op failure"


@dataclass
class Deployment:
    url: str
    instance: dg.DagsterInstance
    sandbox: RunningSandbox
    pipeline: ChaosPipeline
    log: Path
    process: subprocess.Popen
    kill_day: date
    block_day: date

    def launch(self, day: date, assets: list[list[str]] | None = None) -> str:
        """A sync_job run of `day`, launched as the launchpad does: queued, then started by the
        daemon; with `assets`, a run of those assets on Dagster's implicit asset job, as the UI's
        "Materialize" launches it (no job tags)."""
        selector = {"repositoryLocationName": "lsq_pipeline", "repositoryName": "__repository__",
                    "jobName": "sync_job" if assets is None else "__ASSET_JOB"}
        if assets is not None:
            selector["assetSelection"] = [{"path": path} for path in assets]
        launched = graphql(self.url, LAUNCH_RUN, {"params": {
            "selector": selector,
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day.isoformat()}]},
        }})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def run(self, run_id: str) -> dg.DagsterRun:
        return self.instance.get_run_by_id(run_id)

    def wait_finished(self, run_id: str, timeout: float) -> dg.DagsterRun:
        """The run once it ended; a failed one once Dagster has also tagged whether it will be
        retried (`dagster/will_retry` is added just after the status)."""
        def finished() -> dg.DagsterRun | None:
            run = self.run(run_id)
            ended = run.status in TERMINAL and (run.status != dg.DagsterRunStatus.FAILURE
                                                or "dagster/will_retry" in run.tags)
            return run if ended else None

        return wait_until(f"run {run_id} to finish", finished, timeout, log=self.log, process=self.process)

    def children(self, run_id: str) -> list[dg.DagsterRun]:
        return [record.dagster_run for record in self.instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))]

    def engine_messages(self, run_id: str) -> list[str]:
        return [entry.message or entry.user_message for entry in self.instance.all_logs(
            run_id, of_type=DagsterEventType.ENGINE_EVENT)]

    def set_latency(self, milliseconds: float) -> None:
        server = self.sandbox.server
        server.options = server.options.model_copy(update={"latency_ms": milliseconds})

    def calls(self, endpoint: str) -> int:
        return self.pipeline.stats()["Calls"].get(endpoint, 0)


def blocked_day_exports(exports: Path, day: date, target: Path) -> None:
    """A day with 30% dirty rows, its records and events under ids no other day uses."""
    generate(exports, rows=40, days=1, seed=23, start_day=day, dirty_rate=0.3)
    for file_name in ("applications.csv", "events.csv"):
        rewrite_rows(exports / day.isoformat() / file_name, lambda row: {
            name: (value or "").replace("APP-", "BLK-").replace("EVT-", "EVB-") for name, value in row.items()})
        place(exports / day.isoformat(), target / day.isoformat(), file_name)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """`dagster dev -w workspace.yaml` on a free loopback port, on a copy of the shipped instance
    (run monitoring polling every 5 s), the account's reject limit at 1%; a day of clean exports
    (for the killed run) and a day of dirty ones (for the blocked run); the sandbox in this process."""
    tmp = tmp_path_factory.mktemp("operations")
    folder = tmp / "project"
    home = project_folder(folder, monitoring_poll_seconds=5)
    source = folder / "data" / "source"
    today = datetime.now(timezone.utc).date()
    kill_day, block_day = today - timedelta(days=3), today - timedelta(days=2)
    generate(tmp / "clean", rows=40, days=1, seed=17, start_day=kill_day, dirty_rate=0.0)
    for file_name in ("applications.csv", "events.csv"):
        place(tmp / "clean" / kill_day.isoformat(), source / kill_day.isoformat(), file_name)
    blocked_day_exports(tmp / "dirty", block_day, source)

    warehouse = tmp / "warehouse.duckdb"
    log = tmp / "dagster_dev.log"
    port = free_port()
    with run_sandbox(rate_limit_calls=0, latency_ms=5) as sandbox:
        env = subprocess_env(os.environ, sandbox_url=sandbox.url, source=source, warehouse=warehouse,
                             dagster_home=home, rate_limit_db=tmp / "rate_limit.sqlite")
        env.update(LSQ_MAX_REJECT_RATE="0.01", LSQ_FIRST_DAY=kill_day.isoformat())
        process = start(["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                        folder, env, log)
        try:
            url = f"http://127.0.0.1:{port}/graphql"
            wait_for_location(url, process, log)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield Deployment(url, instance, sandbox, ChaosPipeline(source_dir=source, warehouse=warehouse,
                                                                       sandbox_url=sandbox.url),
                                 log, process, kill_day, block_day)
        finally:
            stop_group(process)


def read_warehouse(check, attempts: int = 20):
    """`check()` over the warehouse, again while a sensor of the daemon holds its write lock."""
    for attempt in range(attempts):
        try:
            return check()
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def assert_day_synced(pipeline: ChaosPipeline, day: date) -> dict[str, int]:
    """Every promise for the day's records (the only ones ever sent to this sandbox): one
    opportunity per accepted record holding its latest accepted values, none for anything else,
    every accepted record `in_sync` and naming that opportunity, every accepted event created
    once and no activity sent twice."""
    accepted = dict(pipeline.query(
        """SELECT source_id, fields FROM opportunity_records WHERE day = ?
           QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY source_updated_at DESC) = 1""", [day]))
    assert accepted, "nothing accepted"
    remote = pipeline.remote_by_source()
    doubled = {source_id: len(opps) for source_id, opps in remote.items() if len(opps) != 1}
    assert not doubled, f"records with more than one opportunity: {doubled}"
    assert set(remote) == set(accepted), (
        f"lost: {sorted(set(accepted) - set(remote))[:10]}, unexpected: {sorted(set(remote) - set(accepted))[:10]}")
    wrong = [(source_id, name, value, remote[source_id][0]["Fields"].get(name))
             for source_id, fields in accepted.items()
             for name, value in json.loads(fields).items()
             if name != "mx_Custom_19" and remote[source_id][0]["Fields"].get(name) != value]
    assert not wrong, f"{len(wrong)} fields differ from the source, e.g. {wrong[:5]}"
    states = {source_id: (status, opportunity_id) for source_id, status, opportunity_id in pipeline.query(
        "SELECT source_id, status, opportunity_id FROM opportunity_state")}
    not_in_sync = {s: states.get(s) for s in accepted
                   if states.get(s, (None, None)) != ("in_sync", remote[s][0]["ProspectOpportunityId"])}
    assert not not_in_sync, f"{len(not_in_sync)} accepted records not in_sync on their opportunity: " \
                            f"{list(not_in_sync.items())[:5]}"
    resent = pipeline.query(
        """SELECT event_id, count(*) FROM push_journal WHERE kind = 'activity' AND status IN ('ok', 'unknown', 'sent')
           GROUP BY event_id HAVING count(*) > 1""")
    assert not resent, f"activities sent again: {resent[:5]}"
    events = dict(pipeline.query(
        "SELECT DISTINCT event_id, activity_event FROM activity_records WHERE day = ? AND source_id IN "
        "(SELECT source_id FROM opportunity_records)", [day]))
    activity_state = {event_id: (status, activity_id) for event_id, status, activity_id in pipeline.query(
        "SELECT event_id, status, activity_id FROM activity_state")}
    unsettled = [e for e in events if activity_state.get(e, (None,))[0] != "created"]
    assert not unsettled, f"{len(unsettled)} accepted events not created: {unsettled[:5]}"
    # The activities the events became (not LeadSquared's own, e.g. DuplicateDetected): one each.
    codes = {int(code) for code in events.values()}
    held = {a["ProspectActivityId"] for a in pipeline.remote("activities")
            if a.get("OpportunityId") and a.get("ActivityEvent") is not None and int(a["ActivityEvent"]) in codes}
    assert held == {activity_state[e][1] for e in events}, \
        f"{len(held)} activities in LeadSquared for {len(events)} events"
    return {"records": len(accepted), "activities": len(events)}


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + RETRY_SECONDS + 60)
def test_a_run_whose_worker_is_killed_is_retried_and_keeps_every_promise(deployment):
    """Every API call takes 3 s; when the push's first bulk create is in the air the run worker gets
    SIGKILL. Dagster marks the run failed (not a step failure), the instance's run_retries launch
    one retry from the failed steps, and it resolves what the dead worker left in the air: one
    opportunity per record, every record in_sync, every event one activity."""
    d = deployment
    started = time.monotonic()
    d.set_latency(KILL_LATENCY_MS)
    run_id = d.launch(d.kill_day)

    def worker_pid():
        for message in d.engine_messages(run_id):
            if match := STARTED_PROCESS.search(message or ""):
                return int(match.group(1))
        return None

    pid = wait_until("the run worker's pid", worker_pid, 90, log=d.log, process=d.process)
    # Mid-push: the opportunities' first bulk create is in the air (answered 3 s after it came).
    wait_until("the push's first BulkAdd", lambda: d.calls("BulkAdd") >= 1 or d.run(run_id).is_finished,
               90, every=0.1, log=d.log, process=d.process)
    assert d.run(run_id).status == dg.DagsterRunStatus.STARTED, f"the run ended before the kill: {d.run(run_id)}"
    assert os.getpgid(pid) == d.process.pid, f"pid {pid} is not a process of this deployment"
    os.kill(pid, signal.SIGKILL)
    d.set_latency(5)
    # The create that was in the air lands in LeadSquared; its answer went nowhere.
    wait_until("the in-flight create to land", lambda: d.pipeline.stats()["Opportunities"] > 0, 30)

    failed = d.wait_finished(run_id, 60)
    assert failed.status == dg.DagsterRunStatus.FAILURE, failed
    # Dagster saw the worker die (the code server that launched it reports the signal; run
    # monitoring gives the dead run's pool slots back to the retry) and not as a failed step.
    assert any(f"Run execution process for {run_id} was terminated by signal 9" in (m or "")
               for m in d.engine_messages(run_id)), d.engine_messages(run_id)
    assert failed.tags.get("dagster/failure_reason") != "STEP_FAILURE", failed.tags
    children = wait_until("the automatic retry", lambda: d.children(run_id), 60, log=d.log, process=d.process)
    assert len(children) == 1, children
    retry = d.wait_finished(children[0].run_id, RETRY_SECONDS - 90)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, (retry, tail(d.log))
    assert retry.tags["dagster/retry_number"] == "1"
    assert retry.tags["dagster/partition"] == d.kill_day.isoformat()
    assert d.run(run_id).tags.get("dagster/will_retry") == "true"
    assert not d.children(retry.run_id), "the successful retry was retried"

    synced = read_warehouse(lambda: assert_day_synced(d.pipeline, d.kill_day))
    journal_runs = {row[0] for row in read_warehouse(lambda: d.pipeline.query(
        "SELECT DISTINCT run_id FROM push_journal"))}
    assert journal_runs == {run_id, retry.run_id}, journal_runs  # the killed run had sent, the retry finished
    print(f"\nkilled worker {pid} of run {run_id}; retry {retry.run_id} succeeded; {synced}; "
          f"{time.monotonic() - started:.0f}s")


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + RETRY_SECONDS)
def test_a_run_stopped_by_a_blocking_check_is_not_retried(deployment):
    """A day with 30% dirty rows against a 1% reject limit: the blocking check stops the run
    before the push; the run is tagged will_retry=false, the retry daemon says why, and no retry
    run appears."""
    d = deployment
    started = time.monotonic()
    run_id = d.launch(d.block_day)
    failed = d.wait_finished(run_id, 150)
    assert failed.status == dg.DagsterRunStatus.FAILURE, failed
    assert failed.tags.get("dagster/will_retry") == "false", failed.tags
    blocked = [entry.dagster_event.event_specific_data for entry in d.instance.all_logs(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)]
    assert any(e.check_name == "reject_rate_below_threshold" and not e.passed for e in blocked), blocked
    # The retry daemon looked at the failed run and said why it does not retry it; nothing comes after.
    wait_until("the retry daemon's word on the run", lambda: any(
        NOT_RETRIED in (m or "") for m in d.engine_messages(run_id)), 60, log=d.log, process=d.process)
    time.sleep(15)  # three more ticks of the retry daemon (every 5 s)
    assert not d.children(run_id), "a run stopped by a blocking check was retried"
    assert not any(s and s.startswith("BLK-") for s in d.pipeline.remote_by_source()), "the blocked day was sent"
    print(f"\nblocked run {run_id} not retried; {time.monotonic() - started:.0f}s")


def test_a_ui_materialize_carries_the_accounts_tags_and_a_blocked_one_is_not_retried(deployment):
    """The UI's "Materialize" of the blocked day's assets runs on __ASSET_JOB, which has no tags
    of the account's jobs: its first step stores them, so the retry daemon leaves the blocked run
    alone as it does a job's."""
    d = deployment
    assets = [["raw_applications"], ["raw_events"], ["opportunity_records"], ["activity_records"], ["rejects"],
              ["sync_plan"], ["leadsquared", "opportunities"], ["leadsquared", "activities"], ["opportunity_state"]]
    run_id = d.launch(d.block_day, assets)
    failed = d.wait_finished(run_id, 150)
    assert failed.job_name == "__ASSET_JOB" and failed.status == dg.DagsterRunStatus.FAILURE, failed
    assert failed.tags.get("lsq_pipeline/account") == "default", failed.tags
    assert failed.tags.get("dagster/retry_on_asset_or_op_failure") == "false", failed.tags
    assert failed.tags.get("dagster/will_retry") == "false", failed.tags
    wait_until("the retry daemon's word on the run", lambda: any(
        NOT_RETRIED in (m or "") for m in d.engine_messages(run_id)), 60, log=d.log, process=d.process)
    time.sleep(15)  # three more ticks of the retry daemon (every 5 s)
    assert not d.children(run_id), "a UI run stopped by a blocking check was retried"
