"""Push a plan to LeadSquared: creates (leads not known to exist created in bulk while Bulk Add
and Capture spend the general window, see `leads`), updates (Bulk Update) and activities,
journalled batch by batch through `state`.

Safe to re-run: every create carries the source id in the field the type's duplicate rule
covers, so a create that already landed comes back as the existing opportunity instead of a
second one; a create that may have landed before (its answer was lost) goes with OverwriteFields.
Any other create goes with the mapping's `on_existing` / `keep_owner` flags: when it meets an
opportunity this pipeline did not create, that is an adoption. Without that rule (the mapping's
`opportunity.source_id.duplicate_rule: false`) creates are refused, never risked. A call refused
whole with an MX error is split in halves, down to single rows, each half journalled before it
goes, so one bad record never takes the good ones with it and no row is sent twice. When the
day's call budget runs out the push stops, and what was not sent stays planned."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date

import duckdb

from lsq_pipeline.leadsquared import (
    DailyBudgetExhausted,
    LeadSquaredClient,
    RateLimitedError,
    RowResult,
    TransientError,
    fields_from_dict,
)
from lsq_pipeline.leadsquared.errors import LeadSquaredAPIError
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.sync import leads, state
from lsq_pipeline.sync.mapping import Adoption, Mapping
from lsq_pipeline.sync.progress import PushProgress
from lsq_pipeline.sync.state import JournalEntry
from lsq_pipeline.sync.warehouse import ReusedConnection

ConnectionFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
Send = Callable[[list[JournalEntry]], list[RowResult]]

# How many items go to the client at once between two journal writes: large enough to keep
# max_in_flight calls in the air, small enough that a crash leaves little unknown.
CHUNK_ITEMS = MAX_ITEMS_PER_WRITE * 20
BULK_LEAD_CALLS_IN_FLIGHT = 4
"""Lead bulk creates in the air at once: enough to keep a 5 / 5 s bulk window busy through 1 s of
latency and the wait for a general start."""

# How many times a create whose capture went unanswered is resolved within one push (each round
# loses its answer with the chance of any call, so a few make an unresolved record rare); after
# that the record is `failed` with the lost answer (retryable) and the next run resolves it.
RESOLVE_ROUNDS = 6

CALL_FAILURES = frozenset({TransientError.__name__, RateLimitedError.__name__})
"""How `_send` names a call that still failed after the client's retries (timeouts, 5xx, the rate limit)."""

# Bulk Add row failures that name a bad value of the record itself: Capture would refuse it
# the same way. Any other failure (a missing lead however worded, a bare `false`, a duplicate
# answered without an id) goes to Capture, whose documented answer decides.
REFUSED_VALUES = frozenset({
    "MXInvalidFieldValueException",
    "MXMandatoryAttributeMissingException",
    "MXInvalidActivityFieldsException",
    "MXSystemFieldUpdateException",
})


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
    adopted: int = 0
    """Of `already_existed`: creates that met an opportunity under the mapping's `on_existing` /
    `keep_owner` (adoptions whose baseline the read-back takes)."""
    captured: int = 0
    updated: int = 0
    failed: int = 0
    split_calls: int = 0
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
    found_again: int = 0
    """`missing` records found by the read once more before their re-create: only slow, not re-created."""

    @property
    def writes(self) -> int:
        return self.created + self.already_existed + self.captured + self.updated + self.activities_created


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _with_batch_ids(entries: list[JournalEntry]) -> list[JournalEntry]:
    """One batch id per API call's worth of items, as the client will split them."""
    for batch in _chunks(entries, MAX_ITEMS_PER_WRITE):
        batch_id = state.new_batch_id()
        for entry in batch:
            entry.batch_id = batch_id
    return entries


def _needs_capture(result: RowResult) -> bool:
    """A Bulk Add row that failed for a reason other than its own values (see REFUSED_VALUES)."""
    return not result.ok and result.exception_type not in REFUSED_VALUES


def _call_failed(result: RowResult) -> bool:
    """The whole Bulk Add call failed after the client's retries: no row was answered."""
    return result.exception_type in CALL_FAILURES


