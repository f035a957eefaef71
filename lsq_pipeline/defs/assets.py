"""The sync as daily-partitioned assets: extract -> transform -> plan -> push -> reconcile.

Every asset processes the days of its run in order (a backfill over a range is one run), and
every step is safe to re-run: each replaces its own days, and the push resolves creates that
may already have landed through LeadSquared's duplicate rule."""

import warnings
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from lsq_pipeline.defs.metadata import api_metadata, preview, table_metadata
from lsq_pipeline.defs.partitions import daily_partitions
from lsq_pipeline.defs.resources import LeadSquaredResource
from lsq_pipeline.defs.runs import run_is_alive
from lsq_pipeline.leadsquared import MAX_ITEMS_PER_WRITE, DailyBudgetExhausted
from lsq_pipeline.defs.source import SourceResource
from lsq_pipeline.sync import extract as extract_rules
from lsq_pipeline.sync import plan as plan_rules
from lsq_pipeline.sync import history, validate
from lsq_pipeline.sync.push import Pusher
from lsq_pipeline.sync.reconcile import ReconcileSummary, reconcile
from lsq_pipeline.sync.warehouse import ensure_schema

WAREHOUSE_POOL = "lsq_warehouse"
API_POOL = "leadsquared_api"
SINGLE_RUN = dg.BackfillPolicy.single_run()
# A range backfill as one run needs `backfill_policy`, still beta in Dagster 1.13 with no stable
# equivalent: quiet exactly that warning, so `demo` and `sync` print only their own lines.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def selected(context: dg.AssetExecutionContext, result: dg.MaterializeResult | dg.AssetCheckResult):
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


def errors_csv_path(database: str, run_id: str) -> Path:
    """Where a run's errors CSV goes: `errors/<run id>.csv` next to the warehouse file."""
    return Path(database).parent / "errors" / f"{run_id}.csv"


DRIFT_PREVIEW_ROWS = 20


def run_days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's partition days, oldest first."""
    return sorted(date.fromisoformat(key) for key in context.partition_keys)


