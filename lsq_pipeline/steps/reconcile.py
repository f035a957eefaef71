"""Reconcile: read pushed opportunities back from LeadSquared and settle the state table.

Nothing is trusted until it has been read back: a state row is `in_sync` only when every field
LeadSquared holds equals what was sent; otherwise it is `drifted`, naming the fields. Reads lag
writes, so a fresh write the read does not show yet stays `pending` ("not yet") during a grace,
and only then becomes `missing` ("gone"): docs/read-lag.md."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone

from lsq_pipeline.leadsquared import LeadSquaredClient, OpportunityRecord, OpportunityUpdate, fields_from_dict
from lsq_pipeline.tables import opportunities
from lsq_pipeline.tables.records import ReadBack
from lsq_pipeline.mapping import Adoption
from lsq_pipeline.tables.statuses import RecordStatus
from lsq_pipeline.warehouse.connection import ReusedConnection
from lsq_pipeline.warehouse.sql import literal, literal_list

LEADSQUARED_DATETIME = "%m/%d/%Y %I:%M:%S %p"
SENT_DATETIME = "%Y-%m-%d %H:%M:%S"


READ_BACK_GRACE_SECONDS = 1800.0
"""How long a record we wrote may stay unseen by the read-back before it is `missing` (the setting
`read_back_grace_seconds`): field reports describe reads that lag writes by seconds to minutes;
half an hour is 15 times the longest lag tested (120 s), and a daily schedule re-reads long after it."""
REREAD_AFTER_SECONDS = 5.0
"""The same run reads the rows still pending once more after this long: longer than the few seconds
of lag field reports describe, short enough to add little to a run."""


@dataclass
class ReconcileSummary:
    checked: int = 0
    in_sync: int = 0
    drifted: int = 0
    pending: int = 0
    """Rows left `pending`: not found yet or found as before our write, within the grace (and repaired ones)."""
    missing: int = 0
    """Rows left `missing`: not found past the grace."""
    not_found: int = 0
    """Rows the last read did not find (pending or missing)."""
    reread: int = 0
    """Rows read a second time in this run, after `REREAD_AFTER_SECONDS`."""
    rejected: int = 0
    read_calls: int = 0
    repaired: int = 0
    adopted: int = 0
    """Adoptions whose baseline this read-back took (what LeadSquared holds after the adoption)."""
    drift_examples: list[str] = field(default_factory=list)
    drift_details: list[tuple] = field(default_factory=list)
    """(source_id, opportunity_id, field, sent, held, modified_on, repaired) per drifted field."""


@dataclass(frozen=True)
class Tracked:
    """One state row to read back, with what tells "not yet" from "gone" and from drift."""

    source_id: str
    opportunity_id: str
    status: str
    sent: dict[str, str]
    earlier_sent: list[dict[str, str]]
    """The versions sent before our last write and not confirmed since, oldest first."""
    read_modified_on: datetime | None
    """LeadSquared's ModifiedOn at the last read that counted (before our last write, for a pending row)."""
    waited_seconds: float
    """How long the grace has run: since our last write (pending), 0 for a record confirmed before."""
    read_back_since: datetime | None
    confirmed_at: datetime | None
    adoption: Adoption | None = None
    """An adoption whose baseline is still to be taken from a read (see `adopted`)."""
    kept: dict[str, str] | None = None
    """Once taken: the fields where LeadSquared kept its own value rather than the one sent."""


def adopted(row: Tracked, held: dict) -> Tracked:
    """An adopted row as LeadSquared holds it after the adoption: `sent` becomes the baseline (what a
    create with the adoption's flags leaves in each field, from the values read: the same whether the
    read shows the opportunity before the create or after), `kept` the fields where that is not the
    value sent."""
    baseline = row.adoption.held_after(row.sent, held)
    kept = {name: value for name, value in baseline.items() if not values_agree(row.sent.get(name), value)}
    return replace(row, sent=baseline, kept=kept)


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