class Pusher:
    """Sends one run's plan; the journal and state rows are written through `state` as answers come.

    `run_is_alive(run_id)` tells whether another run that left rows `sent` is still running
    (its answers are on the way) or dead (its rows become `unknown`)."""

    def __init__(
        self,
        connect: ConnectionFactory,
        client: LeadSquaredClient,
        mapping: Mapping,
        run_id: str,
        log: Callable[[str], None] = lambda message: None,
        run_is_alive: Callable[[str], bool] = lambda run_id: False,
        leads_in_bulk: bool = True,
    ) -> None:
        """`leads_in_bulk=False`: no lead is created in bulk; every create goes to Bulk Add first and
        a missing lead to Capture. The journal's writes follow each other within milliseconds
        when calls are answered fast: they share one connection while they do (`ReusedConnection`)."""
        self.connect = ReusedConnection(connect)
        self.client = client
        self.mapping = mapping
        self.run_id = run_id
        self.log = log
        self.run_is_alive = run_is_alive
        self.leads_in_bulk = leads_in_bulk
        self.summary = PushSummary()
        self.progress = PushProgress(client, log)
        self._lock = threading.RLock()
        """Held while the summary changes (its lead counts aside) and while the warehouse is written
        (lanes run in threads)."""
        self._lead_counts_lock = threading.Lock()
        """Held while the bulk lanes count their calls: they write no journal, so they never wait
        behind the general lanes' warehouse writes."""
        self._captures_unknown: Counter[str] = Counter()
        """Captures per record whose answer was lost in this push."""
        self._adoption = mapping.opportunity.adoption()
        self._own_creates: set[str] = set()
        """Records whose earlier create may have landed (its answer was lost): their creates are ours
        to resolve, sent with OverwriteFields whatever `on_existing` says."""

    # -- the whole push ---------------------------------------------------------------------
    def push(self, days: Sequence[date]) -> PushSummary:
        started = time.monotonic()
        try:
            with self.connect() as conn:
                self.summary.interrupted_before = state.mark_interrupted(conn, self.run_id, self.run_is_alive)
                creates = self._planned(conn, days, "create")
                updates = self._planned(conn, days, "update")
            planned = len(creates) + len(updates)
            creates = self.read_missing_once_more(creates)
            self.progress.plan("creates", len(creates))
            self.progress.plan("updates", len(updates))
            with self.progress.reporting():
                self.push_creates(creates)
                self.push_updates(updates)
                self.push_activities(days)
        finally:
            self.connect.close()
        self.summary.seconds = time.monotonic() - started
        summary = self.summary
        answered = (summary.created + summary.already_existed + summary.captured + summary.updated + summary.failed
                    + summary.found_again)
        summary.records_waiting = planned - answered
        return summary

    def read_missing_once_more(self, creates: list[dict]) -> list[dict]:
        """Before a `missing` record is re-created, read it back once more: found now, it was only
        slow (its state row goes back to `pending` and nothing is sent); still not found, it goes to
        Bulk Add, where the duplicate rule answers if LeadSquared holds it after all. If that read
        fails, the missing records wait for the next run rather than being re-created unread."""
        with self.connect() as conn:
            missing = dict(conn.execute(
                """SELECT source_id, lower(opportunity_id) FROM opportunity_state
                   WHERE status = 'missing' AND source_id IN (SELECT unnest($1::VARCHAR[]))""",
                [[row["source_id"] for row in creates]],
            ).fetchall())
        if not missing:
            return creates
        try:
            held = {opportunity["ProspectActivityId"].lower() for opportunity in self.client.get_opportunities(
                self.mapping.opportunity.event_code, list(missing.values()), ["ModifiedOn"])}
        except DailyBudgetExhausted as error:
            self._day_spent(error)
            return [row for row in creates if row["source_id"] not in missing]
        except (TransientError, RateLimitedError) as error:
            self.log(f"{len(missing)} missing records wait for the next run: reading them once more failed: {error}")
            return [row for row in creates if row["source_id"] not in missing]
        found = {source_id for source_id, opportunity_id in missing.items() if opportunity_id in held}
        with self._lock, self.connect() as conn:
            state.found_again(conn, sorted(found))
        self.summary.found_again = len(found)
        self.log(f"missing records read once more: {len(found)} found (only slow), "
                 f"{len(missing) - len(found)} go to Bulk Add")
        return [row for row in creates if row["source_id"] not in found]

    def _planned(self, conn: duckdb.DuckDBPyConnection, days: Sequence[date], action: str) -> list[dict]:
        cursor = conn.execute(
            """
            SELECT day, source_id, opportunity_id, fields, full_fields, search_by_value, lead_fields,
                   owner_email, note, record_hash, source_updated_at
            FROM sync_plan_payloads WHERE action = $1 AND day IN (SELECT unnest($2::DATE[]))
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

    # -- sending, journalled, split when refused whole --------------------------------------------
    def _journal_sent(self, entries: list[JournalEntry], parent_batch_id: str | None = None) -> None:
        with self._lock, self.connect() as conn:
            state.record_sent(conn, self.run_id, entries, parent_batch_id)

    def _send(self, entries: list[JournalEntry], send: Send) -> list[tuple[JournalEntry, RowResult | None]]:
        """Send journalled entries; every entry comes back with its result. A call LeadSquared
        refused whole with an MX error wrote nothing: its rows are journalled `split` and sent
        again in two halves (each journalled first), down to single rows, whose result is then
        that error. A call still failing after the client's retries leaves its rows failed
        with a transient error (retried by a later run). Once the day's call budget is spent, an entry not sent comes back with
        `None` and the status `not_sent` (its record stays planned), and nothing more is sent."""
        if self.summary.daily_budget_exhausted:
            return self._not_sent(entries, [None] * len(entries))
        try:
            results: list[RowResult | None] = list(send(entries))
        except DailyBudgetExhausted as error:
            self._day_spent(error)
            return self._not_sent(entries, error.results or [None] * len(entries))
        except LeadSquaredAPIError as error:
            results = error.results or [None] * len(entries)
            refusal = error
        except (TransientError, RateLimitedError) as error:
            # Still failing after the client's retries (timeouts, 5xx, the rate limit): the
            # call's items end failed with that error and a later run sends them again (creates
            # are found by the duplicate rule, updates are idempotent); the push goes on.
            failed = RowResult(ok=False, exception_type=type(error).__name__, exception_message=str(error))
            return [(entry, result or failed) for entry, result in zip(entries, error.results or [None] * len(entries))]
        answered: list[tuple[JournalEntry, RowResult | None]] = [
            (entry, result) for entry, result in zip(entries, results) if result is not None
        ]
        refused: dict[str, list[JournalEntry]] = {}
        for entry, result in zip(entries, results):
            if result is None:
                refused.setdefault(entry.batch_id, []).append(entry)
        for batch_id, batch in refused.items():
            if len(batch) == 1:
                answered.append((batch[0], RowResult(ok=False, exception_type=refusal.exception_type,
                                                     exception_message=refusal.exception_message)))
                continue
            with self._lock, self.connect() as conn:
                state.record_split(conn, self.run_id, batch, f"{_error_text(refusal)} (whole call; sent again in halves)")
                self.summary.split_calls += 1
            middle = len(batch) // 2
            for half in (batch[:middle], batch[middle:]):
                copies = _with_batch_ids([_resend(entry) for entry in half])
                self._journal_sent(copies, parent_batch_id=batch_id)
                answered.extend(self._send(copies, send))
        return answered

    def _day_spent(self, error: DailyBudgetExhausted) -> None:
        with self._lock:
            if not self.summary.daily_budget_exhausted:
                self.log(f"stopping the push: {error}")
            self.summary.daily_budget_exhausted = True

    @staticmethod
    def _not_sent(
        entries: list[JournalEntry], results: list[RowResult | None]
    ) -> list[tuple[JournalEntry, RowResult | None]]:
        for entry, result in zip(entries, results):
            if result is None:
                entry.status, entry.error = "not_sent", "daily call budget spent"
        return list(zip(entries, results))

    # -- creates ------------------------------------------------------------------------------
    def _adopting(self, source_id: str) -> Adoption | None:
        """How this record's create merges into an opportunity it meets: the mapping's adoption,
        unless an earlier create of the record may have landed (then it is ours: OverwriteFields)."""
        return None if source_id in self._own_creates else self._adoption

    def _duplicate_flags(self, source_id: str) -> dict[str, bool]:
        adoption = self._adopting(source_id)
        return adoption.flags() if adoption else {"OverwriteFields": True}

    def _create_entry(self, kind: str, row: dict, payload: dict) -> JournalEntry:
        """A create's journal entry; `extra["adoption"]` says which adoption its flags ask for."""
        entry = JournalEntry(kind, row["day"], row["source_id"], payload)
        entry.extra["adoption"] = self._adopting(row["source_id"])
        return entry

    def _own_creates_of(self, rows: list[dict]) -> set[str]:
        """Records whose create may have landed before: a create or Capture unanswered in the journal
        (`unknown`, `sent`, or failed because the call failed after the client's retries), or an
        opportunity id in the state (a `missing` record re-created)."""
        with self.connect() as conn:
            found = conn.execute(
                """
                SELECT source_id FROM push_journal
                WHERE kind IN ('create', 'capture') AND source_id IN (SELECT unnest($1::VARCHAR[]))
                  AND (status IN ('sent', 'unknown')
                       OR (status = 'failed' AND split_part(error, ':', 1) IN (SELECT unnest($2::VARCHAR[]))))
                UNION
                SELECT source_id FROM opportunity_state
                WHERE opportunity_id IS NOT NULL AND source_id IN (SELECT unnest($1::VARCHAR[]))
                """,
                [[row["source_id"] for row in rows], sorted(CALL_FAILURES)],
            ).fetchall()
        return {source_id for (source_id,) in found}

    def _add_payload(self, row: dict) -> dict:
        payload = {
            "SearchByValue": row["search_by_value"],
            "OpportunityEventCode": self.mapping.opportunity.event_code,
            **self._duplicate_flags(row["source_id"]),
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
            **self._duplicate_flags(row["source_id"]),
            "Fields": _api_fields(row["fields"]),
        }
        if row.get("note"):
            opportunity["OpportunityNote"] = row["note"]
        return {"LeadDetails": lead_details, "Opportunity": opportunity}

    def push_creates(self, rows: list[dict], rounds: int = RESOLVE_ROUNDS) -> None:
        """Creates in two lanes, one per rate window (see `leads`): leads not known to exist are
        created in bulk while the general window adds opportunities (Bulk Add) to records whose
        lead exists and captures the others. A row Bulk Add could not create for a reason other
        than its own values goes to Capture; a capture whose answer was lost goes back to Bulk
        Add (which finds the lead if the capture landed), at most `rounds` times. Once the day's
        call budget is spent both lanes stop; what was not sent stays planned."""
        if rows and not self.mapping.opportunity.source_id.duplicate_rule:
            self._refuse_creates(rows)
            return
        if not rows or self.summary.daily_budget_exhausted:
            return
        by_source = {row["source_id"]: row for row in rows}
        if self._adoption is not None:
            self._own_creates = self._own_creates_of(rows)
        if self.leads_in_bulk:
            with self.connect() as conn:
                known = leads.known_leads(conn, [row["search_by_value"] for row in rows])
        else:
            known = {leads.lead_key(row["search_by_value"]) for row in rows}
        queue = leads.CreateQueue(rows, known)
        self.progress.plan("leads", queue.unknown_leads)
        lanes = [lambda: self._bulk_lane(queue)] * BULK_LEAD_CALLS_IN_FLIGHT
        lanes += [lambda: self._general_lane(queue, by_source, rounds)] * self.client.max_in_flight
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
                with self._lead_counts_lock:
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

    def _general_lane(self, queue: leads.CreateQueue, by_source: dict[str, dict], rounds: int) -> None:
        """Take units of the general window's work until every create is done."""
        try:
            while work := queue.take_work():
                to_capture: list[dict] = []
                to_add: list[dict] = []
                try:
                    if work.kind == "add":
                        to_capture = self._add_batch(work.rows, by_source)
                    else:
                        to_add = self._capture(work.rows, by_source, rounds)
                        if work.kind == "capture_lead":
                            self.progress.done("leads", len(work.rows))
                finally:
                    queue.work_done(work, to_capture=to_capture, to_add=to_add)
                if self.summary.daily_budget_exhausted:
                    queue.abort()
        except BaseException:
            queue.abort()
            raise

    def _lead_payload(self, row: dict) -> dict[str, str]:
        return {name: value for name, value in row["lead_fields"].items() if value}

    def _add_batch(self, rows: list[dict], by_source: dict[str, dict]) -> list[dict]:
        """One Bulk Add call; returns the rows it could not create for a reason other than their
        own values (a missing lead, however worded): they go to Capture."""
        search_by = self.mapping.opportunity.lead.search_by.field
        entries = _with_batch_ids([self._create_entry("create", r, self._add_payload(r)) for r in rows])
        self._journal_sent(entries)
        answered = self._send(entries, lambda batch: self.client.add_opportunities(search_by, [e.payload for e in batch]))
        to_capture: list[dict] = []
        with self._lock:
            for entry, result in answered:
                if result is None:
                    continue
                if result.ok:
                    self._created(entry, result, "created")
                elif _call_failed(result):
                    # Unanswered, the call may have created the opportunity (or an earlier Capture
                    # may have): a Capture now could make a second one. Failed (retryable); a later
                    # run's Bulk Add resolves it through the duplicate rule.
                    self._failed(entry, result)
                elif _needs_capture(result):
                    entry.status, entry.error = "failed", _error_text(result)
                    entry.extra["to_capture"] = True
                    to_capture.append(by_source[entry.source_id])
                else:
                    self._failed(entry, result)
            self._record([entry for entry, _ in answered], by_source)
            self.progress.done("creates", sum(result is not None for _, result in answered) - len(to_capture))
        return to_capture

    def _created(self, entry: JournalEntry, result: RowResult, counter: str) -> None:
        """A create answered: a new opportunity (counted in `counter`), or the existing one the
        type's duplicate rule found: adopted, when the create asked for an adoption."""
        entry.status, entry.opportunity_id = "ok", result.opportunity_id
        if not result.already_existed:
            entry.extra["adoption"] = None
        elif entry.extra.get("adoption") is not None:
            self.summary.adopted += 1
        counter = "already_existed" if result.already_existed else counter
        setattr(self.summary, counter, getattr(self.summary, counter) + 1)

    def _capture(self, rows: list[dict], by_source: dict[str, dict], rounds: int) -> list[dict]:
        """Capture: creates the lead if needed and the opportunity, or answers the existing one
        (`ConflictedOpportunityId`) under the type's duplicate rule. A capture whose answer was
        lost is never re-sent (Capture may not apply the rule): it is returned for Bulk Add, which
        finds the lead if the capture landed and answers its opportunity; after `rounds` lost
        answers the record is failed with that error, and a later run resolves it."""
        entries = _with_batch_ids([self._create_entry("capture", r, self._capture_payload(r)) for r in rows])
        self._journal_sent(entries)
        answered = self._send(entries, lambda batch: self.client.capture_opportunities([e.payload for e in batch]))
        to_add: list[dict] = []
        with self._lock:
            for entry, result in answered:
                if result is None:
                    continue
                if result.ok:
                    self._created(entry, result, "captured")
                elif result.outcome_unknown:
                    self._own_creates.add(entry.source_id)  # it may have landed: ours to resolve
                    self._captures_unknown[entry.source_id] += 1
                    if self._captures_unknown[entry.source_id] < rounds:
                        entry.status, entry.error = "unknown", _error_text(result)
                        entry.extra["to_add"] = True
                        to_add.append(by_source[entry.source_id])
                    else:  # the record is failed (retryable); its journal row keeps that the answer was lost
                        self._failed(entry, result)
                        entry.status = "unknown"
                else:
                    self._failed(entry, result)
            self._record([entry for entry, _ in answered], by_source)
            self.progress.done("creates", sum(result is not None for _, result in answered) - len(to_add))
        return to_add

    def _refuse_creates(self, rows: list[dict]) -> None:
        """No duplicate rule covers the source id: a lost answer or a re-run could double the
        opportunity, so nothing is created; each record is `failed`, naming the missing rule."""
        source_id = self.mapping.opportunity.source_id
        reason = (
            f"not created: no duplicate detection rule on {source_id.field} is declared for opportunity type "
            f"{self.mapping.opportunity.event_code} (mapping opportunity.source_id.duplicate_rule: false); "
            f"without one a lost answer or a re-run would create a second opportunity. Add the rule in "
            f"LeadSquared (Settings > Opportunities > Opportunity Types > Duplicate Detection) and set "
            f"duplicate_rule: true"
        )
        entries = []
        for row in rows:
            entry = JournalEntry("create", row["day"], row["source_id"], self._add_payload(row), status="failed")
            self._failed(entry, RowResult(ok=False, exception_type="NoDuplicateRule", exception_message=reason))
            entries.append(entry)
        with self.connect() as conn:
            state.record_answers(conn, self.run_id, entries, {row["source_id"]: row for row in rows},
                                 self.mapping.opportunity.event_code)

    # -- updates ------------------------------------------------------------------------------
    def push_updates(self, rows: list[dict]) -> None:
        """Bulk Update by opportunity id (safe to re-send)."""
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
            self._journal_sent(entries)
            answered = self._send(entries, lambda batch: self.client.update_opportunities([e.payload for e in batch]))
            for entry, result in answered:
                if result is None:
                    continue
                if result.ok:
                    entry.status = "ok"
                    self.summary.updated += 1
                else:
                    self._failed(entry, result)
            self._record([entry for entry, _ in answered], by_source)
            self.progress.done("updates", sum(result is not None for _, result in answered))

    def _failed(self, entry: JournalEntry, result: RowResult) -> None:
        entry.status, entry.error = "failed", _error_text(result)
        with self._lock:
            self.summary.failed += 1
            if len(self.summary.errors) < 20:
                self.summary.errors.append(f"{entry.source_id}: {entry.error}")

    def _record(self, entries: list[JournalEntry], rows_by_source: dict[str, dict]) -> None:
        with self._lock, self.connect() as conn:
            state.record_answers(conn, self.run_id, entries, rows_by_source, self.mapping.opportunity.event_code)

    # -- activities ---------------------------------------------------------------------------
    def push_activities(self, days: Sequence[date]) -> None:
        """Bulk activities, one call per opportunity; an activity whose answer was lost is
        `unknown` and never re-sent."""
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
            self._journal_sent(entries)

            def send_group(pair: tuple[str, list[JournalEntry]]) -> list[tuple[JournalEntry, RowResult]]:
                opportunity_id, items = pair
                return self._send(
                    items, lambda batch: self.client.add_activities(opportunity_id, [e.payload for e in batch])
                )

            with ThreadPoolExecutor(max_workers=self.client.max_in_flight) as pool:
                answered = [pair for per_opportunity in pool.map(send_group, group) for pair in per_opportunity]
            for entry, result in answered:
                if result is None:
                    continue
                if result.ok:
                    entry.status = "ok"
                    entry.extra["activity_id"] = result.activity_id
                elif result.outcome_unknown:
                    entry.status, entry.error = "unknown", _error_text(result)
                else:
                    entry.status, entry.error = "failed", _error_text(result)
            self._record_activities([entry for entry, _ in answered], sent=True)

    def _record_activities(self, entries: list[JournalEntry], sent: bool) -> None:
        if not entries:
            return
        settled = [e for e in entries if e.status != "not_sent"]
        self.summary.activities_waiting += len(entries) - len(settled)
        for entry in settled:
            counter = f"activities_{state.ACTIVITY_STATUS[entry.status]}"
            setattr(self.summary, counter, getattr(self.summary, counter) + 1)
        self.progress.done("activities", len(settled))
        with self.connect() as conn:
            state.record_activities(conn, self.run_id, entries, sent)


def _api_fields(values: dict[str, str]) -> list[dict]:
    """`{"mx_Custom_1": "A-1"}` as the API's list of SchemaName/Value pairs, JSON-ready for the journal."""
    return [field.to_api() for field in fields_from_dict(values)]


def _error_text(result) -> str:
    return ": ".join(part for part in (result.exception_type, result.exception_message) if part) or "unknown error"


def _resend(entry: JournalEntry) -> JournalEntry:
    """A fresh journal entry for the same item, to go out again in a split half."""
    return JournalEntry(entry.kind, entry.day, entry.source_id, entry.payload, event_id=entry.event_id,
                        opportunity_id=entry.opportunity_id)
