"""One account's sync as daily-partitioned assets: extract -> transform -> plan -> push -> reconcile.

Every asset processes the days of its run in order (a backfill over a range is one run), and
every step is safe to re-run: each replaces its own days, and the push resolves creates that
may already have landed through LeadSquared's duplicate rule. `build_assets` makes them for one
account: keys under its prefix, its pools, its resources."""

import functools
import inspect
import warnings
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
from dagster._utils.schedules import get_smallest_cron_interval

from lsq_pipeline.leadsquared import MAX_ITEMS_PER_WRITE, DailyBudgetExhausted
from lsq_pipeline.orchestration.alerts import AlertWebhook
from lsq_pipeline.orchestration.metadata import api_metadata, for_each_day, preview, run_figures, table_metadata
from lsq_pipeline.orchestration.resources import LeadSquaredResource, WarehouseResource
from lsq_pipeline.orchestration import lineage
from lsq_pipeline.orchestration.liveness import run_is_alive
from lsq_pipeline.orchestration.source import SourceResource
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.sync import extract as extract_rules
from lsq_pipeline.sync import plan as plan_rules
from lsq_pipeline.sync import history, validate
from lsq_pipeline.sync import state as state_rules
from lsq_pipeline.sync.mapping import Mapping
from lsq_pipeline.sync.push import Pusher
from lsq_pipeline.sync.reconcile import ReconcileSummary, reconcile
from lsq_pipeline.sync.warehouse import ensure_schema

WAREHOUSE_POOL = "lsq_warehouse"
API_POOL = "leadsquared_api"
RESOURCE_ROLES = ("warehouse", "leadsquared", "source", "alert_webhook")
"""The resources of an account, keyed `settings.resource_key(role)`."""
SINGLE_RUN = dg.BackfillPolicy.single_run()
ACCOUNT_TAG = "lsq_pipeline/account"


def run_tags(settings: AccountSettings) -> dict[str, str]:
    """The tags of every run of the account, however it was started: its jobs carry them, and the
    first step of any other run (the UI's "Materialize", a backfill, automation) adds them. A run
    whose worker died is retried by the instance's run_retries (re-runs resolve the calls that
    were in the air); one stopped by a failed step or a blocking check is not; a hung one is
    stopped after `max_runtime_seconds`."""
    return {
        ACCOUNT_TAG: settings.account,
        "dagster/retry_on_asset_or_op_failure": "false",
        **({"dagster/max_runtime": str(settings.max_runtime_seconds)} if settings.max_runtime_seconds else {}),
    }


@dataclass(frozen=True)
class AccountResources:
    """The resources of one account in a step (their keys carry the account's prefix)."""

    warehouse: WarehouseResource
    leadsquared: LeadSquaredResource
    source: SourceResource
    alert_webhook: AlertWebhook


def account_resources(resources: object, settings: AccountSettings) -> AccountResources:
    """The account's resources from a step's `resources`."""
    return AccountResources(**{role: getattr(resources, settings.resource_key(role)) for role in RESOURCE_ROLES})


def source_resource(resources: object, settings: AccountSettings) -> SourceResource:
    """The account's source from a schedule's or sensor's `resources` (they require only it)."""
    return getattr(resources, settings.resource_key("source"))


def account_key(settings: AccountSettings, *names: str) -> dg.AssetKey:
    """An asset's key under the account's prefix; its op is named `key.to_python_identifier()`
    (`sync_plan`, `acme__sync_plan`), which is what run config addresses."""
    return dg.AssetKey([*settings.key_prefix(), *names])


SOURCE_ASSETS = {"applications.csv": "applications", "events.csv": "events"}
"""The export file of each source asset (`source/applications`)."""


def freshness_policy(settings: AccountSettings) -> dg.FreshnessPolicy:
    """Fresh when materialized in the day before each scheduled sync (or the schedule's interval,
    if shorter: a cron policy's window may not exceed it), so a missing export shows as stale."""
    interval = get_smallest_cron_interval(settings.schedule)  # what the policy itself checks against
    return dg.FreshnessPolicy.cron(deadline_cron=settings.schedule, lower_bound_delta=min(interval, timedelta(days=1)))


