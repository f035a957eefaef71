"""Launching the jobs from the command line on the persistent Dagster instance, so every run also
shows in the UI, and reading back what each run did. The commands work on one dg project (or the
packaged default account), chosen once with `select_project`."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
from filelock import FileLock

from lsq_pipeline.orchestration.history import failed_checks, failed_steps, record_run_outcome, run_day_range
from lsq_pipeline.orchestration.jobs import keys_of_job, settings_of
from lsq_pipeline.orchestration.liveness import HOST_TAG, PID_TAG, release_dead_runs
from lsq_pipeline.orchestration.metadata import API_CALLS
from lsq_pipeline.orchestration.resources import WarehouseResource
from lsq_pipeline.orchestration.translator import op_name
from lsq_pipeline.project import DgProject, find_project, load_definitions
from lsq_pipeline.settings import AccountSettings, SettingsError
from lsq_pipeline.steps import plan
from lsq_pipeline.tables.journal import run_journal
from lsq_pipeline.tables.runs import batches_sent
from lsq_pipeline.steps.transform import rejected_rows

SHIPPED_INSTANCE = Path(__file__).with_name("dagster.yaml")
"""The instance settings lsq_pipeline ships: pools, run monitoring, run retries."""
_selected: DgProject | None = None


def select_project(project: DgProject | None) -> None:
    """The dg project the commands of this process work on (None: the packaged default account)."""
    global _selected
    _selected = project
    code_location.cache_clear()
    use_project_instance.cache_clear()


def selected_project() -> DgProject | None:
    return _selected


@functools.cache
def use_project_instance() -> dg.DagsterInstance:
    """The instance under `$DAGSTER_HOME`, defaulting to the project's `instance/` folder (the
    current folder's outside a project), made with the shipped dagster.yaml when it has none; one
    per process (building one costs ~0.1 s)."""
    default_home = (_selected.root if _selected else Path.cwd()) / "instance"
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default_home.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(SHIPPED_INSTANCE.read_text())
    # Two commands starting at once on a new instance would both create its SQLite tables
    # and one would fail: the first creates them under a lock, the other then finds them.
    with FileLock(home / ".storage.lock"):
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)
        instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=1)
        instance.all_instigator_state()
    return instance


@functools.cache
def code_location() -> dg.Definitions:
    """The selected project's Definitions, loaded once per process."""
    return load_definitions(_selected)


def job_named(name: str, project_root: str = "") -> dg.JobDefinition:
    """A job of the code location (the reconstructor of command-line runs, which names the
    project for the processes that run the steps)."""
    if project_root != (str(_selected.root) if _selected else ""):
        select_project(find_project(Path(project_root)) if project_root else None)
    return code_location().resolve_job_def(name)


def asset_keys(settings: AccountSettings) -> dict[str, dg.AssetKey]:
    """The account's asset keys (as its translation made them) by name, from its sync job."""
    return keys_of_job(code_location().resolve_job_def(settings.name("sync_job")))


def accounts() -> dict[str, AccountSettings]:
    """The accounts of the code location, from their sync jobs' metadata."""
    found = (settings_of(job) for job in code_location().jobs)
    return {settings.account: settings for settings in found if settings}


def pick_account(name: str | None, defined: dict[str, AccountSettings] | None = None) -> AccountSettings:
    """The account `--account` names among those `defined` (default: the code location's);
    required when more than one is defined."""
    defined = accounts() if defined is None else defined
    if name is None and len(defined) == 1:
        return next(iter(defined.values()))
    if name in defined:
        return defined[name]
    choices = ", ".join(sorted(defined)) or "none"
    if name is None:
        raise SettingsError(f"--account is required: this project defines several accounts ({choices})")
    raise SettingsError(f"--account {name}: no such account (defined: {choices})")


QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
"""Run config keeping Dagster's console logger at INFO: its DEBUG engine lines would bury the output."""


def run_config(
    settings: AccountSettings,
    full_reconcile: bool = False,
    max_change_share: float | None = None,
    retry_source_ids: list[str] | None = None,
    retry_all_failed: bool = False,
    max_gone_share: float | None = None,
) -> dict:
    """The run config of the account's sync (or retry) job for the command line's options."""
    ops: dict[str, dict] = {}
    if full_reconcile:
        ops[op_name(settings, "opportunity_state")] = {"config": {"full": True}}
    plan = {
        key: value
        for key, value in (
            ("max_change_share", max_change_share),
            ("max_gone_share", max_gone_share),
            ("retry_source_ids", retry_source_ids),
            ("retry_all_failed", retry_all_failed or None),
        )
        if value is not None
    }
    if plan:
        ops[op_name(settings, "sync_plan")] = {"config": plan}
    return {"ops": ops} if ops else {}