def not_yet(row: Tracked, held: dict, differing: Sequence[str]) -> bool:
    """A read-back that shows the opportunity as it stood before our write: its ModifiedOn is not
    newer than the one read before it, or its differing fields hold a version sent before this write
    and not confirmed since (never read before; or several writes inside one lag). Only
    LeadSquared's own ModifiedOn values are compared, never our clock."""
    held_modified_on = parse_leadsquared_datetime(held.get("ModifiedOn"))
    if row.read_modified_on is not None and held_modified_on is not None and held_modified_on <= row.read_modified_on:
        return True
    return any(all(values_agree(version.get(name), held.get(name)) for name in differing)
               for version in row.earlier_sent)


def _tracked(conn_factory, event_code: int, full: bool) -> list[Tracked]:
    """The rows to read back: pending and missing ones (every known one when `full`, but those gone
    from the source: nothing is changed for them, not even a repair). An adopted record's expected
    fields are what was sent with the fields LeadSquared kept laid over them."""
    statuses = (f"s.status IS DISTINCT FROM {literal(RecordStatus.GONE_FROM_SOURCE)}" if full
                else f"s.status IN {literal_list((RecordStatus.PENDING, RecordStatus.MISSING))}")
    with conn_factory() as conn:
        rows = conn.execute(
            f"""
            SELECT s.source_id, s.opportunity_id, s.status, s.sent_fields, s.earlier_sent_fields, s.remote_modified_on,
                   CASE WHEN s.status = {literal(RecordStatus.PENDING)}
                        THEN greatest(epoch(now()) - epoch(coalesce(s.read_back_since, s.last_synced_at)::TIMESTAMPTZ), 0)
                        ELSE 0 END,
                   s.read_back_since, s.confirmed_at, a.on_existing, a.keep_owner, a.kept_fields
            FROM opportunity_state s LEFT JOIN opportunity_adoption a USING (source_id)
            WHERE s.opportunity_id IS NOT NULL AND s.event_code = $1
              AND {statuses}
            """,
            [event_code],
        ).fetchall()
    tracked = []
    for (source_id, opportunity_id, status, sent, earlier, modified_on, waited, since, confirmed,
         on_existing, keep_owner, kept) in rows:
        sent = json.loads(sent or "{}")
        adoption = Adoption(on_existing, keep_owner) if on_existing is not None and kept is None else None
        if kept is not None:
            sent = {**sent, **{name: value for name, value in json.loads(kept).items() if name in sent}}
        tracked.append(Tracked(source_id, opportunity_id, status, sent, json.loads(earlier or "[]"), modified_on,
                               float(waited or 0), since, confirmed, adoption))
    return tracked


def read_back(client: LeadSquaredClient, event_code: int, opportunity_ids: Sequence[str],
              columns: Iterable[str]) -> dict[str, OpportunityRecord]:
    """GetOpportunitiesById: opportunity id, spelled as asked for, -> what LeadSquared holds; the
    ids it does not find are left out. Every read-back of the sync goes through here."""
    return {record.opportunity_id: record for record in client.get_opportunities(event_code, opportunity_ids, columns)}


def _read(client: LeadSquaredClient, event_code: int, rows: Sequence[Tracked],
          summary: ReconcileSummary) -> dict[str, OpportunityRecord]:
    """The rows read back, with every field any version of them was sent with, counting the calls."""
    if not rows:
        return {}
    columns = sorted({"ModifiedOn", *(name for row in rows for version in (row.sent, *row.earlier_sent)
                                      for name in version)})
    calls_before = client.stats().calls
    held = read_back(client, event_code, [row.opportunity_id for row in rows], columns)
    summary.read_calls += client.stats().calls - calls_before
    return held


def _missing_error(row: Tracked, waited: float, grace_seconds: float) -> str:
    since = (row.read_back_since or datetime.now(timezone.utc).replace(tzinfo=None)).strftime(SENT_DATETIME)
    confirmed = row.confirmed_at.strftime(SENT_DATETIME) + " UTC" if row.confirmed_at else "never"
    return (f"opportunity {row.opportunity_id} not found in LeadSquared since {since} UTC "
            f"({waited:.0f} s, past the read-back grace of {grace_seconds:g} s); last confirmed {confirmed}")


