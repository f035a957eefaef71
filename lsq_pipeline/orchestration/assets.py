"""One account's sync as daily-partitioned assets: extract -> transform -> plan -> push -> reconcile.

Every asset processes the days of its run in order (a backfill over a range is one run), and
every step is safe to re-run: each replaces its own days, and the push resolves creates that
may already have landed through LeadSquared's duplicate rule. `build_assets` makes them for one
account from its specs (`translator.py`): its pools, its resources, ops named after the account
and the step."""

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import dagster as dg

from lsq_pipeline.leadsquared import MAX_ITEMS_PER_WRITE, DailyBudgetExhausted
from lsq_pipeline.orchestration.alerts import AlertWebhook
from lsq_pipeline.orchestration.metadata import api_metadata, for_each_day, preview, run_figures, table_metadata
from lsq_pipeline.orchestration.resources import LeadSquaredResource, WarehouseResource
from lsq_pipeline.orchestration.liveness import run_is_alive
from lsq_pipeline.orchestration.source import SourceResource
from lsq_pipeline.orchestration.translator import Translate, account_key, account_specs, keys_of
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.mapping import Mapping
from lsq_pipeline.steps.push.push import Pusher
from lsq_pipeline.steps.reconcile import ReconcileSummary, reconcile
from lsq_pipeline.warehouse.schema import ensure_schema
from lsq_pipeline.steps.extract import extract_days
from lsq_pipeline.steps.plan import ACTIONS, failed_records, plan_days, planned_activities, planned_by_action
from lsq_pipeline.tables.runs import ERROR_COLUMNS, action_counts, day_errors, record_errors
from lsq_pipeline.steps.transform import rejects_by_field, transform_days
from lsq_pipeline.tables.state import known_opportunities, summarize_state

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


@dataclass(frozen=True)
class Step:
    """One step of a run, as `execute` gets it: its name (one of translator.STEPS) and its own work."""

    name: str
    run: Callable[[], object]
    """The step's work for the run: a MaterializeResult, or an iterator of results."""


Execute = Callable[[dg.AssetExecutionContext, Step], object]


def run_step(context: dg.AssetExecutionContext, step: Step) -> object:
    """The step's own work, as it is (what `LeadSquaredSyncComponent.execute` does unless overridden)."""
    return step.run()


def _results(outcome: object) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    if isinstance(outcome, (dg.MaterializeResult, dg.AssetCheckResult)):
        yield outcome
    elif outcome is not None:
        yield from outcome