def table_of(settings: AccountSettings, step: str, table: str, *kinds: str) -> dict[str, object]:
    """What a warehouse table asset of the account says of itself: its kinds (the warehouse's, the
    step's, `leadsquared` too for the steps that call it), owners, the account's group, the table
    and its automation."""
    return {"kinds": {settings.warehouse_location().kind, step, *kinds}, "owners": settings.owners,
            "group_name": settings.account, "automation_condition": automation_condition(settings),
            "metadata": {"dagster/table_name": settings.warehouse_location().table_name(table)}}


def automation_condition(settings: AccountSettings) -> dg.AutomationCondition | None:
    """`eager`: Dagster's eager condition over every day, not only the latest (`eager()` alone
    would leave a late export of an older day without its run): a day runs once both its export
    files are reported, again when one changes, never while a run of it is in progress."""
    if settings.automation_condition != "eager":
        return None
    return dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())


def resource_keys(settings: AccountSettings, *roles: str) -> set[str]:
    return {settings.resource_key(role) for role in roles or RESOURCE_ROLES}


def selected(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, result: dg.MaterializeResult | dg.AssetCheckResult):
    """The result if its asset (or check) is selected in this run. The multi-assets are
    subsettable, so the UI's "Materialize all" over a range of days is accepted as one backfill
    (Dagster 1.13 refuses it for a non-subsettable multi-asset whose outputs have different
    parents); the step still refreshes every table of its days, which is harmless."""
    if isinstance(result, dg.AssetCheckResult):
        wanted = dg.AssetCheckKey(dg.AssetKey.from_coercible(result.asset_key), result.check_name)
        if wanted in context.selected_asset_check_keys:
            yield result
    elif dg.AssetKey.from_coercible(result.asset_key) in context.selected_asset_keys:
        yield result


DRIFT_PREVIEW_ROWS = 20
ERROR_PREVIEW_ROWS = 20


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's partition days, oldest first."""
    return sorted(date.fromisoformat(key) for key in context.partition_keys)


class PlanConfig(dg.Config):
    max_change_share: float | None = None
    """Overrides LSQ_MAX_CHANGE_SHARE for this run (e.g. 1.0 for a deliberate mass update)."""
    retry_source_ids: list[str] = []
    """Failed records to send again now, refused or out of attempts (the `retry` command)."""
    retry_all_failed: bool = False
    """Send every failed record again now."""


class ReconcileConfig(dg.Config):
    full: bool = False
    """Read back every known opportunity, not only those this run touched (finds drift made
    behind the pipeline's back)."""


def _retry_on_their_days(conn, days: list[date], config: PlanConfig) -> None:
    """A retry materializes the days that hold its records, never another: a record retried in a
    run that does not cover its latest day fails the plan, naming the record and the day."""
    found = plan_rules.failed_records(conn, config.retry_source_ids, config.retry_all_failed)
    outside = sorted((day, source_id) for source_id, day in found.items() if day not in days)
    if outside:
        named = ", ".join(f"{source_id} ({day})" for day, source_id in outside[:10])
        raise dg.Failure(
            f"the retry covers {days[0]}..{days[-1]}, but these failed records' latest version is of another day: "
            f"{named}{' ...' if len(outside) > 10 else ''}. Launch retry_job over the records' days "
            "(lsq-pipeline retry does)")


def daily_partitions(settings: AccountSettings) -> dg.DailyPartitionsDefinition:
    """Daily partitions from the account's first day (`first_day`, else its oldest export)."""
    return dg.DailyPartitionsDefinition(start_date=settings.first_partition_day().isoformat())