def decide(row: Tracked, held: dict | None, waited: float, grace_seconds: float,
           crm_owned: Sequence[str]) -> tuple[RecordStatus, list[str]]:
    """(status, differing fields) of one read-back: `in_sync`, `drifted`, `pending` (not yet) or `missing`."""
    if held is None:
        if row.status == RecordStatus.MISSING or waited >= grace_seconds:
            return RecordStatus.MISSING, []
        return RecordStatus.PENDING, []
    differing = drift(row.sent, held, crm_owned)
    if not differing:
        return RecordStatus.IN_SYNC, []
    if row.status == RecordStatus.PENDING and waited < grace_seconds and (row.adoption is not None or not_yet(row, held, differing)):
        return RecordStatus.PENDING, differing  # an adoption's merge may not show yet either
    return RecordStatus.DRIFTED, differing


def reconcile(
    conn_factory,
    client: LeadSquaredClient,
    event_code: int,
    days: Sequence[date],
    full: bool = False,
    crm_owned: Sequence[str] = (),
    repaired: Sequence[str] = (),
    grace_seconds: float = READ_BACK_GRACE_SECONDS,
    reread_after_seconds: float = REREAD_AFTER_SECONDS,
) -> ReconcileSummary:
    """Read back every pending and missing opportunity (every known one when `full`), settle the
    state rows, and give rejected records of `days` a `rejected` state row and those a sync mode
    skipped a `skipped` one. Fields in `crm_owned` never drift; drifted fields in `repaired` are
    sent again (their value as last sent) and the row waits `pending` for the next read-back.

    Reads lag writes: a row we wrote that the read does not find, or finds as it stood before our
    write, stays `pending` while its grace (`grace_seconds` from our last write) runs, and is read
    once more in this run after `reread_after_seconds`; past the grace a row not found is `missing`.
    A record confirmed before and not found now starts its grace at this read. Its warehouse
    uses around a fast read-back share one connection (`ReusedConnection`)."""
    conn_factory = ReusedConnection(conn_factory)
    try:
        return _reconcile(conn_factory, client, event_code, days, full, crm_owned, repaired, grace_seconds,
                          reread_after_seconds)
    finally:
        conn_factory.close()


Decision = tuple[Tracked, OpportunityRecord | None, str, list[str], float]
"""One row's read-back: (the row, what LeadSquared holds, status, differing fields, seconds waited)."""


def _read_and_decide(client: LeadSquaredClient, event_code: int, rows: Sequence[Tracked], summary: ReconcileSummary,
                     crm_owned: Sequence[str], grace_seconds: float, reread_after_seconds: float) -> dict[str, Decision]:
    """Source id -> its decision: every row read once, and those still `pending` read once more after
    `reread_after_seconds`, their grace run on by the time since the first read."""
    started = time.monotonic()
    held_by_id = _read(client, event_code, rows, summary)

    def judge(row: Tracked, held: OpportunityRecord | None, waited: float) -> Decision:
        if row.adoption is not None and held is not None:
            row = adopted(row, held)
        return (row, held, *decide(row, held, waited, grace_seconds, crm_owned), waited)

    decisions = {row.source_id: judge(row, held_by_id.get(row.opportunity_id), row.waited_seconds) for row in rows}
    waiting = [row for row in rows if decisions[row.source_id][2] == RecordStatus.PENDING]
    if waiting and reread_after_seconds > 0:
        time.sleep(reread_after_seconds)
        summary.reread = len(waiting)
        held_again = _read(client, event_code, waiting, summary)
        elapsed = time.monotonic() - started
        for row in waiting:
            decisions[row.source_id] = judge(row, held_again.get(row.opportunity_id), row.waited_seconds + elapsed)
    return decisions


