"""One account's asset checks: the guards that stop a run before anything is pushed (a bad
export, a plan that changes too much, a snapshot that lost too many records), and what LeadSquared
holds checked against the state table."""

from collections.abc import Iterator

import dagster as dg

from lsq_pipeline.orchestration.metadata import DRIFT_PREVIEW_ROWS, preview, selected
from lsq_pipeline.orchestration.translator import op_name
from lsq_pipeline.settings import AccountSettings
from lsq_pipeline.tables.report import summarize_state
from lsq_pipeline.tables.statuses import RecordStatus

REJECT_RATE = "reject_rate_below_threshold"
CHANGE_SHARE = "change_share_below_threshold"
GONE_SHARE = "gone_share_below_threshold"


def reject_rate_spec(rejects: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REJECT_RATE,
        asset=rejects,
        description="The share of rejected application rows stays under the account's max_reject_rate; "
        "above it the run stops before anything is pushed (a bad export).",
        blocking=True,
    )


def reject_rate(rejects: dg.AssetKey, counts: dict[str, int], threshold: float) -> dg.AssetCheckResult:
    """The transform's counts against the threshold: rejected rows among the days' application rows."""
    raw = counts["accepted"] + counts["rejected"] + counts["superseded"]  # the days' application rows
    rate = counts["rejected"] / raw if raw else 0.0
    return dg.AssetCheckResult(
        asset_key=rejects,
        check_name=REJECT_RATE,
        passed=rate <= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "reject_rate": dg.MetadataValue.float(round(rate, 4)),
            "threshold": dg.MetadataValue.float(threshold),
            "rejected_rows": dg.MetadataValue.int(counts["rejected"]),
            "raw_rows": dg.MetadataValue.int(raw),
        },
    )


def change_share_spec(sync_plan: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CHANGE_SHARE,
        asset=sync_plan,
        description="The plan updates at most the account's max_change_share of the known opportunities; above it "
        "(a broken mapping, a corrupted export) the run stops before the push. Override per run "
        "with the asset's config `max_change_share`.",
        blocking=True,
    )


def _share_within(
    sync_plan: dg.AssetKey, check_name: str, figures: tuple[str, str, str], part: int, known: int,
    threshold: float, problem: str,
) -> dg.AssetCheckResult:
    """`part` as a share of `known` at most `threshold`; `figures` names the share, the part and the
    known count in the metadata; `problem` says what went over, formatted with the share."""
    share = part / known if known else 0.0
    share_name, part_name, known_name = figures
    return dg.AssetCheckResult(
        asset_key=sync_plan,
        check_name=check_name,
        passed=share <= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if share <= threshold else problem.format(share=share, known=known, threshold=threshold),
        metadata={
            share_name: dg.MetadataValue.float(round(share, 4)),
            "threshold": dg.MetadataValue.float(threshold),
            part_name: dg.MetadataValue.int(part),
            known_name: dg.MetadataValue.int(known),
        },
    )


def change_share(sync_plan: dg.AssetKey, planned_updates: int, known: int, threshold: float) -> dg.AssetCheckResult:
    """The plan's updates as a share of the opportunities already known."""
    return _share_within(
        sync_plan, CHANGE_SHARE, ("change_share", "planned_updates", "known_opportunities"), planned_updates, known,
        threshold, "the plan updates {share:.0%} of the {known} known opportunities (limit {threshold:.0%}); "
                   "if intended, re-run with a higher max_change_share")


def gone_share_spec(sync_plan: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        GONE_SHARE,
        asset=sync_plan,
        description="A snapshot lacks at most the account's max_gone_share of the known records; above it (a broken "
        "upstream, an empty table) the run stops before the push and nothing is marked gone. Override per "
        "run with the asset's config `max_gone_share`.",
        blocking=True,
    )


def gone_share(sync_plan: dg.AssetKey, gone: int, known: int, threshold: float) -> dg.AssetCheckResult:
    """The records the snapshot lacks as a share of the records known before it."""
    return _share_within(
        sync_plan, GONE_SHARE, ("gone_share", "gone_records", "known_records"), gone, known, threshold,
        "the snapshot lacks {share:.0%} of the {known} known records (limit {threshold:.0%}); "
        "if the source really lost them, re-run with a higher max_gone_share")


def leadsquared_checks(settings: AccountSettings, keys: dict[str, dg.AssetKey]) -> dg.AssetChecksDefinition:
    """The checks of what LeadSquared holds, read from the state table the read-back just wrote."""
    held, warehouse_key = keys["leadsquared/opportunities"], settings.resource_key("warehouse")

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
        name=op_name(settings, "leadsquared_checks"),
        required_resource_keys={warehouse_key},
        can_subset=True,
    )
    def leadsquared_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        """What LeadSquared holds, checked against the state table the read-back just wrote."""
        with getattr(context.resources, warehouse_key).get_connection() as conn:
            state = summarize_state(conn, DRIFT_PREVIEW_ROWS)
        drifted, missing = state.statuses.get(RecordStatus.DRIFTED, 0), state.statuses.get(RecordStatus.MISSING, 0)
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
                "in_sync": dg.MetadataValue.int(state.statuses.get(RecordStatus.IN_SYNC, 0)),
                "pending_read_back": dg.MetadataValue.int(state.statuses.get(RecordStatus.PENDING, 0)),
                "drifted": dg.MetadataValue.int(drifted),
                "missing": dg.MetadataValue.int(missing),
                "drift": dg.MetadataValue.md(
                    preview(["source_id", "opportunity_id", "fields"], state.drifted) if state.drifted else "none"
                ),
            },
        ))

    return leadsquared_checks
