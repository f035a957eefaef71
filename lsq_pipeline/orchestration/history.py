"""A finished Dagster run as its `sync_runs` row: status (succeeded, check_failed: a non-blocking
ERROR check failed on a run that succeeded, blocked by a check, or failed), its days,
timing and API figures from the run's events; counts and errors from the warehouse.

Called by the run-status sensors (runs under the daemon and the UI) and by the command line after
its own runs (no daemon there), so every run gets exactly one row, re-written if recorded twice."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timezone

import dagster as dg

from lsq_pipeline.orchestration.metadata import API_CALLS
from lsq_pipeline.orchestration.resources import WarehouseResource
from lsq_pipeline.sources import snapshot_day
from lsq_pipeline.warehouse.schema import ensure_schema
from lsq_pipeline.tables.runs import RunRecord, batches_sent, record_run
from lsq_pipeline.tables.statuses import Kind, RunStatus

# The client's endpoint each journal kind goes to, for runs that died before the push's metadata.
ENDPOINT_OF_KIND = {Kind.CREATE: "bulk_add", Kind.CAPTURE: "capture", Kind.UPDATE: "bulk_update",
                    Kind.ACTIVITY: "bulk_activities"}
API_CALLS_PREFIX = f"{API_CALLS}_"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def run_snapshot_day(instance: dg.DagsterInstance, run_id: str) -> date:
    """The day an unpartitioned run (a snapshot account's) works on: the UTC date the run was
    created, the same for each of its steps even when the run goes past midnight."""
    return snapshot_day(instance.get_run_record_by_id(run_id).create_timestamp)


def run_day_range(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[date, date]:
    """The run's first and last day, from its partition tags; a snapshot run's day for an
    unpartitioned run."""
    if run.tags.get("dagster/partition"):
        day = date.fromisoformat(run.tags["dagster/partition"])
        return day, day
    start, end = (run.tags.get(tag) for tag in RANGE_TAGS)
    if start and end:
        return date.fromisoformat(start), date.fromisoformat(end)
    day = run_snapshot_day(instance, run.run_id)
    return day, day


def _metadata_by_asset(instance: dg.DagsterInstance, run_id: str,
                       keys: dict[str, dg.AssetKey]) -> dict[str, dict[str, object]]:
    """The last materialization's metadata values of each of the account's assets in the run, by
    the asset's name in the account (`keys`: its translated key by name)."""
    name_of = {key: name for name, key in keys.items()}
    found: dict[str, dict[str, object]] = {}
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization.asset_key in name_of:
            found[name_of[materialization.asset_key]] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    """The run's check evaluations that did not pass, in the order they were made."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = (record.event_log_entry.dagster_event.event_specific_data for record in records)
    return [evaluation for evaluation in evaluations if not evaluation.passed]


def failed_error_checks(instance: dg.DagsterInstance, run_id: str, blocking: bool) -> list[str]:
    """The checks of the run that failed with severity ERROR, blocking ones or the others, as
    `asset: check`. WARN checks (the in-sync share) never count: they page nobody."""
    return [f"{evaluation.asset_key.to_user_string()}: {evaluation.check_name}"
            for evaluation in failed_checks(instance, run_id)
            if evaluation.blocking == blocking and evaluation.severity == dg.AssetCheckSeverity.ERROR]


def failed_steps(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Each failed step of the run with its error's first line, the step's own error rather than
    Dagster's wrapper around it (`SourceError: applications: ...`)."""
    failed: dict[str, str] = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        error = record.event_log_entry.dagster_event.event_specific_data.error
        while error is not None and error.cause is not None and "DagsterExecutionStepExecutionError" in error.cls_name:
            error = error.cause
        message = error.message.strip().splitlines()[0] if error is not None and error.message.strip() else "failed"
        qualified, _, rest = message.partition(": ")
        if error is not None and rest and qualified.endswith(error.cls_name):
            message = f"{error.cls_name}: {rest}"
        failed.setdefault(record.event_log_entry.step_key, message)
    return failed


def _timestamp(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None) if seconds else None


def record_run_outcome(
    instance: dg.DagsterInstance, run: dg.DagsterRun, warehouse: WarehouseResource, keys: dict[str, dg.AssetKey]
) -> dict[str, object]:
    """Write the run's `sync_runs` row and `sync_errors`; returns the row. `keys`: the account's
    asset keys by name."""
    days = run_day_range(instance, run)
    blocked = failed_error_checks(instance, run.run_id, blocking=True)
    checks_failed = failed_error_checks(instance, run.run_id, blocking=False)
    if run.status == dg.DagsterRunStatus.SUCCESS and checks_failed:
        status, reason = RunStatus.CHECK_FAILED, "check failed: " + ", ".join(checks_failed)
    elif run.status == dg.DagsterRunStatus.SUCCESS:
        status, reason = RunStatus.SUCCEEDED, None
    elif blocked:
        status, reason = RunStatus.BLOCKED, "blocked by " + ", ".join(blocked)
    else:
        failed = failed_steps(instance, run.run_id)
        status, reason = RunStatus.FAILED, next((f"{step}: {line}" for step, line in failed.items()),
                                                f"run {run.status.value}")
    metadata = _metadata_by_asset(instance, run.run_id, keys)
    push, reconcile = metadata.get("leadsquared/opportunities"), metadata.get("opportunity_state", {})
    stats = instance.get_run_record_by_id(run.run_id)
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        if push is None:
            batches = batches_sent(conn, run.run_id)
            api_calls = Counter({ENDPOINT_OF_KIND[kind]: calls for kind, calls in batches.items()})
        else:
            api_calls = Counter()
        for step in (push or {}, reconcile):
            api_calls.update({k.removeprefix(API_CALLS_PREFIX): v for k, v in step.items()
                              if k.startswith(API_CALLS_PREFIX) and v})
        return record_run(
            conn,
            RunRecord(
                run_id=run.run_id,
                job=run.job_name,
                first_day=days[0],
                last_day=days[1],
                status=status,
                reason=reason,
                mode=str(metadata.get("sync_plan", {}).get("mode", "")) or None,
                started_at=_timestamp(stats.start_time if stats else None),
                ended_at=_timestamp(stats.end_time if stats else None),
                api_calls=dict(api_calls),
                rate_limited_calls=sum(int(step.get("run_api_rate_limited_429", 0)) for step in (push or {}, reconcile)),
                items_per_second=(push or {}).get("run_items_per_second"),
                budget_exhausted=bool((push or {}).get("run_daily_budget_exhausted", False)),
                pending_read_back=reconcile.get("run_pending_read_back"),
                missing=reconcile.get("run_missing"),
            ),
        )
