"""One account's sensors: run history for every finished sync, alerts for failed or blocked ones,
the export files reported as they settle, and the automation that syncs a day once they are."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg

from lsq_pipeline.orchestration.alerts import AlertWebhook
from lsq_pipeline.orchestration.assets import (
    ACCOUNT_TAG,
    resource_keys,
    run_tags,
    source_resource,
)
from lsq_pipeline.orchestration.history import record_run_outcome
from lsq_pipeline.orchestration.jobs import PLAN_ASSETS, SEND_ASSETS
from lsq_pipeline.orchestration.translator import RECORD_SETS
from lsq_pipeline.settings import AccountSettings, source_days
from lsq_pipeline.sources import RecordSet
from lsq_pipeline.steps.read_files import SourceFileError, day_file
from lsq_pipeline.tables.statuses import RunStatus


def sends_for(run: dg.DagsterRun, settings: AccountSettings, keys: dict[str, dg.AssetKey]) -> bool:
    """Whether a finished run synced this account: its sync or retry job, or an asset job the UI
    launched ("Materialize") over the account's assets (`keys`, by name). Dry runs send nothing
    and are not recorded."""
    if run.tags.get(ACCOUNT_TAG):
        return run.tags[ACCOUNT_TAG] == settings.account and run.job_name != settings.name("dry_run_job")
    own = {keys[name] for name in (*PLAN_ASSETS, *SEND_ASSETS)}
    return not own.isdisjoint(run.asset_selection or ())


WILL_RETRY_TAG = "dagster/will_retry"
"""Set by Dagster on a failed run that the instance's run retries will launch again."""


def _alert(context: dg.RunStatusSensorContext, webhook: AlertWebhook, summary: dict[str, object]) -> None:
    if webhook.receiver_url():
        sent = webhook.post(summary)
        context.log.info(f"alert for run {summary['run_id']} {'sent' if sent else 'NOT delivered'}")


def build_sensors(
    settings: AccountSettings, partitions: dg.PartitionsDefinition | None, resources: dict[str, dg.ConfigurableResource],
    keys: dict[str, dg.AssetKey],
) -> list[dg.SensorDefinition]:
    """`record_successful_runs`, `alert_on_failed_runs`, `source_files_arrived` when a record set
    comes from export files, and the automation sensor when the account has an `automation_condition`."""
    sensors = _run_outcome_sensors(settings, resources, keys)
    if exported_files(settings):
        sensors.append(_source_files_sensor(settings, partitions, keys))
    if settings.automation_condition:
        sensors.append(_automation_sensor(settings, keys))
    return sensors


