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
from lsq_pipeline.orchestration.translator import SOURCE_ASSETS
from lsq_pipeline.settings import AccountSettings, source_days
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


def exported_files(settings: AccountSettings) -> dict[str, tuple[Path, str]]:
    """The export files the account's sources are: each file's name, with its folder and its
    source asset's name, for the record sets read from `files:` (none for tables and queries)."""
    sources = settings.sources()
    found = {}
    for file_name, name in SOURCE_ASSETS.items():
        source = sources.of(name.removeprefix("source/"))
        if source is not None and source.kind == "files":
            found[file_name] = (Path(source.files), name)
    return found


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
        description="Reports each day's export file once it has arrived or changed and then stayed "
        "unchanged for file_settle_seconds (size, modified time), on the source/applications and "
        "source/events assets: the UI shows when each export came, a late one shows as stale, and "
        "with automation_condition: eager the day then syncs. Launches nothing itself.",
    )
    def source_files_arrived(context: dg.SensorEvaluationContext):
        """The cursor keeps, per day and file, its size and modified time, since when they are
        still, and what was last reported; a settled version not reported yet is reported, as a
        runless materialization of that day's partition."""
        source = source_resource(context.resources, settings)
        files: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        partition_keys = set(partitions.get_partition_keys())
        now = time.time()
        events, settling = [], []
        arrived = sorted((day, file_name) for file_name, (folder, _) in exports.items() for day in source_days(folder))
        for day, file_name in arrived:
            folder, name = exports[file_name]
            path = folder / day.isoformat() / file_name
            if day.isoformat() not in partition_keys or not path.is_file():
                continue
            seen = [path.stat().st_size, path.stat().st_mtime]
            known = files.setdefault(f"{day}/{file_name}", {"seen": seen, "since": now, "reported": None})
            if known["seen"] != seen:
                known.update(seen=seen, since=now)
            if known["reported"] == seen:
                continue
            if now - known["since"] < source.file_settle_seconds:
                settling.append(f"{day}/{file_name}")
                continue
            known["reported"] = seen
            events.append(dg.AssetMaterialization(
                asset_key=keys[name],
                partition=day.isoformat(),
                metadata={
                    "path": dg.MetadataValue.path(str(path)),
                    "size_bytes": dg.MetadataValue.int(seen[0]),
                    "modified_at": dg.MetadataValue.timestamp(seen[1]),
                },
            ))
        context.update_cursor(json.dumps(files))
        if events:
            return dg.SensorResult(asset_events=events)
        return dg.SkipReason(f"waiting for files to settle: {', '.join(settling)}" if settling
                             else "no new or changed export file")

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
