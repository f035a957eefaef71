"""Reconcile: read pushed opportunities back from LeadSquared and settle the state table.

Nothing is trusted until it has been read back: a state row is `in_sync` only when every field
LeadSquared holds equals what was sent; otherwise it is `drifted`, naming the fields."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from lsq_pipeline.leadsquared import LeadSquaredClient, fields_from_dict
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
    repaired: int = 0
    drift_examples: list[str] = field(default_factory=list)
    drift_details: list[tuple] = field(default_factory=list)
    """(source_id, opportunity_id, field, sent, held, modified_on, repaired) per drifted field."""


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


def drift(sent_fields: dict[str, str], held: dict[str, str | None], crm_owned: Sequence[str] = ()) -> list[str]:
    """The schema names whose value in LeadSquared differs from what was sent; a field the CRM's
    users own is theirs to change, never drift."""
    return sorted(name for name, value in sent_fields.items()
                  if name not in crm_owned and not values_agree(value, held.get(name)))


def reconcile(
    conn_factory,
    client: LeadSquaredClient,
    event_code: int,
    days: Sequence[date],
    full: bool = False,
    crm_owned: Sequence[str] = (),
    repaired: Sequence[str] = (),
) -> ReconcileSummary:
    """Read back every pending opportunity (every known one when `full`), settle the state rows,
    and give rejected records of `days` a `rejected` state row and those a sync mode skipped a
    `skipped` one. Fields in `crm_owned` never drift; drifted fields in `repaired` are sent
    again (their value as last sent) and the row waits `pending` for the next read-back."""
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
    details: dict[str, dict] = {}
    repairs: dict[str, tuple[str, list[str]]] = {}  # opportunity id -> (source id, fields)
    for opportunity_id, (source_id, sent) in sent_by_id.items():
        summary.checked += 1
        held = held_by_id.get(opportunity_id)
        if held is None:
            summary.missing += 1
            updates.append((source_id, "failed", None, None, None, [], "opportunity not found in LeadSquared"))
            continue
        differing = drift(sent, held, crm_owned)
        details[source_id] = {
            name: {"sent": sent.get(name), "held": held.get(name), "modified_on": held.get("ModifiedOn")}
            for name in differing
        }
        to_repair = [name for name in differing if name in repaired]
        if to_repair:
            repairs[opportunity_id] = (source_id, to_repair)
        status = "drifted" if differing else "in_sync"
        if differing:
            summary.drifted += 1
            if len(summary.drift_examples) < 10:
                summary.drift_examples.append(f"{source_id}: {', '.join(differing)}")
            summary.drift_details += [
                (source_id, opportunity_id, name, detail["sent"], detail["held"], detail["modified_on"],
                 name in to_repair)
                for name, detail in details[source_id].items()
            ]
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
    repaired_ok = _repair(client, event_code, repairs, sent_by_id)
    summary.repaired = len(repaired_ok)
    fully_repaired = {source_id for source_id, names in repaired_ok.items() if names == set(details[source_id])}
    summary.drifted -= len(fully_repaired)
    updates = [
        (source_id, "pending" if source_id in fully_repaired else status,
         *rest, drift_fields, error)
        for source_id, status, *rest, drift_fields, error in updates
    ]
    with conn_factory() as conn:
        summary.rejected = state.settle(conn, updates, event_code, days, details, repaired_ok)
    return summary


def _repair(client: LeadSquaredClient, event_code: int, repairs: dict[str, tuple[str, list[str]]],
            sent_by_id: dict[str, tuple[str, dict]]) -> dict[str, set[str]]:
    """Send the drifted fields whose mapping says `on_drift: repair` again, with the value last
    sent. An update is safe to repeat, so it is not journaled: if this run dies, the next read-back
    finds the field repaired or drifted and settles it. Returns source id -> fields repaired."""
    if not repairs:
        return {}
    items = [
        {"ProspectOpportunityId": opportunity_id, "OpportunityEventCode": event_code,
         "Fields": [field.to_api() for field in fields_from_dict(
             {name: sent_by_id[opportunity_id][1][name] for name in names})]}
        for opportunity_id, (_, names) in repairs.items()
    ]
    results = client.update_opportunities(items)
    return {source_id: set(names) for (source_id, names), result in zip(repairs.values(), results) if result.ok}