def _run_outcome_sensors(
    settings: AccountSettings, resources: dict[str, dg.ConfigurableResource], keys: dict[str, dg.AssetKey],
) -> list[dg.SensorDefinition]:
    """`record_successful_runs` and `alert_on_failed_runs`: each finished sync run of the account
    written to sync_runs, and an alert for a failed or blocked one.
    Run-status sensors take no resource keys, so they build the account's resources themselves
    (`dg.build_resources`, which resolves their `EnvVar`s when the sensor runs)."""

    def built() -> AbstractContextManager:
        return dg.build_resources({role: resources[settings.resource_key(role)] for role in ("warehouse", "alert_webhook")})

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=settings.name("record_successful_runs"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes each successful sync run of the account to sync_runs; one whose ERROR check "
        "failed (e.g. one_opportunity_per_record) is check_failed and alerts like a failed run.",
    )
    def record_successful_runs(context: dg.RunStatusSensorContext):
        if sends_for(context.dagster_run, settings, keys):
            with built() as account:
                row = record_run_outcome(context.instance, context.dagster_run, account.warehouse, keys)
                if row["status"] == RunStatus.CHECK_FAILED:  # a green run whose ERROR check failed
                    _alert(context, account.alert_webhook, row)

    @dg.run_failure_sensor(
        name=settings.name("alert_on_failed_runs"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes each failed or blocked sync run of the account to sync_runs and POSTs a JSON "
        "summary to the alert webhook when its variable is set; a run the instance will retry alerts only "
        "if its last try fails.",
    )
    def alert_on_failed_runs(context: dg.RunFailureSensorContext):
        if not sends_for(context.dagster_run, settings, keys):
            return
        with built() as account:
            row = record_run_outcome(context.instance, context.dagster_run, account.warehouse, keys)
            if context.dagster_run.tags.get(WILL_RETRY_TAG) == "true":
                context.log.info(f"run {context.dagster_run.run_id} failed and will be retried: no alert yet")
                return
            _alert(context, account.alert_webhook, row)

    return [record_successful_runs, alert_on_failed_runs]


def exported_files(settings: AccountSettings) -> dict[RecordSet, tuple[Path, str]]:
    """The export folders the account's sources are: each record set read from `files:`, with its
    folder and its source asset's name (none for tables and queries)."""
    sources = settings.sources()
    found = {}
    for record_set, (name, _) in RECORD_SETS.items():
        source = sources.of(record_set)
        if source is not None and source.kind == "files":
            found[record_set] = (Path(source.files), name)
    return found


def _arrived_files(
    exports: dict[RecordSet, tuple[Path, str]], partition_keys: set[str],
) -> tuple[list[tuple[str, Path, str]], list[str]]:
    """Each day's file of each record set, CSV or Parquet as the extract picks it (day, path, source
    asset's name), for the days that are partitions; and the problem of each day the extract would
    refuse (both files there), whose file is left out."""
    found, problems = [], []
    for record_set, (folder, name) in exports.items():
        for day in (day.isoformat() for day in source_days(folder)):
            if day not in partition_keys:
                continue
            try:
                path = day_file(folder / day, record_set)
            except SourceFileError as error:
                problems.append(str(error))
                continue
            if path.is_file():
                found.append((day, path, name))
    return sorted(found), problems


def _source_files_sensor(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, keys: dict[str, dg.AssetKey],
) -> dg.SensorDefinition:
    """`source_files_arrived`: each day's export files reported once they have settled."""
    exports = exported_files(settings)

    @dg.sensor(
        name=settings.name("source_files_arrived"),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=resource_keys(settings, "source"),
        description="Reports each day's export file (CSV or Parquet) once it has arrived or changed and "
        "then stayed unchanged for file_settle_seconds (size, modified time), on the source/applications "
        "and source/events assets: the UI shows when each export came, a late one shows as stale, and "
        "with automation_condition: eager the day then syncs. A day with both a CSV and a Parquet file "
        "of a record set is skipped, its problem in the log. Launches nothing itself.",
    )
    def source_files_arrived(context: dg.SensorEvaluationContext):
        """The cursor keeps, per day and file, its size and modified time, since when they are
        still, and what was last reported; a settled version not reported yet is reported, as a
        runless materialization of that day's partition."""
        source = source_resource(context.resources, settings)
        files: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        events, settling = [], []
        arrived, problems = _arrived_files(exports, set(partitions.get_partition_keys()))
        for problem in problems:
            context.log.warning(f"not reported: {problem}")
        for day, path, name in arrived:
            seen = [path.stat().st_size, path.stat().st_mtime]
            known = files.setdefault(f"{day}/{path.name}", {"seen": seen, "since": now, "reported": None})
            if known["seen"] != seen:
                known.update(seen=seen, since=now)
            if known["reported"] == seen:
                continue
            if now - known["since"] < source.file_settle_seconds:
                settling.append(f"{day}/{path.name}")
                continue
            known["reported"] = seen
            events.append(dg.AssetMaterialization(
                asset_key=keys[name],
                partition=day,
                metadata={
                    "path": dg.MetadataValue.path(str(path)),
                    "size_bytes": dg.MetadataValue.int(seen[0]),
                    "modified_at": dg.MetadataValue.timestamp(seen[1]),
                },
            ))
        context.update_cursor(json.dumps(files))
        if events:
            return dg.SensorResult(asset_events=events)
        waiting = [f"waiting for files to settle: {', '.join(settling)}"] if settling else []
        refused = [f"not reported: {'; '.join(problems)}"] if problems else []
        return dg.SkipReason("; ".join([*waiting, *refused]) or "no new or changed export file")

    return source_files_arrived


def _automation_sensor(
    settings: AccountSettings, keys: dict[str, dg.AssetKey],
) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the account's `automation_condition`, tagging its runs as the account's."""
    return dg.AutomationConditionSensorDefinition(
        settings.name("sync_automation"),
        target=dg.AssetSelection.assets(*(keys[name] for name in (*PLAN_ASSETS, *SEND_ASSETS))),
        run_tags=run_tags(settings),
        description="Starts the account's runs as its automation_condition says (eager: a day once its "
        "export files are reported). Off until turned on in Automation: a run that writes to "
        "LeadSquared starts by itself only once someone says so.",
    )