# Filters a table to the run's days, the days passed as the query's first parameter.
IN_RUN_DAYS = "day IN (SELECT unnest($1::DATE[]))"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "raw_applications",
            description="Each day's applications.csv, every column as text, as exported.",
            kinds={"duckdb"},
            group_name="extract",
        ),
        dg.AssetSpec(
            "raw_events",
            description="Each day's events.csv, every column as text, as exported.",
            kinds={"duckdb"},
            group_name="extract",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    pool=WAREHOUSE_POOL,
    can_subset=True,
)
def extract(context: dg.AssetExecutionContext, warehouse: DuckDBResource, source: SourceResource):
    """Load the day's export files into DuckDB. Re-running a day replaces that day's rows."""
    days = run_days(context)
    counts: dict[str, int] = {"applications": 0, "events": 0}
    warnings: list[str] = []
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        for day, loaded in extract_rules.extract_days(conn, source.source_path(), days).items():
            counts["applications"] += loaded["applications"]
            counts["events"] += loaded["events"]
            warnings.extend(loaded.get("warnings", []))
            context.log.debug(f"{day}: {loaded['applications']} applications, {loaded['events']} events")
        for warning in warnings:
            context.log.warning(warning)
        yield from selected(context, dg.MaterializeResult(
            asset_key="raw_applications",
            metadata={
                "days": ", ".join(str(d) for d in days),
                "warnings": "\n".join(warnings) or "none",
                **table_metadata(conn, "raw_applications", IN_RUN_DAYS, [days]),
            },
        ))
        yield from selected(context, dg.MaterializeResult(
            asset_key="raw_events",
            metadata=table_metadata(conn, "raw_events", IN_RUN_DAYS, [days]),
        ))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "opportunity_records",
            deps=["raw_applications"],
            description="Accepted applications, normalised and mapped to LeadSquared fields; "
            "the latest version of a record in a day wins.",
            kinds={"duckdb"},
            group_name="transform",
        ),
        dg.AssetSpec(
            "activity_records",
            deps=["raw_events", "raw_applications"],
            description="Accepted application events mapped to LeadSquared activities.",
            kinds={"duckdb"},
            group_name="transform",
        ),
        dg.AssetSpec(
            "rejects",
            deps=["raw_applications", "raw_events"],
            description="Every rejected source row with the field and the reason: nothing is dropped silently.",
            kinds={"duckdb"},
            group_name="transform",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "reject_rate_below_threshold",
            asset="rejects",
            description="The share of rejected application rows stays under LSQ_MAX_REJECT_RATE; "
            "above it the run stops before anything is pushed (a bad export).",
            blocking=True,
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    pool=WAREHOUSE_POOL,
    can_subset=True,
)
def transform(context: dg.AssetExecutionContext, warehouse: DuckDBResource, source: SourceResource):
    """Normalise and validate the days' rows against the mapping; re-running replaces the days."""
    days = run_days(context)
    mapping = source.load_mapping()
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        counts = validate.transform_days(conn, days, mapping)
        context.log.debug(f"transform {days[0]}..{days[-1]}: {counts}")
        accepted = conn.execute(
            f"SELECT count(*) FROM opportunity_records WHERE {IN_RUN_DAYS}", [days]
        ).fetchone()[0]
        raw = conn.execute(f"SELECT count(*) FROM raw_applications WHERE {IN_RUN_DAYS}", [days]).fetchone()[0]
        rejected_rows = conn.execute(
            f"""SELECT count(DISTINCT row_number::VARCHAR || source_file || day::VARCHAR) FROM rejects
                WHERE {IN_RUN_DAYS} AND source_file LIKE '%applications%'""",
            [days],
        ).fetchone()[0]
        yield from selected(context, dg.MaterializeResult(
            asset_key="opportunity_records",
            metadata=table_metadata(conn, "opportunity_records", IN_RUN_DAYS, [days]),
        ))
        yield from selected(context, dg.MaterializeResult(
            asset_key="activity_records",
            metadata=table_metadata(conn, "activity_records", IN_RUN_DAYS, [days]),
        ))
        by_field = conn.execute(
            f"""SELECT field, count(*) AS rows FROM rejects WHERE {IN_RUN_DAYS}
                GROUP BY field ORDER BY rows DESC, field""",
            [days],
        ).fetchall()
        yield from selected(context, dg.MaterializeResult(
            asset_key="rejects",
            metadata={
                "accepted_applications": dg.MetadataValue.int(accepted),
                "rejected_by_field": dg.MetadataValue.md(
                    preview(["field", "rows"], by_field) if by_field else "no rejects"
                ),
                **table_metadata(conn, "rejects", IN_RUN_DAYS, [days]),
            },
        ))
    rate = rejected_rows / raw if raw else 0.0
    yield from selected(context, dg.AssetCheckResult(
        asset_key="rejects",
        check_name="reject_rate_below_threshold",
        passed=rate <= source.max_reject_rate,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "reject_rate": dg.MetadataValue.float(round(rate, 4)),
            "threshold": dg.MetadataValue.float(source.max_reject_rate),
            "rejected_rows": dg.MetadataValue.int(rejected_rows),
            "raw_rows": dg.MetadataValue.int(raw),
        },
    ))


class PlanConfig(dg.Config):
    max_change_share: float | None = None
    """Overrides LSQ_MAX_CHANGE_SHARE for this run (e.g. 1.0 for a deliberate mass update)."""
    retry_source_ids: list[str] = []
    """Failed records to send again now, refused or out of attempts (the `retry` command)."""
    retry_all_failed: bool = False
    """Send every failed record again now."""