def op_name(settings: AccountSettings, step: str) -> str:
    """A step's op name, from the account and the step, never from a translated key (`sync_plan`,
    `acme__sync_plan`): what run config addresses."""
    return account_key(settings, step).to_python_identifier()


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
    found = failed_records(conn, config.retry_source_ids, config.retry_all_failed)
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
    settings: AccountSettings, partitions: dg.PartitionsDefinition, mapping: Mapping | None,
    translate: Translate | None = None, execute: Execute | None = None,
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], list[dg.AssetChecksDefinition], dict[str, dg.AssetKey]]:
    """The export files, the five steps of one account and what LeadSquared holds (its column
    schema and lineage from the `mapping`, when the file was there at load), and the checks of what
    LeadSquared holds, and every asset's (translated) key by its name. A range backfill as one run needs `backfill_policy`, still
    beta in Dagster 1.13 with no stable equivalent: exactly that warning is quieted, here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
        specs = account_specs(settings, partitions, mapping, translate)
        assets, checks = _steps(settings, partitions, specs, execute or run_step)
        return assets, checks, keys_of(specs)


def _steps(
    settings: AccountSettings, partitions: dg.PartitionsDefinition, specs: dict[str, dg.AssetSpec], execute: Execute,
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], list[dg.AssetChecksDefinition]]:
    keys = keys_of(specs)

    def op_name_of(step: str) -> str:
        return op_name(settings, step)
    step = {"partitions_def": partitions, "backfill_policy": SINGLE_RUN, "required_resource_keys": resource_keys(settings)}
    warehouse_multi_step = {**step, "pool": settings.name(WAREHOUSE_POOL), "can_subset": True}

    def as_step(name: str):
        """The body of step `name`, run through the account's `execute` (a subclass may wrap it),
        holding the account's writer lock (PostgreSQL: see `Warehouse.writer_lock`), so two runs at
        once take turns however the instance is configured."""

        def decorate(body):
            @functools.wraps(body)
            def run(context: dg.AssetExecutionContext, *args, **kwargs):
                with getattr(context.resources, settings.resource_key("warehouse")).writer_lock():
                    yield from _results(execute(context, Step(name, functools.partial(body, context, *args, **kwargs))))

            return run

        return decorate

    def _ready(context: dg.AssetExecutionContext) -> AccountResources:
        """The account's resources, once its folders, files and key variables are checked: a run
        fails at its start, naming the setting, where loading the definitions never does."""
        settings.check_ready()
        missing = {name: value for name, value in run_tags(settings).items() if context.run.tags.get(name) != value}
        if missing:  # a run outside the account's jobs: the retry daemon and run monitoring read stored tags
            context.instance.add_run_tags(context.run_id, missing)
        return account_resources(context.resources, settings)

    @dg.multi_asset(
        specs=[specs["raw_applications"], specs["raw_events"]],
        name=op_name_of("extract"),
        **warehouse_multi_step,
    )
    @as_step("extract")
    def extract(context: dg.AssetExecutionContext):
        """Load the day's export files into DuckDB. Re-running a day replaces that day's rows."""
        resources = _ready(context)
        warehouse, source = resources.warehouse, resources.source
        days = run_days(context)
        with warehouse.get_connection() as conn:
            ensure_schema(conn)
            loaded = extract_days(conn, source.source_path(), days)
            for day, files in loaded.items():
                context.log.debug(f"{day}: {files['applications']} applications, {files['events']} events")
                for warning in files.get("warnings", []):
                    context.log.warning(warning)
            for_each_day(context, keys["raw_applications"], days, lambda day: {
                "warnings": "\n".join(loaded[day].get("warnings", [])) or "none",
                **table_metadata(conn, "raw_applications", "day = $1", [day]),
            })
            for_each_day(context, keys["raw_events"], days,
                         lambda day: table_metadata(conn, "raw_events", "day = $1", [day]))
        run = {"run_days": dg.MetadataValue.int(len(days))}
        yield from selected(context, dg.MaterializeResult(asset_key=keys["raw_applications"], metadata=run))
        yield from selected(context, dg.MaterializeResult(asset_key=keys["raw_events"], metadata=run))


    @dg.multi_asset(
        specs=[specs["opportunity_records"], specs["activity_records"], specs["rejects"]],
        check_specs=[
            dg.AssetCheckSpec(
                "reject_rate_below_threshold",
                asset=keys["rejects"],
                description="The share of rejected application rows stays under LSQ_MAX_REJECT_RATE; "
                "above it the run stops before anything is pushed (a bad export).",
                blocking=True,
            )
        ],
        name=op_name_of("transform"),
        **warehouse_multi_step,
    )
    @as_step("transform")
    def transform(context: dg.AssetExecutionContext):
        """Normalise and validate the days' rows against the mapping; re-running replaces the days."""
        resources = _ready(context)
        warehouse, source = resources.warehouse, resources.source
        days = run_days(context)
        mapping = source.load_mapping()
        with warehouse.get_connection() as conn:
            ensure_schema(conn)
            counts = transform_days(conn, days, mapping)
            context.log.debug(f"transform {days[0]}..{days[-1]}: {counts}")
            for table in ("opportunity_records", "activity_records"):
                for_each_day(context, keys[table], days, lambda day, table=table: table_metadata(conn, table, "day = $1", [day]))

            def rejects_of(day: date) -> dict[str, object]:
                by_field = rejects_by_field(conn, [day])
                return {"rejected_by_field": dg.MetadataValue.md(preview(["field", "rows"], by_field) if by_field else "no rejects"),
                        **table_metadata(conn, "rejects", "day = $1", [day])}

            for_each_day(context, keys["rejects"], days, rejects_of)
        run = {"run_days": dg.MetadataValue.int(len(days))}
        for table in ("opportunity_records", "activity_records"):
            yield from selected(context, dg.MaterializeResult(asset_key=keys[table], metadata=run))
        yield from selected(context, dg.MaterializeResult(
            asset_key=keys["rejects"],
            metadata={**run, "run_accepted_applications": dg.MetadataValue.int(counts["accepted"])},
        ))
        raw = counts["accepted"] + counts["rejected"] + counts["superseded"]  # the days' application rows
        rate = counts["rejected"] / raw if raw else 0.0
        yield from selected(context, dg.AssetCheckResult(
            asset_key=keys["rejects"],
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


    @dg.multi_asset(
        specs=[specs["sync_plan"]],
        name=op_name_of("sync_plan"),
        **step,
        pool=settings.name(WAREHOUSE_POOL),
        check_specs=[
            dg.AssetCheckSpec(
                "change_share_below_threshold",
                asset=keys["sync_plan"],
                description="The plan updates at most LSQ_MAX_CHANGE_SHARE of the known opportunities; above it "
                "(a broken mapping, a corrupted export) the run stops before the push. Override per run "
                "with the asset's config `max_change_share`.",
                blocking=True,
            )
        ],
    )
    @as_step("plan")
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
            counts = plan_days(
                conn, days, mapping, max_attempts=source.max_attempts,
                retry_ids=config.retry_source_ids, retry_all_failed=config.retry_all_failed,
            )
            known = known_opportunities(conn)
            batches = {
                action: -(-counts.get(action, 0) // MAX_ITEMS_PER_WRITE) for action in ("create", "update")
            }
            context.log.debug(f"plan {days[0]}..{days[-1]}: {counts}")

            def plan_of(day: date) -> dict[str, object]:
                planned = planned_by_action(conn, day, day)
                return {
                    **{f"planned_{action}": dg.MetadataValue.int(planned.get(action, 0)) for action in ACTIONS},
                    "planned_activities": dg.MetadataValue.int(planned_activities(conn, [day])),
                    **table_metadata(conn, "sync_plan", "day = $1", [day]),
                }

            for_each_day(context, keys["sync_plan"], days, plan_of)
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
            asset_key=keys["sync_plan"],
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


    @dg.multi_asset(
        specs=[specs["leadsquared/opportunities"], specs["leadsquared/activities"]],
        name=op_name_of("push"),
        **step,
        pool=settings.name(API_POOL),
        can_subset=True,
    )
    @as_step("push")
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
            record_errors(conn, run_id, days)
            held = summarize_state(conn, 0)

            counts_of_day = {day: action_counts(conn, run_id, [day]) for day in days}  # both assets' figures

            def opportunities_of(day: date) -> dict[str, object]:
                errors, first = day_errors(conn, run_id, day, ERROR_PREVIEW_ROWS)
                return {
                    **{name: dg.MetadataValue.int(value) for name, value in counts_of_day[day].items()
                       if not name.endswith("_activity")},
                    "errors": dg.MetadataValue.int(errors),
                    "failed_records": dg.MetadataValue.md(
                        preview(ERROR_COLUMNS, first)
                        + (f"\n\n{errors - len(first)} more in the table sync_errors" if errors > len(first) else "")
                        if first else "none"
                    ),
                }

            def activities_of(day: date) -> dict[str, object]:
                return {name: dg.MetadataValue.int(value) for name, value in counts_of_day[day].items()
                        if name.endswith("_activity")}

            for_each_day(context, keys["leadsquared/opportunities"], days, opportunities_of)
            for_each_day(context, keys["leadsquared/activities"], days, activities_of)
        yield from selected(context, dg.MaterializeResult(
            asset_key=keys["leadsquared/opportunities"],
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
            asset_key=keys["leadsquared/activities"],
            metadata={
                **run_figures(
                    activities_created=summary.activities_created, activities_failed=summary.activities_failed,
                    activities_unknown=summary.activities_unknown, activities_waiting=summary.activities_waiting,
                ),
                "table_total_activities": dg.MetadataValue.int(held.activities_held),
            },
        ))

    @dg.multi_asset(
        specs=[specs["opportunity_state"]],
        name=op_name_of("opportunity_state"),
        **step,
        pool=settings.name(API_POOL),
    )
    @as_step("reconcile")
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
            state = summarize_state(conn, DRIFT_PREVIEW_ROWS)
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

    held = keys["leadsquared/opportunities"]

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "one_opportunity_per_record",
                asset=held,
                additional_deps=[keys["opportunity_state"]],
                description="No source record holds two opportunities, and no opportunity serves two records.",
            ),
            dg.AssetCheckSpec(
                "pushed_records_in_sync",
                asset=held,
                additional_deps=[keys["opportunity_state"]],
                description="Every record read back agrees with what was sent; drift is reported with its fields. "
                "A record LeadSquared's lagging reads do not show yet is pending: neither failed nor in sync.",
            ),
        ],
        name=op_name_of("leadsquared_checks"),
        required_resource_keys=resource_keys(settings, "warehouse"),
        can_subset=True,
    )
    def leadsquared_checks(context: dg.AssetCheckExecutionContext):
        """What LeadSquared holds, checked against the state table the read-back just wrote."""
        warehouse = getattr(context.resources, settings.resource_key("warehouse"))
        with warehouse.get_connection() as conn:
            state = summarize_state(conn, DRIFT_PREVIEW_ROWS)
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

    source_files = [specs["source/applications"], specs["source/events"]]
    return [*source_files, extract, transform, sync_plan, push, opportunity_state], [leadsquared_checks]
