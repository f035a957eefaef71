"""Reconcile: read pushed opportunities back from LeadSquared and settle the state table.

Nothing is trusted until it has been read back: a state row is `in_sync` only when every field
LeadSquared holds equals what was sent; otherwise it is `drifted`, naming the fields."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from lsq_pipeline.leadsquared import LeadSquaredClient
from lsq_pipeline.sync import state

LEADSQUARED_DATETIME = "%m/%d/%Y %I:%M:%S %p"
SENT_DATETIME = "%Y-%m-%d %H:%M:%S"


@dataclass
class ReconcileSummary:
    checked: int = 0
    in_sync: int = 0
    drifted: int = 0
    missing: int = 0
    rejected: int = 0
    read_calls: int = 0
    drift_examples: list[str] = field(default_factory=list)


def parse_leadsquared_datetime(value: str | None) -> datetime | None:
    """`M/D/YYYY h:mm:ss AM` (GetOpportunitiesById) or `YYYY-MM-DD HH:MM:SS` (what we send), UTC."""
    if not value:
        return None
    for pattern in (LEADSQUARED_DATETIME, SENT_DATETIME):
        try:
            return datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
    return None


def values_agree(sent: str | None, held: str | None) -> bool:
    """Equal as LeadSquared means it: numbers by value, dates by instant, ids without case."""
    sent, held = (sent or "").strip(), (held or "").strip()
    if sent == held:
        return True
    if not sent or not held:
        return False
    try:
        return math.isclose(float(sent), float(held), rel_tol=0, abs_tol=1e-9)
    except ValueError:
        pass
    sent_time, held_time = parse_leadsquared_datetime(sent), parse_leadsquared_datetime(held)
    if sent_time and held_time:
        return sent_time == held_time
    return sent.lower() == held.lower() and len(sent) == 36  # GUIDs


def drift(sent_fields: dict[str, str], held: dict[str, str | None]) -> list[str]:
    """The schema names whose value in LeadSquared differs from what was sent."""
    return sorted(name for name, value in sent_fields.items() if not values_agree(value, held.get(name)))


def reconcile(
    conn_factory,
    client: LeadSquaredClient,
    event_code: int,
    days: Sequence[date],
    full: bool = False,
) -> ReconcileSummary:
    """Read back every pending opportunity (every known one when `full`), settle the state rows,
    and give rejected records of `days` a `rejected` state row."""
    summary = ReconcileSummary()
    with conn_factory() as conn:
        rows = conn.execute(
            f"""
            SELECT source_id, opportunity_id, sent_fields FROM opportunity_state
            WHERE opportunity_id IS NOT NULL AND event_code = $1
              AND {"TRUE" if full else "status = 'pending'"}
            """,
            [event_code],
        ).fetchall()
    sent_by_id = {opportunity_id: (source_id, json.loads(sent or "{}")) for source_id, opportunity_id, sent in rows}
    columns = sorted({"ModifiedOn", *(name for _, sent in sent_by_id.values() for name in sent)})
    held_by_id: dict[str, dict] = {}
    if sent_by_id:
        calls_before = client.stats().calls
        for opportunity in client.get_opportunities(event_code, list(sent_by_id), columns):
            held_by_id[opportunity["ProspectActivityId"]] = opportunity
        summary.read_calls = client.stats().calls - calls_before

    updates = []
    for opportunity_id, (source_id, sent) in sent_by_id.items():
        summary.checked += 1
        held = held_by_id.get(opportunity_id)
        if held is None:
            summary.missing += 1
            updates.append((source_id, "failed", None, None, None, [], "opportunity not found in LeadSquared"))
            continue
        differing = drift(sent, held)
        status = "drifted" if differing else "in_sync"
        if differing:
            summary.drifted += 1
            if len(summary.drift_examples) < 10:
                summary.drift_examples.append(f"{source_id}: {', '.join(differing)}")
        else:
            summary.in_sync += 1
        remote = {name: held.get(name) for name in columns}
        updates.append(
            (
                source_id,
                status,
                held.get("ProspectId"),
                json.dumps(remote, ensure_ascii=False, sort_keys=True),
                parse_leadsquared_datetime(held.get("ModifiedOn")),
                differing,
                None,
            )
        )
    with conn_factory() as conn:
        summary.rejected = state.settle(conn, updates, event_code, days)
    return summary
