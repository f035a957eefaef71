"""Push a plan to LeadSquared: creates (leads not known to exist created in bulk, then Bulk Add,
then Capture where the lead is still missing), updates (Bulk Update) and activities, journalled
batch by batch.

Safe to re-run: every create carries the source id in the field the type's duplicate rule
covers and is sent with OverwriteFields, so a create that already landed comes back as the
existing opportunity instead of a second one."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date

import duckdb

from lsq_pipeline.leadsquared import DailyBudgetExhausted, LeadSquaredClient, RowResult, fields_from_dict
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.sync import journal, leads
from lsq_pipeline.sync.journal import JournalEntry
from lsq_pipeline.sync.mapping import Mapping
from lsq_pipeline.sync.progress import PushProgress

ConnectionFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

# How many items go to the client at once between two journal writes: large enough to keep
# max_in_flight calls in the air, small enough that a crash leaves little unknown.
CHUNK_ITEMS = MAX_ITEMS_PER_WRITE * 20
BULK_LEAD_CALLS_IN_FLIGHT = 4
"""Lead bulk creates in the air at once: enough to keep a 5 / 5 s bulk window busy through 1 s of
latency and the wait for a general start."""


@dataclass
class PushSummary:
    """What one push did, for asset metadata and the demo's summary."""

    lead_calls: int = 0
    """Create Leads in Bulk calls, up to 50 leads each (the client's re-sends not counted)."""
    leads_sent: int = 0
    """Leads in bulk create calls that LeadSquared answered (new ones created, known ones left as they were)."""
    lead_calls_failed: int = 0
    """Lead bulk create calls refused or unanswered (their records went on to Bulk Add, then Capture)."""
    created: int = 0
    already_existed: int = 0
    captured: int = 0
    updated: int = 0
    failed: int = 0
    activities_created: int = 0
    activities_failed: int = 0
    activities_unknown: int = 0
    interrupted_before: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    daily_budget_exhausted: bool = False
    """The account's calls for the day ran out: what was not sent stays planned for the next run."""
    records_waiting: int = 0
    activities_waiting: int = 0

    @property
    def writes(self) -> int:
        return self.created + self.already_existed + self.captured + self.updated + self.activities_created


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _with_batch_ids(entries: list[JournalEntry]) -> list[JournalEntry]:
    """One batch id per API call's worth of items, as the client will split them."""
    for batch in _chunks(entries, MAX_ITEMS_PER_WRITE):
        batch_id = journal.new_batch_id()
        for entry in batch:
            entry.batch_id = batch_id
    return entries


def _is_missing_lead(exception_type: str | None, message: str | None) -> bool:
    text = f"{exception_type or ''} {message or ''}".lower()
    return "lead" in text and ("not found" in text or "does not exist" in text or "notfound" in text)


