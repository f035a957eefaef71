"""One account's sync as assets: extract -> transform -> plan -> push -> reconcile, daily-partitioned,
or unpartitioned for a snapshot source (each run reads the whole source, filed under the run's day).

Every asset processes the days of its run in order (a backfill over a range is one run), and
every step is safe to re-run: each replaces its own days, and the push resolves creates that
may already have landed through LeadSquared's duplicate rule. Each step is one function here: it
calls its step (`lsq_pipeline.steps`) for the run's days and reports the step's result as
metadata. `build_assets` wires them to one account's specs (`translator.py`): its pools, its
resources, ops named after the account and the step."""

import inspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import partial

import dagster as dg

from lsq_pipeline.leadsquared import MAX_ITEMS_PER_WRITE, DailyBudgetExhausted
from lsq_pipeline.mapping import Mapping
from lsq_pipeline.sources import Sources
from lsq_pipeline.orchestration import checks
from lsq_pipeline.orchestration.alerts import AlertWebhook
from lsq_pipeline.orchestration.history import run_snapshot_day
from lsq_pipeline.orchestration.liveness import run_is_alive
from lsq_pipeline.orchestration.metadata import (
    DRIFT_PREVIEW_ROWS, activities_of_day, api_metadata, extract_source_metadata, figures_of, for_each_day,
    opportunities_of_day, plan_of_day, preview, rejects_of_day, run_figures, selected, states_of_days, table_metadata,
    table_of_day)
from lsq_pipeline.orchestration.resources import LeadSquaredResource, WarehouseResource
from lsq_pipeline.orchestration.source import SourceResource
from lsq_pipeline.orchestration.translator import RECORD_SETS, Translate, account_specs, keys_of, op_name, source_specs
from lsq_pipeline.orchestration.upstream import run_sources
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.steps.extract import extract_days
from lsq_pipeline.steps.gone import gone_share, settle_gone
from lsq_pipeline.steps.plan import failed_records, plan_days
from lsq_pipeline.steps.push.summary import PushSummary
from lsq_pipeline.steps.push.push import Pusher
from lsq_pipeline.steps.reconcile import ReconcileSummary, reconcile
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.tables.runs import action_counts, record_errors
from lsq_pipeline.tables.report import known_opportunities, summarize_state
from lsq_pipeline.tables.statuses import Action
from lsq_pipeline.warehouse.schema import ensure_schema

WAREHOUSE_POOL = "lsq_warehouse"
API_POOL = "leadsquared_api"
RESOURCE_ROLES = ("warehouse", "leadsquared", "source", "alert_webhook")
"""The resources of an account, keyed `settings.resource_key(role)`."""
SINGLE_RUN = dg.BackfillPolicy.single_run()
ACCOUNT_TAG = "lsq_pipeline/account"

PUSH_FIGURE_NAMES = {"lead_calls": "lead_bulk_calls", "leads_sent": "leads_sent_in_bulk",
                     "lead_calls_failed": "lead_bulk_calls_failed", "captured": "captured_with_new_lead"}
"""The push's figures whose metadata name says more than the summary's field."""
PUSH_FIGURES_LEFT_OUT = ("seconds", "found_again")
"""Reported otherwise (`run_items_per_second`) or only logged."""
RECONCILE_FIGURE_NAMES = {"not_found": "not_found_on_read", "pending": "pending_read_back", "rejected": "newly_rejected"}
RECONCILE_FIGURES_LEFT_OUT = ("reread", "read_calls", "adopted")
"""How the read-back went about its work, not what it found."""

Keys = dict[str, dg.AssetKey]
Results = Iterator[dg.MaterializeResult | dg.AssetCheckResult]


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


def resource_keys(settings: AccountSettings, *roles: str) -> set[str]:
    return {settings.resource_key(role) for role in roles or RESOURCE_ROLES}