@dg.asset(
    deps=["opportunity_records", "activity_records"],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    group_name="transform",
    check_specs=[
        dg.AssetCheckSpec(
            "change_share_below_threshold",
            asset="sync_plan",
            description="The plan updates at most LSQ_MAX_CHANGE_SHARE of the known opportunities; above it "
            "(a broken mapping, a corrupted export) the run stops before the push. Override per run "
            "with the asset's config `max_change_share`.",
            blocking=True,
        )
    ],
)
def sync_plan(
    context: dg.AssetExecutionContext, config: PlanConfig, warehouse: DuckDBResource, source: SourceResource
):
    """What to send: creates, updates with only the changed fields, activities; unchanged and
    stale records send nothing. Computed against the state table, so re-planning is harmless."""
    days = run_days(context)
    mapping = source.load_mapping()
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        counts = plan_rules.plan_days(
            conn, days, mapping, max_attempts=source.max_attempts,
            retry_ids=config.retry_source_ids, retry_all_failed=config.retry_all_failed,
        )
        known = conn.execute("SELECT count(*) FROM opportunity_state WHERE opportunity_id IS NOT NULL").fetchone()[0]
        activities = conn.execute(
            f"SELECT count(*) FROM activity_plan WHERE {IN_RUN_DAYS}", [days]
        ).fetchone()[0]
        batches = {
            action: -(-counts.get(action, 0) // MAX_ITEMS_PER_WRITE) for action in ("create", "update")
        }
        context.log.debug(f"plan {days[0]}..{days[-1]}: {counts}, {activities} activities")
        yield dg.MaterializeResult(
            metadata={
                **{f"planned_{action}": dg.MetadataValue.int(counts.get(action, 0)) for action in plan_rules.ACTIONS},
                "mode": dg.MetadataValue.text(mapping.opportunity.mode),
                "planned_activities": dg.MetadataValue.int(activities),
                "create_batches": dg.MetadataValue.int(batches["create"]),
                "update_batches": dg.MetadataValue.int(batches["update"]),
                **table_metadata(conn, "sync_plan", IN_RUN_DAYS, [days]),
            }
        )
    threshold = source.max_change_share if config.max_change_share is None else config.max_change_share
    share = counts.get("update", 0) / known if known else 0.0
    yield dg.AssetCheckResult(
        asset_key="sync_plan",
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


@dg.asset(
    deps=["sync_plan"],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    pool=API_POOL,
    kinds={"duckdb"},
    group_name="push",
)
def push_journal(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    leadsquared: LeadSquaredResource,
    source: SourceResource,
):
    """Send the plan to LeadSquared and journal every batch before it goes and every row's
    answer after. A crashed run is resumed by simply running it again: creates that landed come
    back as the existing opportunity, and activities whose answer was lost are never re-sent."""
    days = run_days(context)
    mapping = source.load_mapping()
    client = leadsquared.get_client()
    before = client.stats()
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
    summary = Pusher(
        warehouse.get_connection, client, mapping, context.run.run_id, context.log.info,
        run_is_alive=lambda run_id: run_is_alive(context.instance, run_id),
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
        journal_meta = table_metadata(conn, "push_journal", "run_id = $1", [run_id])
        counts = history.action_counts(conn, run_id, days)
        errors = history.record_errors(conn, run_id, days)
        errors_csv = history.write_errors_csv(conn, run_id, errors_csv_path(warehouse.database, run_id))
    return dg.MaterializeResult(
        metadata={
            **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
            "errors": dg.MetadataValue.int(errors),
            "errors_csv": dg.MetadataValue.path(str(errors_csv.resolve())),
            "lead_bulk_calls": dg.MetadataValue.int(summary.lead_calls),
            "leads_sent_in_bulk": dg.MetadataValue.int(summary.leads_sent),
            "lead_bulk_calls_failed": dg.MetadataValue.int(summary.lead_calls_failed),
            "created": dg.MetadataValue.int(summary.created),
            "already_existed": dg.MetadataValue.int(summary.already_existed),
            "captured_with_new_lead": dg.MetadataValue.int(summary.captured),
            "updated": dg.MetadataValue.int(summary.updated),
            "failed": dg.MetadataValue.int(summary.failed),
            "split_calls": dg.MetadataValue.int(summary.split_calls),
            "unknown_from_dead_runs": dg.MetadataValue.int(sum(summary.interrupted_before.values())),
            "activities_created": dg.MetadataValue.int(summary.activities_created),
            "activities_failed": dg.MetadataValue.int(summary.activities_failed),
            "activities_unknown": dg.MetadataValue.int(summary.activities_unknown),
            "items_per_second": dg.MetadataValue.float(
                round(summary.writes / summary.seconds, 1) if summary.seconds else 0.0
            ),
            "daily_budget_exhausted": dg.MetadataValue.bool(summary.daily_budget_exhausted),
            "records_waiting": dg.MetadataValue.int(summary.records_waiting),
            "activities_waiting": dg.MetadataValue.int(summary.activities_waiting),
            **api_metadata(before, client.stats()),
            **journal_meta,
        }
    )


class ReconcileConfig(dg.Config):
    full: bool = False
    """Read back every known opportunity, not only those this run touched (finds drift made
    behind the pipeline's back)."""


@dg.asset(
    deps=["push_journal"],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    pool=API_POOL,
    kinds={"duckdb"},
    group_name="reconcile",
    check_specs=[
        dg.AssetCheckSpec(
            "one_opportunity_per_record",
            asset="opportunity_state",
            description="No source record holds two opportunities, and no opportunity serves two records.",
        ),
        dg.AssetCheckSpec(
            "pushed_records_in_sync",
            asset="opportunity_state",
            description="Every record read back agrees with what was sent; drift is reported with its fields. "
            "A record LeadSquared's lagging reads do not show yet is pending: neither failed nor in sync.",
        ),
    ],
)
def opportunity_state(
    context: dg.AssetExecutionContext,
    config: ReconcileConfig,
    warehouse: DuckDBResource,
    leadsquared: LeadSquaredResource,
    source: SourceResource,
):
    """The state table: one row per source record with its opportunity id, what was sent, what
    LeadSquared holds (read back with GetOpportunitiesById) and whether they agree."""
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
        statuses = dict(conn.execute("SELECT status, count(*) FROM opportunity_state GROUP BY status").fetchall())
        doubled = conn.execute(
            """
            SELECT 'opportunity ' || opportunity_id || ' serves ' || string_agg(source_id, ', ')
            FROM opportunity_state WHERE opportunity_id IS NOT NULL
            GROUP BY opportunity_id HAVING count(*) > 1
            UNION ALL
            SELECT 'record ' || source_id || ' got ' || string_agg(DISTINCT opportunity_id, ', ')
            FROM push_journal WHERE status = 'ok' AND kind IN ('create', 'capture')
            GROUP BY source_id HAVING count(DISTINCT opportunity_id) > 1
            """
        ).fetchall()
        drifted = conn.execute(
            f"""SELECT source_id, opportunity_id, array_to_string(drift_fields, ', ') FROM opportunity_state
               WHERE status = 'drifted' ORDER BY source_id LIMIT {DRIFT_PREVIEW_ROWS}"""
        ).fetchall()
        state_meta = table_metadata(conn, "opportunity_state", "TRUE", [])
    yield dg.MaterializeResult(
        metadata={
            "checked": dg.MetadataValue.int(summary.checked),
            "in_sync": dg.MetadataValue.int(summary.in_sync),
            "drifted": dg.MetadataValue.int(summary.drifted),
            "not_found_on_read": dg.MetadataValue.int(summary.not_found),
            "pending_read_back": dg.MetadataValue.int(summary.pending),
            "missing": dg.MetadataValue.int(summary.missing),
            "newly_rejected": dg.MetadataValue.int(summary.rejected),
            "repaired": dg.MetadataValue.int(summary.repaired),
            "drift_details": dg.MetadataValue.md(
                preview(["source_id", "opportunity_id", "field", "sent", "held", "modified_on", "repaired"],
                        summary.drift_details[:DRIFT_PREVIEW_ROWS])
                if summary.drift_details else "no drift"
            ),
            "full_reconcile": dg.MetadataValue.bool(config.full),
            "daily_budget_exhausted": dg.MetadataValue.bool(day_spent),
            "states": dg.MetadataValue.json(statuses),
            **api_metadata(before, client.stats()),
            **state_meta,
        }
    )
    yield dg.AssetCheckResult(
        asset_key="opportunity_state",
        check_name="one_opportunity_per_record",
        passed=not doubled,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {row[0]}" for row in doubled) or "none")},
    )
    yield dg.AssetCheckResult(
        asset_key="opportunity_state",
        check_name="pushed_records_in_sync",
        passed=summary.drifted == 0 and summary.missing == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "checked": dg.MetadataValue.int(summary.checked),
            "in_sync": dg.MetadataValue.int(summary.in_sync),
            "pending_read_back": dg.MetadataValue.int(summary.pending),
            "drifted": dg.MetadataValue.int(summary.drifted),
            "missing": dg.MetadataValue.int(summary.missing),
            "drift": dg.MetadataValue.md(
                preview(["source_id", "opportunity_id", "fields"], drifted) if drifted else "none"
            ),
        },
    )