class Pusher:
    """Sends one run's plan; writes the journal and the pending state rows as answers come."""

    def __init__(
        self,
        connect: ConnectionFactory,
        client: LeadSquaredClient,
        mapping: Mapping,
        run_id: str,
        log: Callable[[str], None] = lambda message: None,
        leads_in_bulk: bool = True,
    ) -> None:
        """`leads_in_bulk=False`: no lead is created in bulk; every create goes to Bulk Add first and
        a missing lead to Capture."""
        self.connect = connect
        self.client = client
        self.mapping = mapping
        self.run_id = run_id
        self.log = log
        self.leads_in_bulk = leads_in_bulk
        self.summary = PushSummary()
        self.progress = PushProgress(client, log)
        self._lock = threading.RLock()
        """Held while the summary changes and while the warehouse is written (lanes run in threads)."""

    # -- the whole push ---------------------------------------------------------------------
    def push(self, days: Sequence[date]) -> PushSummary:
        started = time.monotonic()
        with self.connect() as conn:
            self.summary.interrupted_before = journal.mark_interrupted(conn)
            creates = self._planned(conn, days, "create")
            updates = self._planned(conn, days, "update")
        self.progress.plan("creates", len(creates))
        self.progress.plan("updates", len(updates))
        with self.progress.reporting():
            self._push_creates(creates)
            self._push_updates(updates)
            self._push_activities(days)
        self.summary.seconds = time.monotonic() - started
        summary = self.summary
        answered = summary.created + summary.already_existed + summary.captured + summary.updated + summary.failed
        summary.records_waiting = len(creates) + len(updates) - answered
        return summary

    def _day_spent(self, error: DailyBudgetExhausted) -> None:
        with self._lock:
            if not self.summary.daily_budget_exhausted:
                self.log(f"stopping the push: {error}")
            self.summary.daily_budget_exhausted = True

    def _send(self, call: Callable[[list[dict]], list[RowResult]], entries: list[JournalEntry]) -> list[RowResult | None]:
        """The client's results; once the day's call budget is spent, `None` for every item not
        sent (its entry becomes `not_sent`, its record stays planned) and nothing more is sent."""
        if not self.summary.daily_budget_exhausted:
            try:
                return call([e.payload for e in entries])
            except DailyBudgetExhausted as error:
                self._day_spent(error)
                results = error.results or [None] * len(entries)
        else:
            results = [None] * len(entries)
        for entry, result in zip(entries, results):
            if result is None:
                entry.status, entry.error = "not_sent", "daily call budget spent"
        return results

    def _planned(self, conn: duckdb.DuckDBPyConnection, days: Sequence[date], action: str) -> list[dict]:
        cursor = conn.execute(
            """
            SELECT day, source_id, opportunity_id, fields, full_fields, search_by_value, lead_fields,
                   owner_email, note, record_hash, source_updated_at
            FROM sync_plan WHERE action = $1 AND day IN (SELECT unnest($2::DATE[]))
            ORDER BY source_updated_at, source_id
            """,
            [action, list(days)],
        )
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        for row in rows:
            row["lead_fields_text"] = row["lead_fields"]
            for key in ("fields", "full_fields", "lead_fields"):
                row[key] = json.loads(row[key]) if row[key] else {}
        return rows

    # -- creates ------------------------------------------------------------------------------
    def _add_payload(self, row: dict) -> dict:
        payload = {
            "SearchByValue": row["search_by_value"],
            "OpportunityEventCode": self.mapping.opportunity.event_code,
            "OverwriteFields": True,
            "Fields": _api_fields(row["fields"]),
        }
        if row.get("note"):
            payload["OpportunityNote"] = row["note"]
        if row.get("owner_email"):
            payload["OpportunityOwnerEmail"] = row["owner_email"]
        return payload

    def _capture_payload(self, row: dict) -> dict:
        lead_details = [{"Attribute": k, "Value": v} for k, v in row["lead_fields"].items() if v]
        lead_details.append({"Attribute": "SearchBy", "Value": self.mapping.opportunity.lead.search_by.field})
        opportunity = {
            "OpportunityEventCode": self.mapping.opportunity.event_code,
            "OverwriteFields": True,
            "Fields": _api_fields(row["fields"]),
        }
        if row.get("note"):
            opportunity["OpportunityNote"] = row["note"]
        return {"LeadDetails": lead_details, "Opportunity": opportunity}

    def _push_creates(self, rows: list[dict]) -> None:
        """Leads not known to exist are created in bulk (the bulk window) while the general window
        adds opportunities to the records whose lead exists (Bulk Add) and captures the others."""
        if not rows:
            return
        by_source = {row["source_id"]: row for row in rows}
        if self.leads_in_bulk:
            with self.connect() as conn:
                known = leads.known_leads(conn, [row["search_by_value"] for row in rows])
        else:
            known = {leads.lead_key(row["search_by_value"]) for row in rows}
        queue = leads.CreateQueue(rows, known)
        self.progress.plan("leads", queue.unknown_leads)
        lanes = [lambda: self._bulk_lane(queue)] * BULK_LEAD_CALLS_IN_FLIGHT
        lanes += [lambda: self._general_lane(queue, by_source)] * self.client.max_in_flight
        with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="lsq-push") as pool:
            futures = [pool.submit(lane) for lane in lanes]
            errors = [future.exception() for future in futures]
        first_error = next((error for error in errors if error is not None), None)
        if first_error is not None:
            raise first_error

    def _bulk_lane(self, queue: leads.CreateQueue) -> None:
        """Create leads, 50 a call, from the front of the queue until none is left unsent."""
        try:
            while groups := queue.take_leads():
                try:
                    batches = self.client.create_leads([self._lead_payload(group[0]) for group in groups])
                except DailyBudgetExhausted as error:
                    self._day_spent(error)
                    queue.abort()
                    return
                finally:
                    queue.leads_sent(groups)
                with self._lock:
                    self.summary.lead_calls += len(batches)
                    for batch in batches:
                        if batch.status == "answered":
                            self.summary.leads_sent += batch.count
                        else:
                            self.summary.lead_calls_failed += 1
                    self.progress.done("leads", len(groups))
        except BaseException:
            queue.abort()
            raise

    def _general_lane(self, queue: leads.CreateQueue, by_source: dict[str, dict]) -> None:
        """Take units of the general window's work until every create is done."""
        try:
            while work := queue.take_work():
                lead_missing: list[dict] = []
                try:
                    if work.kind == "add":
                        lead_missing = self._add_batch(work.rows, by_source)
                    else:
                        self._capture(work.rows, by_source)
                        if work.kind == "capture_lead":
                            self.progress.done("leads", len(work.rows))
                finally:
                    queue.work_done(work, lead_missing)
                if self.summary.daily_budget_exhausted:
                    queue.abort()
        except BaseException:
            queue.abort()
            raise

    def _lead_payload(self, row: dict) -> dict[str, str]:
        return {name: value for name, value in row["lead_fields"].items() if value}

    def _add_batch(self, rows: list[dict], by_source: dict[str, dict]) -> list[dict]:
        """One Bulk Add call; returns the rows whose lead does not exist (they go to Capture)."""
        entries = _with_batch_ids([JournalEntry("create", r["day"], r["source_id"], self._add_payload(r)) for r in rows])
        with self._lock, self.connect() as conn:
            journal.record_sent(conn, self.run_id, entries)
        results = self._send(partial(self.client.add_opportunities, self.mapping.opportunity.lead.search_by.field), entries)
        missing_lead: list[dict] = []
        with self._lock:
            for entry, result in zip(entries, results):
                if result is None:
                    continue
                if result.ok:
                    entry.status, entry.opportunity_id = "ok", result.opportunity_id
                    if result.already_existed:
                        self.summary.already_existed += 1
                    else:
                        self.summary.created += 1
                elif _is_missing_lead(result.exception_type, result.exception_message):
                    entry.status, entry.error = "failed", _error_text(result)
                    entry.extra["to_capture"] = True
                    missing_lead.append(by_source[entry.source_id])
                else:
                    self._failed(entry, result)
            self._record(entries, by_source)
            self.progress.done("creates", len(entries) - len(missing_lead))
        return missing_lead

    def _capture(self, rows: list[dict], by_source: dict[str, dict]) -> None:
        """Capture each row: creates (or updates) its lead and adds the opportunity, one call each."""
        entries = _with_batch_ids([JournalEntry("capture", r["day"], r["source_id"], self._capture_payload(r)) for r in rows])
        with self._lock, self.connect() as conn:
            journal.record_sent(conn, self.run_id, entries)
        results = self._send(self.client.capture_opportunities, entries)
        with self._lock:
            for entry, result in zip(entries, results):
                if result is None:
                    continue
                if result.ok:
                    entry.status, entry.opportunity_id = "ok", result.opportunity_id
                    self.summary.captured += 1
                else:
                    self._failed(entry, result)
            self._record(entries, by_source)
            self.progress.done("creates", len(entries))

    # -- updates ------------------------------------------------------------------------------
    def _push_updates(self, rows: list[dict]) -> None:
        by_source = {row["source_id"]: row for row in rows}
        for chunk in _chunks(rows, CHUNK_ITEMS):
            if self.summary.daily_budget_exhausted:
                return
            entries = _with_batch_ids(
                [
                    JournalEntry(
                        "update",
                        r["day"],
                        r["source_id"],
                        {
                            "ProspectOpportunityId": r["opportunity_id"],
                            "OpportunityEventCode": self.mapping.opportunity.event_code,
                            "Fields": _api_fields(r["fields"]),
                        },
                        opportunity_id=r["opportunity_id"],
                    )
                    for r in chunk
                ]
            )
            with self.connect() as conn:
                journal.record_sent(conn, self.run_id, entries)
            results = self._send(self.client.update_opportunities, entries)
            for entry, result in zip(entries, results):
                if result is None:
                    continue
                if result.ok:
                    entry.status = "ok"
                    self.summary.updated += 1
                else:
                    self._failed(entry, result)
            self._record(entries, by_source)
            self.progress.done("updates", len(entries))

    def _failed(self, entry: JournalEntry, result) -> None:
        entry.status, entry.error = "failed", _error_text(result)
        self.summary.failed += 1
        if len(self.summary.errors) < 20:
            self.summary.errors.append(f"{entry.source_id}: {entry.error}")

    def _record(self, entries: list[JournalEntry], rows_by_source: dict[str, dict]) -> None:
        """Journal the answers and move the state rows, in one transaction."""
        ok = [e for e in entries if e.status == "ok"]
        failed = [e for e in entries if e.status == "failed" and not e.extra.get("to_capture")]
        with self.connect() as conn:
            conn.execute("BEGIN")
            journal.record_outcomes(conn, self.run_id, entries)
            _upsert_pending(conn, [(e, rows_by_source[e.source_id]) for e in ok], self.mapping.opportunity.event_code)
            _upsert_failed(conn, [(e, rows_by_source[e.source_id]) for e in failed], self.mapping.opportunity.event_code)
            conn.execute("COMMIT")

    # -- activities ---------------------------------------------------------------------------
    def _push_activities(self, days: Sequence[date]) -> None:
        with self.connect() as conn:
            cursor = conn.execute(
                """
                SELECT p.day, p.event_id, p.source_id, s.opportunity_id, p.activity_event,
                       p.owner_email, p.note, p.fields
                FROM activity_plan p
                LEFT JOIN opportunity_state s USING (source_id)
                WHERE p.day IN (SELECT unnest($1::DATE[]))
                  AND p.event_id NOT IN (
                      SELECT event_id FROM activity_state WHERE status IN ('created', 'unknown'))
                ORDER BY s.opportunity_id, p.occurred_at, p.event_id
                """,
                [list(days)],
            )
            rows = cursor.fetchall()
        by_opportunity: dict[str, list[JournalEntry]] = {}
        orphans: list[JournalEntry] = []
        for day, event_id, source_id, opportunity_id, event, owner, note, fields in rows:
            payload = {"ActivityEvent": int(event), "ActivityOwnerEmail": owner}
            if note:
                payload["ActivityNote"] = note
            parsed = json.loads(fields) if fields else {}
            if parsed:
                payload["Fields"] = _api_fields(parsed)
            entry = JournalEntry("activity", day, source_id, payload, event_id=event_id, opportunity_id=opportunity_id)
            if opportunity_id:
                by_opportunity.setdefault(opportunity_id, []).append(entry)
            else:
                entry.status, entry.error = "failed", f"application {source_id} has no opportunity yet"
                orphans.append(entry)
        self.progress.plan("activities", len(rows))
        self._record_activities(orphans, sent=False)
        # Each opportunity is its own call; the client runs them concurrently within its limits.
        pending = list(by_opportunity.items())
        for number, group in enumerate(_chunks(pending, CHUNK_ITEMS // MAX_ITEMS_PER_WRITE)):
            if self.summary.daily_budget_exhausted:
                rest = pending[number * (CHUNK_ITEMS // MAX_ITEMS_PER_WRITE) :]
                self.summary.activities_waiting += sum(len(items) for _, items in rest)
                return
            entries = [entry for _, items in group for entry in _with_batch_ids(items)]
            with self.connect() as conn:
                journal.record_sent(
                    conn,
                    self.run_id,
                    [
                        JournalEntry(e.kind, e.day, e.source_id, {**e.payload, "opportunity_id": e.opportunity_id},
                                     event_id=e.event_id, batch_id=e.batch_id)
                        for e in entries
                    ],
                )
            with ThreadPoolExecutor(max_workers=self.client.max_in_flight) as pool:
                results = pool.map(
                    lambda pair: self._send(partial(self.client.add_activities, pair[0]), pair[1]), group
                )
                flat = [result for per_opportunity in results for result in per_opportunity]
            for entry, result in zip(entries, flat):
                if result is None:
                    continue
                if result.ok:
                    entry.status = "ok"
                    entry.extra["activity_id"] = result.activity_id
                elif result.outcome_unknown:
                    entry.status, entry.error = "unknown", _error_text(result)
                else:
                    entry.status, entry.error = "failed", _error_text(result)
            self._record_activities(entries, sent=True)

    def _record_activities(self, entries: list[JournalEntry], sent: bool) -> None:
        if not entries:
            return
        status_of = {"ok": "created", "failed": "failed", "unknown": "unknown"}
        journalled = entries
        entries = [e for e in journalled if e.status != "not_sent"]
        self.summary.activities_waiting += len(journalled) - len(entries)
        for entry in entries:
            counter = f"activities_{status_of[entry.status]}"
            setattr(self.summary, counter, getattr(self.summary, counter) + 1)
        self.progress.done("activities", len(entries))
        with self.connect() as conn:
            conn.execute("BEGIN")
            if sent:
                journal.record_outcomes(conn, self.run_id, journalled)
            conn.execute(
                """
                INSERT OR REPLACE INTO activity_state
                    (event_id, source_id, opportunity_id, activity_id, status, error, pushed_at)
                SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5), unnest($6), now()
                """,
                [
                    [e.event_id for e in entries],
                    [e.source_id for e in entries],
                    [e.opportunity_id for e in entries],
                    [e.extra.get("activity_id") for e in entries],
                    [status_of[e.status] for e in entries],
                    [e.error for e in entries],
                ],
            )
            conn.execute("COMMIT")


def _api_fields(values: dict[str, str]) -> list[dict]:
    """`{"mx_Custom_1": "A-1"}` as the API's list of SchemaName/Value pairs, JSON-ready for the journal."""
    return [field.to_api() for field in fields_from_dict(values)]


def _error_text(result) -> str:
    return ": ".join(part for part in (result.exception_type, result.exception_message) if part) or "unknown error"


def _upsert_pending(conn: duckdb.DuckDBPyConnection, pairs: list[tuple[JournalEntry, dict]], event_code: int) -> None:
    """An answered write: the state row now holds the opportunity and what was sent, until reconcile."""
    if not pairs:
        return
    conn.execute(
        """
        INSERT INTO opportunity_state AS s
            (source_id, opportunity_id, event_code, sent_hash, sent_fields, source_updated_at, status, error,
             last_synced_at)
        SELECT unnest($1), unnest($2), $3, unnest($4), unnest($5)::JSON, unnest($6)::TIMESTAMP, 'pending', NULL, now()
        ON CONFLICT (source_id) DO UPDATE SET
            opportunity_id = excluded.opportunity_id, event_code = excluded.event_code,
            sent_hash = excluded.sent_hash, sent_fields = excluded.sent_fields,
            source_updated_at = excluded.source_updated_at, status = 'pending', error = NULL,
            last_synced_at = excluded.last_synced_at
        """,
        [
            [e.source_id for e, _ in pairs],
            [e.opportunity_id for e, _ in pairs],
            event_code,
            [row["record_hash"] for _, row in pairs],
            [json.dumps(row["full_fields"], ensure_ascii=False, sort_keys=True) for _, row in pairs],
            [row["source_updated_at"] for _, row in pairs],
        ],
    )


def _upsert_failed(conn: duckdb.DuckDBPyConnection, pairs: list[tuple[JournalEntry, dict]], event_code: int) -> None:
    """A refused write: the record is `failed` with the error; what was synced before stays, and
    a hash of the refused version (its fields and its lead's) is kept so that exact version is
    not sent again."""
    if not pairs:
        return
    conn.execute(
        """
        INSERT INTO opportunity_state AS s (source_id, event_code, status, error, failed_hash, last_synced_at)
        SELECT unnest($1), $2, 'failed', unnest($3), md5(concat_ws('|', unnest($4), unnest($5))), now()
        ON CONFLICT (source_id) DO UPDATE SET status = 'failed', error = excluded.error,
            failed_hash = excluded.failed_hash, last_synced_at = excluded.last_synced_at
        """,
        [[e.source_id for e, _ in pairs], event_code, [e.error for e, _ in pairs],
         [row["record_hash"] for _, row in pairs], [row["lead_fields_text"] for _, row in pairs]],
    )