def ready(context: dg.AssetExecutionContext, settings: AccountSettings) -> AccountResources:
    """The account's resources, once its folders, files and key variables are checked: a run
    fails at its start, naming the setting, where loading the definitions never does."""
    settings.check_ready()
    missing = {name: value for name, value in run_tags(settings).items() if context.run.tags.get(name) != value}
    if missing:  # a run outside the account's jobs: the retry daemon and run monitoring read stored tags
        context.instance.add_run_tags(context.run.run_id, missing)
    return account_resources(context.resources, settings)


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


def _results(outcome: object) -> Results:
    if isinstance(outcome, (dg.MaterializeResult, dg.AssetCheckResult)):
        yield outcome
    elif outcome is not None:
        yield from outcome


def snapshot_run(context: dg.AssetExecutionContext) -> bool:
    """Whether the run is a snapshot account's: its assets are unpartitioned."""
    return context.assets_def.partitions_def is None


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's partition days, oldest first; a snapshot run's one day, the run's UTC date."""
    if snapshot_run(context):
        return [run_snapshot_day(context.instance, context.run.run_id)]
    return sorted(date.fromisoformat(key) for key in context.partition_keys)


def account_partitions(settings: AccountSettings) -> dg.DailyPartitionsDefinition | None:
    """Daily partitions from the account's `first_day`; none for a snapshot account."""
    if not settings.daily:
        return None
    return dg.DailyPartitionsDefinition(start_date=settings.first_partition_day().isoformat())


class PlanConfig(dg.Config):
    max_change_share: float | None = None
    """Overrides the account's max_change_share for this run (e.g. 1.0 for a deliberate mass update)."""
    max_gone_share: float | None = None
    """Overrides the account's max_gone_share for this run (a snapshot source that really lost its records)."""
    retry_source_ids: list[str] = []
    """Failed records to send again now, refused or out of attempts (the `retry` command)."""
    retry_all_failed: bool = False
    """Send every failed record again now."""


class ReconcileConfig(dg.Config):
    full: bool = False
    """Read back every known opportunity, not only those this run touched (finds drift made
    behind the pipeline's back)."""


def extract(context: dg.AssetExecutionContext, resources: AccountResources, keys: Keys, sources: Sources) -> Results:
    """Load the days' records from the account's `sources` (files, a table or a query) into the raw
    tables. Re-running a day replaces that day's rows (a snapshot replaces them all)."""
    days = run_days(context)
    mapping = resources.source.load_mapping()
    with resources.warehouse.get_connection() as conn:
        ensure_schema(conn)
        loaded = extract_days(conn, sources, days, mapping)
        for day, files in loaded.items():
            context.log.debug(f"{day}: {files['applications']} applications, {files['events']} events")
            for warning in files.get("warnings", []):
                context.log.warning(warning)
        for_each_day(context, keys["raw_applications"], days, lambda day: {
            "warnings": "\n".join(loaded[day].get("warnings", [])) or "none",
            **table_metadata(conn, "raw_applications", "day = $1", [day]),
        })
        for_each_day(context, keys["raw_events"], days, partial(table_of_day, conn, "raw_events"))
    run = {"run_days": dg.MetadataValue.int(len(days))}
    for record_set, (_, name) in RECORD_SETS.items():
        read = extract_source_metadata(sources.of(record_set), sum(loaded[day][record_set] for day in days))
        yield from selected(context, dg.MaterializeResult(asset_key=keys[name], metadata={**run, **read}))