def launch(
    settings: AccountSettings,
    first: date | None,
    last: date | None,
    dry_run: bool = False,
    full_reconcile: bool = False,
    quiet: bool = True,
    config: dict | None = None,
    retry: bool = False,
) -> dg.DagsterRun:
    """Run the account's sync (or its dry run, or its retry job) over `first`..`last` as ONE run
    on the project instance, on the job's executor, and write it to the run history (no daemon
    watches command-line runs). A snapshot account's run has no days (None): it reads the whole
    source, filed under the run's day.

    `quiet` keeps the console to the push's progress (every ~10 s, info) and warnings; the full
    event log is in the UI. A dry retry plans only (`sync_plan`)."""
    instance = use_project_instance()
    job_name = settings.name("retry_job" if retry else "dry_run_job" if dry_run else "sync_job")
    if first is None or last is None:
        tags = {}
    elif first == last:
        tags = {"dagster/partition": first.isoformat()}
    else:
        tags = {"dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat()}
    # No daemon retries a command-line run: when it dies, the command says how to run it again.
    tags = {**tags, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), "dagster/max_retries": "0"}
    release_dead_runs(instance)
    config = dict(config if config is not None else {} if dry_run else run_config(settings, full_reconcile))
    if quiet:
        config = {**config, **QUIET_CONSOLE}
    selection = [asset_keys(settings)["sync_plan"]] if retry and dry_run else None
    project_root = str(_selected.root) if _selected else ""
    job = dg.build_reconstructable_job(__name__, job_named.__name__, reconstructable_args=(job_name, project_root))
    result = dg.execute_job(job, instance=instance, run_config=config, tags=tags, asset_selection=selection)
    run = instance.get_run_by_id(result.run_id)
    if not dry_run:
        record_run_outcome(instance, run, code_location().resources[settings.resource_key("warehouse")],
                           asset_keys(settings))
    return run


@dataclass(frozen=True)
class Stop:
    """Why a run failed, in a line a person acts on: a blocking check that stopped it before the
    push (`check` its name), or a step that failed (its error's first line)."""

    check: str | None
    reason: str


def why_failed(run: dg.DagsterRun) -> list[Stop]:
    """The failed blocking checks of the run, else its failed steps, each once."""
    instance = use_project_instance()
    stops: dict[str, Stop] = {}
    for evaluation in failed_checks(instance, run.run_id):
        if evaluation.blocking:
            stops.setdefault(evaluation.check_name, Stop(evaluation.check_name, evaluation.description or "failed"))
    if stops:
        return list(stops.values())
    return [Stop(None, f"{step}: {line}") for step, line in failed_steps(instance, run.run_id).items()]


@dataclass
class DaySummary:
    """What a run did for its days, read from the warehouse and the run's materializations."""

    run_id: str
    success: bool
    planned: dict[str, int]
    created: int
    updated: int
    rejected: int
    failed: int
    activities: int
    activities_failed: int
    api_calls: int
    write_calls: int
    daily_budget_exhausted: bool = False
    records_waiting: int = 0
    gone: int | None = None
    """A snapshot run: the synced records its snapshot lacks (the plan's `planned_gone`)."""


def warehouse_of(settings: AccountSettings) -> WarehouseResource:
    """The account's warehouse resource: its connections wait out another process's lock."""
    return code_location().resources[settings.resource_key("warehouse")]


def summarize(settings: AccountSettings, run: dg.DagsterRun) -> DaySummary:
    """What the run did for its days (its partitions, or a snapshot run's day)."""
    instance = use_project_instance()
    first, last = run_day_range(instance, run)
    read_calls = records_waiting = 0
    write_calls: int | None = None
    day_spent = False
    gone: int | None = None
    seen: set[dg.AssetKey] = set()
    push_key = asset_keys(settings)["leadsquared/opportunities"]
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        materialization = record.event_log_entry.asset_materialization
        if materialization.asset_key in seen:  # a range run repeats its metadata once per day
            continue
        seen.add(materialization.asset_key)
        pushed = materialization.asset_key == push_key
        if "planned_gone" in materialization.metadata:
            gone = materialization.metadata["planned_gone"].value
        calls = materialization.metadata.get(API_CALLS)
        if calls is not None:
            if pushed:
                write_calls = calls.value
            else:
                read_calls += calls.value
        if pushed and "run_daily_budget_exhausted" in materialization.metadata:
            day_spent = day_spent or materialization.metadata["run_daily_budget_exhausted"].value
            records_waiting += materialization.metadata["run_records_waiting"].value
    with warehouse_of(settings).get_connection() as conn:
        planned = plan.planned_by_action(conn, first, last)
        journal = run_journal(conn, run.run_id)
        if write_calls is None:  # the push died before its metadata: count the batches it sent
            write_calls = sum(batches_sent(conn, run.run_id).values())
        rejected = rejected_rows(conn, first, last)
    return DaySummary(
        run_id=run.run_id,
        success=run.is_success,
        planned=planned,
        created=journal.answered.get("create:ok", 0) + journal.answered.get("capture:ok", 0),
        updated=journal.answered.get("update:ok", 0),
        rejected=rejected,
        failed=journal.records_failed,
        activities=journal.answered.get("activity:ok", 0),
        activities_failed=journal.answered.get("activity:failed", 0),
        api_calls=read_calls + write_calls,
        write_calls=write_calls,
        daily_budget_exhausted=day_spent,
        records_waiting=records_waiting,
        gone=gone,
    )