def _reconcile(
    conn_factory: ReusedConnection,
    client: LeadSquaredClient,
    event_code: int,
    days: Sequence[date],
    full: bool,
    crm_owned: Sequence[str],
    repaired: Sequence[str],
    grace_seconds: float,
    reread_after_seconds: float,
) -> ReconcileSummary:
    summary = ReconcileSummary()
    rows = _tracked(conn_factory, event_code, full)
    decisions = _read_and_decide(client, event_code, rows, summary, crm_owned, grace_seconds, reread_after_seconds)
    updates: list[ReadBack] = []
    details: dict[str, dict] = {}
    repairs: dict[str, tuple[str, list[str]]] = {}  # opportunity id -> (source id, fields)
    for source_id, (row, held, status, differing, waited) in decisions.items():
        summary.checked += 1
        if held is None:
            summary.not_found += 1
            error = _missing_error(row, waited, grace_seconds) if status == RecordStatus.MISSING else None
            updates.append(ReadBack(source_id, status, error=error))
            continue
        if status == RecordStatus.PENDING:  # found as it stood before our write: not yet, keep what was last read
            updates.append(ReadBack(source_id, status))
            continue
        details[source_id] = {
            name: {"sent": row.sent.get(name), "held": held.get(name), "modified_on": held.get("ModifiedOn")}
            for name in differing
        }
        to_repair = [name for name in differing if name in repaired]
        if to_repair:
            repairs[row.opportunity_id] = (source_id, to_repair)
        if differing:
            if len(summary.drift_examples) < 10:
                summary.drift_examples.append(f"{source_id}: {', '.join(differing)}")
            summary.drift_details += [
                (source_id, row.opportunity_id, name, detail["sent"], detail["held"], detail["modified_on"],
                 name in to_repair)
                for name, detail in details[source_id].items()
            ]
        remote = {name: held.get(name) for name in sorted({"ModifiedOn", *row.sent})}
        updates.append(ReadBack(
            source_id, status, confirmed=True, lead_id=held.get("ProspectId"),
            remote_fields=json.dumps(remote, ensure_ascii=False, sort_keys=True),
            remote_modified_on=parse_leadsquared_datetime(held.get("ModifiedOn")), drift_fields=tuple(differing),
            kept_fields=None if row.kept is None else json.dumps(row.kept, ensure_ascii=False, sort_keys=True),
        ))
    sent_by_id = {row.opportunity_id: (row.source_id, row.sent) for row, *_ in decisions.values()}
    repaired_ok = _repair(client, event_code, repairs, sent_by_id)
    summary.repaired = len(repaired_ok)
    fully_repaired = {source_id for source_id, names in repaired_ok.items() if names == set(details[source_id])}
    updates = [replace(update, status=RecordStatus.PENDING, rewritten=True) if update.source_id in fully_repaired else update
               for update in updates]
    counts = Counter(update.status for update in updates)
    summary.in_sync, summary.drifted = counts[RecordStatus.IN_SYNC], counts[RecordStatus.DRIFTED]
    summary.pending, summary.missing = counts[RecordStatus.PENDING], counts[RecordStatus.MISSING]
    summary.adopted = sum(update.kept_fields is not None for update in updates)
    with conn_factory() as conn:
        summary.rejected = opportunities.settle(conn, updates, event_code, days, details, repaired_ok)
    return summary


def _repair(client: LeadSquaredClient, event_code: int, repairs: dict[str, tuple[str, list[str]]],
            sent_by_id: dict[str, tuple[str, dict]]) -> dict[str, set[str]]:
    """Send the drifted fields whose mapping says `on_drift: repair` again, with the value last
    sent. An update is safe to repeat, so it is not journaled: if this run dies, the next read-back
    finds the field repaired or drifted and settles it. Returns source id -> fields repaired."""
    if not repairs:
        return {}
    items = [
        OpportunityUpdate(opportunity_id=opportunity_id, event_code=event_code,
                          fields=fields_from_dict({name: sent_by_id[opportunity_id][1][name] for name in names}))
        for opportunity_id, (_, names) in repairs.items()
    ]
    results = client.update_opportunities(items)
    return {source_id: set(names) for (source_id, names), result in zip(repairs.values(), results) if result.ok}