def transform(context: dg.AssetExecutionContext, resources: AccountResources, keys: Keys) -> Results:
    """Normalise and validate the days' rows against the mapping; re-running replaces the days."""
    days = run_days(context)
    mapping = resources.source.load_mapping()
    with resources.warehouse.get_connection() as conn:
        ensure_schema(conn)
        counts = transform_days(conn, days, mapping)
        context.log.debug(f"transform {days[0]}..{days[-1]}: {counts}")
        for table in ("opportunity_records", "activity_records"):
            for_each_day(context, keys[table], days, partial(table_of_day, conn, table))
        for_each_day(context, keys["rejects"], days, partial(rejects_of_day, conn))
    run = {"run_days": dg.MetadataValue.int(len(days))}
    for table in ("opportunity_records", "activity_records"):
        yield from selected(context, dg.MaterializeResult(asset_key=keys[table], metadata=run))
    yield from selected(context, dg.MaterializeResult(
        asset_key=keys["rejects"],
        metadata={**run, "run_accepted_applications": dg.MetadataValue.int(counts["accepted"])},
    ))
    yield from selected(context, checks.reject_rate(keys["rejects"], counts, resources.source.max_reject_rate))


def sync_plan(context: dg.AssetExecutionContext, resources: AccountResources, keys: Keys, config: PlanConfig) -> Results:
    """What to send: creates, updates with only the changed fields, activities; unchanged and
    stale records send nothing. Computed against the state table, so re-planning is harmless.
    A snapshot's plan also counts the synced records it lacks (`planned_gone`), marked gone only
    once the push is done."""
    source = resources.source
    days = run_days(context)
    mapping = source.load_mapping()
    with resources.warehouse.get_connection() as conn:
        ensure_schema(conn)
        if (config.retry_source_ids or config.retry_all_failed) and not snapshot_run(context):
            _retry_on_their_days(conn, days, config)
        counts = plan_days(
            conn, days, mapping, max_attempts=source.max_attempts,
            retry_ids=config.retry_source_ids, retry_all_failed=config.retry_all_failed,
            snapshot=snapshot_run(context),
        )
        known = known_opportunities(conn)
        gone = gone_share(conn, days) if snapshot_run(context) else None
        context.log.debug(f"plan {days[0]}..{days[-1]}: {counts}")
        for_each_day(context, keys["sync_plan"], days, partial(plan_of_day, conn))
    batches = {action: -(-counts.get(action, 0) // MAX_ITEMS_PER_WRITE)
               for action in (Action.CREATE, Action.UPDATE)}
    yield dg.MaterializeResult(metadata={
        "mode": dg.MetadataValue.text(mapping.opportunity.mode),
        "run_create_batches": dg.MetadataValue.int(batches[Action.CREATE]),
        "run_update_batches": dg.MetadataValue.int(batches[Action.UPDATE]),
        **({"planned_gone": dg.MetadataValue.int(gone.gone)} if gone is not None else {}),
    })
    threshold = source.max_change_share if config.max_change_share is None else config.max_change_share
    yield checks.change_share(keys["sync_plan"], counts.get(Action.UPDATE, 0), known, threshold)
    if gone is not None:
        threshold = source.max_gone_share if config.max_gone_share is None else config.max_gone_share
        yield checks.gone_share(keys["sync_plan"], gone.gone, gone.known, threshold)


def push(context: dg.AssetExecutionContext, resources: AccountResources, keys: Keys) -> Results:
    """Send the plan to LeadSquared and journal every batch before it goes and every row's
    answer after. A crashed run is resumed by simply running it again: creates that landed come
    back as the existing opportunity, and activities whose answer was lost are never re-sent."""
    warehouse, leadsquared = resources.warehouse, resources.leadsquared
    days, run_id = run_days(context), context.run.run_id
    mapping = resources.source.load_mapping()
    client = leadsquared.get_client()
    before = client.stats()
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
    summary = Pusher(
        warehouse.get_connection, client, mapping, run_id, context.log.info,
        run_is_alive=(lambda run_id: False) if warehouse.location().on_postgres
        else lambda run_id: run_is_alive(context.instance, run_id),
        leads_in_bulk=leadsquared.leads_in_bulk,
    ).push(days)
    _log_push(context, summary)
    with warehouse.get_connection() as conn:
        journal_rows = conn.execute("SELECT count(*) FROM push_journal WHERE run_id = $1", [run_id]).fetchone()[0]
        record_errors(conn, run_id, days)
        held = summarize_state(conn, 0)
        counts_of_day = {day: action_counts(conn, run_id, [day]) for day in days}  # both assets' figures
        for_each_day(context, keys["leadsquared/opportunities"], days,
                     lambda day: opportunities_of_day(conn, run_id, day, counts_of_day[day]))
        for_each_day(context, keys["leadsquared/activities"], days, lambda day: activities_of_day(counts_of_day[day]))
    figures = figures_of(summary, PUSH_FIGURE_NAMES, PUSH_FIGURES_LEFT_OUT)
    activities = {name: value for name, value in figures.items() if name.startswith("activities_")}
    opportunities = {name: value for name, value in figures.items() if name not in activities}
    yield from selected(context, dg.MaterializeResult(asset_key=keys["leadsquared/opportunities"], metadata={
        **run_figures(
            **opportunities, unknown_from_dead_runs=sum(summary.interrupted_before.values()),
            items_per_second=round(summary.writes / summary.seconds, 1) if summary.seconds else 0.0,
            journal_rows=journal_rows,
        ),
        "table_total_opportunities": dg.MetadataValue.int(held.opportunities_held),
        **api_metadata(before, client.stats()),
    }))
    yield from selected(context, dg.MaterializeResult(asset_key=keys["leadsquared/activities"], metadata={
        **run_figures(**activities), "table_total_activities": dg.MetadataValue.int(held.activities_held),
    }))


def opportunity_state(
    context: dg.AssetExecutionContext, resources: AccountResources, keys: Keys, config: ReconcileConfig,
) -> Results:
    """The state table: one row per source record with its opportunity id, what was sent, what
    LeadSquared holds (read back with GetOpportunitiesById) and whether they agree."""
    warehouse, source = resources.warehouse, resources.source
    days = run_days(context)
    mapping = source.load_mapping()
    client = resources.leadsquared.get_client()
    before = client.stats()
    gone = None
    if snapshot_run(context):  # the plan's gone-share check passed: the snapshot's verdict stands
        with warehouse.get_connection() as conn:
            gone = settle_gone(conn, days)
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
        for_each_day(context, keys["opportunity_state"], days, states_of_days(conn, days).__getitem__)
    table["table_total_rows"] = table.pop("dagster/row_count")  # the whole table, never a day's rows
    yield dg.MaterializeResult(metadata={
        **run_figures(
            **figures_of(summary, RECONCILE_FIGURE_NAMES, RECONCILE_FIGURES_LEFT_OUT),
            full_reconcile=config.full, daily_budget_exhausted=day_spent,
            **(figures_of(gone, {}) if gone is not None else {}),
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
    })


def _retry_on_their_days(conn, days: list[date], config: PlanConfig) -> None:
    """A retry materializes the days that hold its records, never another: a record retried in a
    run that does not cover its latest day fails the plan, naming the record and the day. (A
    snapshot has no partitions: its retry plans the records under the run's day.)"""
    found = failed_records(conn, config.retry_source_ids, config.retry_all_failed)
    outside = sorted((day, source_id) for source_id, day in found.items() if day not in days)
    if outside:
        named = ", ".join(f"{source_id} ({day})" for day, source_id in outside[:10])
        raise dg.Failure(
            f"the retry covers {days[0]}..{days[-1]}, but these failed records' latest version is of another day: "
            f"{named}{' ...' if len(outside) > 10 else ''}. Launch retry_job over the records' days "
            "(lsq-pipeline retry does)")


def _log_push(context: dg.AssetExecutionContext, summary: PushSummary) -> None:
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


StepBody = Callable[..., Results]
"""One of the step functions above: (context, resources, keys, *config)."""


@dataclass(frozen=True)
class _Account:
    """What every step of one account runs with."""

    settings: AccountSettings
    keys: Keys
    execute: Execute

    def as_step(self, context: dg.AssetExecutionContext, name: str, body: StepBody, *config: dg.Config) -> Results:
        """The body of step `name`, run through the account's `execute` (a subclass may wrap it),
        holding the account's writer lock (PostgreSQL: see `Warehouse.writer_lock`), so two runs at
        once take turns however the instance is configured."""
        def work() -> Results:
            yield from body(context, ready(context, self.settings), self.keys, *config)

        with getattr(context.resources, self.settings.resource_key("warehouse")).writer_lock():
            yield from _results(self.execute(context, Step(name, work)))


def build_assets(
    settings: AccountSettings, partitions: dg.PartitionsDefinition | None, mapping: Mapping | None,
    translate: Translate | None = None, execute: Execute | None = None,
) -> tuple[list[dg.AssetsDefinition | dg.AssetSpec], list[dg.AssetChecksDefinition], dict[str, dg.AssetKey]]:
    """The export files, the five steps of one account and what LeadSquared holds (its column
    schema and lineage from the `mapping`, when the file was there at load), and the checks of what
    LeadSquared holds, and every asset's (translated) key by its name. A range backfill as one run
    needs `backfill_policy`, still beta in Dagster 1.13 with no stable equivalent: exactly that
    warning is quieted, here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
        specs = account_specs(settings, partitions, mapping, translate)
        account = _Account(settings, keys_of(specs), execute or run_step)
        source_files = source_specs(specs)
        return ([*source_files, *_step_assets(account, partitions, specs)],
                [checks.leadsquared_checks(settings, account.keys)], account.keys)


def _step_assets(account: _Account, partitions: dg.PartitionsDefinition | None, specs: dict[str, dg.AssetSpec]):
    """The five steps as multi-assets, each wiring its specs to its step function: an op named
    after the account and the step (its description the function's docstring), in its pool."""
    settings, keys = account.settings, account.keys

    def step_asset(op: str, body: StepBody, names: tuple[str, ...], pool: str, **args):
        return dg.multi_asset(
            specs=[specs[name] for name in names], name=op_name(settings, op), description=inspect.getdoc(body),
            partitions_def=partitions, backfill_policy=SINGLE_RUN if partitions else None,
            required_resource_keys=resource_keys(settings),
            pool=settings.name(pool), **args)

    @step_asset("extract", extract, ("raw_applications", "raw_events"), WAREHOUSE_POOL, can_subset=True)
    def extract_op(context: dg.AssetExecutionContext):
        yield from account.as_step(context, "extract", partial(extract, sources=run_sources(context, account.settings)))

    @step_asset("transform", transform, ("opportunity_records", "activity_records", "rejects"), WAREHOUSE_POOL,
                can_subset=True, check_specs=[checks.reject_rate_spec(keys["rejects"])])
    def transform_op(context: dg.AssetExecutionContext):
        yield from account.as_step(context, "transform", transform)

    plan_checks = [checks.change_share_spec(keys["sync_plan"])]
    if not settings.daily:
        plan_checks.append(checks.gone_share_spec(keys["sync_plan"]))

    @step_asset("sync_plan", sync_plan, ("sync_plan",), WAREHOUSE_POOL, check_specs=plan_checks)
    def sync_plan_op(context: dg.AssetExecutionContext, config: PlanConfig):
        yield from account.as_step(context, "plan", sync_plan, config)

    @step_asset("push", push, ("leadsquared/opportunities", "leadsquared/activities"), API_POOL, can_subset=True)
    def push_op(context: dg.AssetExecutionContext):
        yield from account.as_step(context, "push", push)

    @step_asset("opportunity_state", opportunity_state, ("opportunity_state",), API_POOL)
    def opportunity_state_op(context: dg.AssetExecutionContext, config: ReconcileConfig):
        yield from account.as_step(context, "reconcile", opportunity_state, config)

    return [extract_op, transform_op, sync_plan_op, push_op, opportunity_state_op]