def build_assets(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, mapping: Mapping | None
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], list[dg.AssetChecksDefinition]]:
    """The export files, the five steps of one account and what LeadSquared holds (its column
    schema and lineage from the `mapping`, when the file was there at load), and the checks of what
    LeadSquared holds. A range backfill as one run needs `backfill_policy`, still
    beta in Dagster 1.13 with no stable equivalent: exactly that warning is quieted, here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
        return _steps(settings, partitions, mapping)


def _steps(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, mapping: Mapping | None
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], list[dg.AssetChecksDefinition]]:

    def key(*names: str) -> dg.AssetKey:
        return account_key(settings, *names)

    freshness = freshness_policy(settings)
    step = {"partitions_def": partitions, "backfill_policy": SINGLE_RUN, "required_resource_keys": resource_keys(settings)}
    warehouse_multi_step = {**step, "pool": settings.name(WAREHOUSE_POOL), "can_subset": True}

    source_files = [
        dg.AssetSpec(
            key("source", name),
            description=f"Each day's {file_name} in the source folder, as exported; observed by the "
            "source_files_arrived sensor (size and modified time), so a late export shows as stale.",
            kinds={"csv", "source"},
            owners=settings.owners,
            group_name=settings.account,
            partitions_def=partitions,
            freshness_policy=freshness,
            metadata={"path": dg.MetadataValue.path(str(settings.path("source_dir") / "YYYY-MM-DD" / file_name))},
        )
        for file_name, name in SOURCE_ASSETS.items()
    ]

    def one_writer(step):
        """The step writes the warehouse holding the account's writer lock (PostgreSQL: see
        `Warehouse.writer_lock`), so two runs at once take turns however the instance is configured."""

        def writer_lock(context: dg.AssetExecutionContext):
            return getattr(context.resources, settings.resource_key("warehouse")).writer_lock()

        if inspect.isgeneratorfunction(step):
            @functools.wraps(step)
            def yielding_holding_the_writer_lock(context: dg.AssetExecutionContext, *args, **kwargs):
                with writer_lock(context):
                    yield from step(context, *args, **kwargs)

            return yielding_holding_the_writer_lock

        @functools.wraps(step)
        def holding_the_writer_lock(context: dg.AssetExecutionContext, *args, **kwargs):
            with writer_lock(context):
                return step(context, *args, **kwargs)

        return holding_the_writer_lock

    def _ready(context: dg.AssetExecutionContext) -> AccountResources:
        """The account's resources, once its folders, files and key variables are checked: a run
        fails at its start, naming the setting, where loading the definitions never does."""
        settings.check_ready()
        missing = {name: value for name, value in run_tags(settings).items() if context.run.tags.get(name) != value}
        if missing:  # a run outside the account's jobs: the retry daemon and run monitoring read stored tags
            context.instance.add_run_tags(context.run_id, missing)
        return account_resources(context.resources, settings)

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key("raw_applications"),
                deps=[key("source", "applications")],
                description="Each day's applications.csv, every column as text, as exported.",
                **table_of(settings, "extract", "raw_applications"),
            ),
            dg.AssetSpec(
                key("raw_events"),
                deps=[key("source", "events")],
                description="Each day's events.csv, every column as text, as exported.",
                **table_of(settings, "extract", "raw_events"),
            ),
        ],
        name=key("extract").to_python_identifier(),
        **warehouse_multi_step,
    )
    @one_writer
    def extract(context: dg.AssetExecutionContext):
        """Load the day's export files into DuckDB. Re-running a day replaces that day's rows."""
        resources = _ready(context)
        warehouse, source = resources.warehouse, resources.source
        days = run_days(context)
        with warehouse.get_connection() as conn:
            ensure_schema(conn)
            loaded = extract_rules.extract_days(conn, source.source_path(), days)
            for day, files in loaded.items():
                context.log.debug(f"{day}: {files['applications']} applications, {files['events']} events")
                for warning in files.get("warnings", []):
                    context.log.warning(warning)
            for_each_day(context, key("raw_applications"), days, lambda day: {
                "warnings": "\n".join(loaded[day].get("warnings", [])) or "none",
                **table_metadata(conn, "raw_applications", "day = $1", [day]),
            })
            for_each_day(context, key("raw_events"), days,
                         lambda day: table_metadata(conn, "raw_events", "day = $1", [day]))
        run = {"run_days": dg.MetadataValue.int(len(days))}
        yield from selected(context, dg.MaterializeResult(asset_key=key("raw_applications"), metadata=run))
        yield from selected(context, dg.MaterializeResult(asset_key=key("raw_events"), metadata=run))


    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key("opportunity_records"),
                deps=[key("raw_applications")],
                description="Accepted applications, normalised and mapped to LeadSquared fields; "
                "the latest version of a record in a day wins.",
                **table_of(settings, "transform", "opportunity_records"),
            ),
            dg.AssetSpec(
                key("activity_records"),
                deps=[key("raw_events"), key("raw_applications")],
                description="Accepted application events mapped to LeadSquared activities.",
                **table_of(settings, "transform", "activity_records"),
            ),
            dg.AssetSpec(
                key("rejects"),
                deps=[key("raw_applications"), key("raw_events")],
                description="Every rejected source row with the field and the reason: nothing is dropped silently.",
                **table_of(settings, "transform", "rejects"),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "reject_rate_below_threshold",
                asset=key("rejects"),
                description="The share of rejected application rows stays under LSQ_MAX_REJECT_RATE; "
                "above it the run stops before anything is pushed (a bad export).",
                blocking=True,
            )
        ],
        name=key("transform").to_python_identifier(),
        **warehouse_multi_step,
    )
    @one_writer
    def transform(context: dg.AssetExecutionContext):
        """Normalise and validate the days' rows against the mapping; re-running replaces the days."""
        resources = _ready(context)
        warehouse, source = resources.warehouse, resources.source
        days = run_days(context)
        mapping = source.load_mapping()
        with warehouse.get_connection() as conn:
            ensure_schema(conn)
            counts = validate.transform_days(conn, days, mapping)
            context.log.debug(f"transform {days[0]}..{days[-1]}: {counts}")
            for table in ("opportunity_records", "activity_records"):
                for_each_day(context, key(table), days, lambda day, table=table: table_metadata(conn, table, "day = $1", [day]))

            def rejects_of(day: date) -> dict[str, object]:
                by_field = validate.rejects_by_field(conn, [day])
                return {"rejected_by_field": dg.MetadataValue.md(preview(["field", "rows"], by_field) if by_field else "no rejects"),
                        **table_metadata(conn, "rejects", "day = $1", [day])}

            for_each_day(context, key("rejects"), days, rejects_of)
        run = {"run_days": dg.MetadataValue.int(len(days))}
        for table in ("opportunity_records", "activity_records"):
            yield from selected(context, dg.MaterializeResult(asset_key=key(table), metadata=run))
        yield from selected(context, dg.MaterializeResult(
            asset_key=key("rejects"),
            metadata={**run, "run_accepted_applications": dg.MetadataValue.int(counts["accepted"])},
        ))
        raw = counts["accepted"] + counts["rejected"] + counts["superseded"]  # the days' application rows
        rate = counts["rejected"] / raw if raw else 0.0
        yield from selected(context, dg.AssetCheckResult(
            asset_key=key("rejects"),
            check_name="reject_rate_below_threshold",
            passed=rate <= source.max_reject_rate,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "reject_rate": dg.MetadataValue.float(round(rate, 4)),
                "threshold": dg.MetadataValue.float(source.max_reject_rate),
                "rejected_rows": dg.MetadataValue.int(counts["rejected"]),
                "raw_rows": dg.MetadataValue.int(raw),
            },
        ))


    @dg.asset(
        key=key("sync_plan"),
        deps=[key("opportunity_records"), key("activity_records")],
        **step,
        pool=settings.name(WAREHOUSE_POOL),
        **table_of(settings, "transform", "sync_plan"),
        check_specs=[
            dg.AssetCheckSpec(
                "change_share_below_threshold",
                asset=key("sync_plan"),
                description="The plan updates at most LSQ_MAX_CHANGE_SHARE of the known opportunities; above it "
                "(a broken mapping, a corrupted export) the run stops before the push. Override per run "
                "with the asset's config `max_change_share`.",
                blocking=True,
            )
        ],
    )
    @one_writer
    def sync_plan(context: dg.AssetExecutionContext, config: PlanConfig):
        """What to send: creates, updates with only the changed fields, activities; unchanged and
        stale records send nothing. Computed against the state table, so re-planning is harmless."""
        resources = _ready(context)
        warehouse, source = resources.warehouse, resources.source
        days = run_days(context)
        mapping = source.load_mapping()
        with warehouse.get_connection() as conn:
            ensure_schema(conn)
            if config.retry_source_ids or config.retry_all_failed:
                _retry_on_their_days(conn, days, config)
            counts = plan_rules.plan_days(
                conn, days, mapping, max_attempts=source.max_attempts,
                retry_ids=config.retry_source_ids, retry_all_failed=config.retry_all_failed,
            )
            known = state_rules.known_opportunities(conn)
            batches = {
                action: -(-counts.get(action, 0) // MAX_ITEMS_PER_WRITE) for action in ("create", "update")
            }
            context.log.debug(f"plan {days[0]}..{days[-1]}: {counts}")

            def plan_of(day: date) -> dict[str, object]:
                planned = plan_rules.planned_by_action(conn, day, day)
                return {
                    **{f"planned_{action}": dg.MetadataValue.int(planned.get(action, 0)) for action in plan_rules.ACTIONS},
                    "planned_activities": dg.MetadataValue.int(plan_rules.planned_activities(conn, [day])),
                    **table_metadata(conn, "sync_plan", "day = $1", [day]),
                }

            for_each_day(context, key("sync_plan"), days, plan_of)
        yield dg.MaterializeResult(
            metadata={
                "mode": dg.MetadataValue.text(mapping.opportunity.mode),
                "run_create_batches": dg.MetadataValue.int(batches["create"]),
                "run_update_batches": dg.MetadataValue.int(batches["update"]),
            }
        )
        threshold = source.max_change_share if config.max_change_share is None else config.max_change_share
        share = counts.get("update", 0) / known if known else 0.0
        yield dg.AssetCheckResult(
            asset_key=key("sync_plan"),
            check_name="change_share_below_threshold",
            passed=share <= threshold,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if share <= threshold else (
                f"the plan updates {share:.0%} of the {known} known opportunities (limit {threshold:.0%}); "
                "if intended, re-run with a higher max_change_share"
            ),
            metadata={
                "change_share": dg.MetadataValue.float(round(share, 4)),
                "threshold": dg.MetadataValue.float(threshold),
                "planned_updates": dg.MetadataValue.int(counts.get("update", 0)),
                "known_opportunities": dg.MetadataValue.int(known),
            },
        )


    pushed = {"owners": settings.owners, "group_name": settings.account, "deps": [key("sync_plan")],
              "automation_condition": automation_condition(settings)}

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key("leadsquared", "opportunities"),
                description="The opportunities in LeadSquared for the source records: the push creates and "
                "updates them (each call journalled in the table push_journal before it goes and after its "
                "answer); each field's schema, owner and source column come from the mapping.",
                kinds={"leadsquared", "push"},
                metadata=lineage.opportunities_metadata(mapping, key("raw_applications")) if mapping else {},
                **pushed,
            ),
            dg.AssetSpec(
                key("leadsquared", "activities"),
                description="The activities the push adds to those opportunities, from the events export.",
                kinds={"leadsquared", "push"},
                metadata=lineage.activities_metadata(mapping, key("raw_events")) if mapping else {},
                **pushed,
            ),
        ],
        name=key("push").to_python_identifier(),
        **step,
        pool=settings.name(API_POOL),
        can_subset=True,
    )
    @one_writer
    def push(context: dg.AssetExecutionContext):
        """Send the plan to LeadSquared and journal every batch before it goes and every row's
        answer after. A crashed run is resumed by simply running it again: creates that landed come
        back as the existing opportunity, and activities whose answer was lost are never re-sent."""
        resources = _ready(context)
        warehouse, leadsquared, source = resources.warehouse, resources.leadsquared, resources.source
        days = run_days(context)
        mapping = source.load_mapping()
        client = leadsquared.get_client()
        before = client.stats()
        with warehouse.get_connection() as conn:
            ensure_schema(conn)
        summary = Pusher(
            warehouse.get_connection, client, mapping, context.run.run_id, context.log.info,
            run_is_alive=(lambda run_id: False) if warehouse.location().on_postgres
            else lambda run_id: run_is_alive(context.instance, run_id),
            leads_in_bulk=leadsquared.leads_in_bulk,
        ).push(days)
        for error in summary.errors:
            context.log.warning(f"refused: {error}")
        if summary.interrupted_before:
            context.log.warning(f"rows left unanswered by runs that died are now unknown: {summary.interrupted_before}")
        if summary.split_calls:
            context.log.warning(f"{summary.split_calls} calls refused whole were split and sent again in halves")
        if summary.daily_budget_exhausted:
            context.log.warning(
                f"daily call budget spent: {summary.records_waiting} records and {summary.activities_waiting} "
                "activities wait; the next run after 00:00 UTC continues"
            )
        run_id = context.run.run_id
        with warehouse.get_connection() as conn:
            journal_rows = conn.execute("SELECT count(*) FROM push_journal WHERE run_id = $1", [run_id]).fetchone()[0]
            history.record_errors(conn, run_id, days)
            held = state_rules.summarize_state(conn, 0)

            def opportunities_of(day: date) -> dict[str, object]:
                counts = history.action_counts(conn, run_id, [day])
                errors, first = history.day_errors(conn, run_id, day, ERROR_PREVIEW_ROWS)
                return {
                    **{name: dg.MetadataValue.int(value) for name, value in counts.items() if not name.endswith("_activity")},
                    "errors": dg.MetadataValue.int(errors),
                    "failed_records": dg.MetadataValue.md(
                        preview(history.ERROR_COLUMNS, first)
                        + (f"\n\n{errors - len(first)} more in the table sync_errors" if errors > len(first) else "")
                        if first else "none"
                    ),
                }

            def activities_of(day: date) -> dict[str, object]:
                counts = history.action_counts(conn, run_id, [day])
                return {name: dg.MetadataValue.int(value) for name, value in counts.items() if name.endswith("_activity")}

            for_each_day(context, key("leadsquared", "opportunities"), days, opportunities_of)
            for_each_day(context, key("leadsquared", "activities"), days, activities_of)
        yield from selected(context, dg.MaterializeResult(
            asset_key=key("leadsquared", "opportunities"),
            metadata={
                **run_figures(
                    lead_bulk_calls=summary.lead_calls, leads_sent_in_bulk=summary.leads_sent,
                    lead_bulk_calls_failed=summary.lead_calls_failed, created=summary.created,
                    already_existed=summary.already_existed, adopted=summary.adopted,
                    captured_with_new_lead=summary.captured, updated=summary.updated, failed=summary.failed,
                    split_calls=summary.split_calls, unknown_from_dead_runs=sum(summary.interrupted_before.values()),
                    items_per_second=round(summary.writes / summary.seconds, 1) if summary.seconds else 0.0,
                    daily_budget_exhausted=summary.daily_budget_exhausted, records_waiting=summary.records_waiting,
                    journal_rows=journal_rows,
                ),
                "table_total_opportunities": dg.MetadataValue.int(held.opportunities_held),
                **api_metadata(before, client.stats()),
            },
        ))
        yield from selected(context, dg.MaterializeResult(
            asset_key=key("leadsquared", "activities"),
            metadata={
                **run_figures(
                    activities_created=summary.activities_created, activities_failed=summary.activities_failed,
                    activities_unknown=summary.activities_unknown, activities_waiting=summary.activities_waiting,
                ),
                "table_total_activities": dg.MetadataValue.int(held.activities_held),
            },
        ))

    @dg.asset(
        key=key("opportunity_state"),
        deps=[key("leadsquared", "opportunities"), key("leadsquared", "activities")],
        description="One row per source record: its opportunity id, what was sent, what LeadSquared "
        "holds (read back with GetOpportunitiesById) and whether they agree.",
        freshness_policy=freshness,
        **step,
        pool=settings.name(API_POOL),
        **table_of(settings, "reconcile", "opportunity_state", "leadsquared"),
    )
    @one_writer
    def opportunity_state(context: dg.AssetExecutionContext, config: ReconcileConfig):
        """The state table: one row per source record with its opportunity id, what was sent, what
        LeadSquared holds (read back with GetOpportunitiesById) and whether they agree."""
        resources = _ready(context)
        warehouse, leadsquared, source = resources.warehouse, resources.leadsquared, resources.source
        days = run_days(context)
        mapping = source.load_mapping()
        client = leadsquared.get_client()
        before = client.stats()
        try:
            summary = reconcile(warehouse.get_connection, client, mapping.opportunity.event_code, days, full=config.full,
                                crm_owned=mapping.opportunity.crm_owned(), repaired=mapping.opportunity.repaired(),
                                grace_seconds=source.read_back_grace_seconds)
            day_spent = False
        except DailyBudgetExhausted as error:  # pending rows stay pending: the next run reads them back
            context.log.warning(f"reconcile skipped: {error}")
            summary, day_spent = ReconcileSummary(), True
        with warehouse.get_connection() as conn:
            state = state_rules.summarize_state(conn, DRIFT_PREVIEW_ROWS)
            table = table_metadata(conn, "opportunity_state", "TRUE", [])
        table["table_total_rows"] = table.pop("dagster/row_count")  # the whole table, never a day's rows
        return dg.MaterializeResult(
            metadata={
                **run_figures(
                    checked=summary.checked, in_sync=summary.in_sync, drifted=summary.drifted,
                    not_found_on_read=summary.not_found, pending_read_back=summary.pending, missing=summary.missing,
                    newly_rejected=summary.rejected, repaired=summary.repaired,
                    full_reconcile=config.full, daily_budget_exhausted=day_spent,
                ),
                "run_drift_details": dg.MetadataValue.md(
                    preview(["source_id", "opportunity_id", "field", "sent", "held", "modified_on", "repaired"],
                            summary.drift_details[:DRIFT_PREVIEW_ROWS])
                    if summary.drift_details else "no drift"
                ),
                "table_total_states": dg.MetadataValue.json(state.statuses),
                "table_total_opportunities_held": dg.MetadataValue.int(state.opportunities_held),
                "table_total_activities_held": dg.MetadataValue.int(state.activities_held),
                **api_metadata(before, client.stats()),
                **table,
            },
        )

    held = key("leadsquared", "opportunities")

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "one_opportunity_per_record",
                asset=held,
                additional_deps=[key("opportunity_state")],
                description="No source record holds two opportunities, and no opportunity serves two records.",
            ),
            dg.AssetCheckSpec(
                "pushed_records_in_sync",
                asset=held,
                additional_deps=[key("opportunity_state")],
                description="Every record read back agrees with what was sent; drift is reported with its fields. "
                "A record LeadSquared's lagging reads do not show yet is pending: neither failed nor in sync.",
            ),
        ],
        name=key("leadsquared_checks").to_python_identifier(),
        required_resource_keys=resource_keys(settings, "warehouse"),
        can_subset=True,
    )
    def leadsquared_checks(context: dg.AssetCheckExecutionContext):
        """What LeadSquared holds, checked against the state table the read-back just wrote."""
        warehouse = getattr(context.resources, settings.resource_key("warehouse"))
        with warehouse.get_connection() as conn:
            state = state_rules.summarize_state(conn, DRIFT_PREVIEW_ROWS)
        drifted, missing = state.statuses.get("drifted", 0), state.statuses.get("missing", 0)
        yield from selected(context, dg.AssetCheckResult(
            asset_key=held,
            check_name="one_opportunity_per_record",
            passed=not state.doubled,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {row}" for row in state.doubled) or "none")},
        ))
        yield from selected(context, dg.AssetCheckResult(
            asset_key=held,
            check_name="pushed_records_in_sync",
            passed=drifted == 0 and missing == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "in_sync": dg.MetadataValue.int(state.statuses.get("in_sync", 0)),
                "pending_read_back": dg.MetadataValue.int(state.statuses.get("pending", 0)),
                "drifted": dg.MetadataValue.int(drifted),
                "missing": dg.MetadataValue.int(missing),
                "drift": dg.MetadataValue.md(
                    preview(["source_id", "opportunity_id", "fields"], state.drifted) if state.drifted else "none"
                ),
            },
        ))

    return [*source_files, extract, transform, sync_plan, push, opportunity_state], [leadsquared_checks]
