"""The creates of one push, in two lanes that spend two rate windows at once.

The bulk lane creates the leads not known to exist with Create Leads in Bulk (the bulk window),
taking them from the front of the queue. The general lane (the general window) adds opportunities
with Bulk Add to records whose lead exists or was just sent, captures records whose Bulk Add found
no lead, and, when nothing else is ready, captures records whose lead nobody has sent yet, taking
them from the back. Neither lane waits for the other while there is work it can do.

Safe to re-run: every create carries the source id in the field the type's duplicate rule
covers, so a create that already landed comes back as the existing opportunity instead of a
second one; a create that may have landed before (its answer was lost) goes with OverwriteFields.
Any other create goes with the mapping's `on_existing` / `keep_owner` flags: when it meets an
opportunity this pipeline did not create, that is an adoption. Without that rule (the mapping's
`opportunity.source_id.duplicate_rule: false`) creates are refused, never risked.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from lsq_pipeline.leadsquared import (
    CaptureOpportunityDetails,
    CaptureRequest,
    DailyBudgetExhausted,
    LeadAttribute,
    OpportunityAdd,
    RowResult,
    fields_from_dict,
)
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE, MAX_LEADS_PER_BULK_CREATE
from lsq_pipeline.tables import opportunities
from lsq_pipeline.steps.push.batches import CALL_FAILURES, BatchSender, error_text, fail
from lsq_pipeline.mapping import Adoption, Mapping
from lsq_pipeline.tables.records import JournalEntry, PlannedRecord
from lsq_pipeline.tables.statuses import Kind, Sent

CAPTURES_PER_UNIT = 2
"""Captures one general worker sends together (the client runs them concurrently): fewer journal
writes per record, while the other workers keep the general window busy."""
BULK_LEAD_CALLS_IN_FLIGHT = 4
"""Lead bulk creates in the air at once: enough to keep a 5 / 5 s bulk window busy through 1 s of
latency and the wait for a general start."""

# How many times a create whose capture went unanswered is resolved within one push (each round
# loses its answer with the chance of any call, so a few make an unresolved record rare); after
# that the record is `failed` with the lost answer (retryable) and the next run resolves it.
RESOLVE_ROUNDS = 6

# Bulk Add row failures that name a bad value of the record itself: Capture would refuse it
# the same way. Any other failure (a missing lead however worded, a bare `false`, a duplicate
# answered without an id) goes to Capture, whose documented answer decides.
REFUSED_VALUES = frozenset({
    "MXInvalidFieldValueException",
    "MXMandatoryAttributeMissingException",
    "MXInvalidActivityFieldsException",
    "MXSystemFieldUpdateException",
})


def lead_key(search_by_value: str | None) -> str:
    """Unique lead fields (email, phone) match case-insensitively."""
    return (search_by_value or "").strip().lower()


def _needs_capture(result: RowResult) -> bool:
    """A Bulk Add row that failed for a reason other than its own values (see REFUSED_VALUES)."""
    return not result.ok and result.exception_type not in REFUSED_VALUES


def _call_failed(result: RowResult) -> bool:
    """The whole Bulk Add call failed after the client's retries: no row was answered."""
    return result.exception_type in CALL_FAILURES


class WorkKind(StrEnum):
    """What a unit of the general lane sends."""

    ADD = "add"
    """Bulk Add, up to 25 records."""
    CAPTURE = "capture"
    """Records Bulk Add could not create (e.g. no lead)."""
    CAPTURE_LEAD = "capture_lead"
    """Unsent leads' first records; the rest of their records go to Bulk Add once the captures answer."""


@dataclass
class Work:
    """One unit of the general lane."""

    kind: WorkKind
    rows: list[PlannedRecord]
    rest: list[PlannedRecord]


class CreateQueue:
    """The creates of one push, shared by the bulk lane and the general lane's workers."""

    def __init__(self, rows: Sequence[PlannedRecord], known: set[str]) -> None:
        self._changed = threading.Condition()
        self._ready: deque[PlannedRecord] = deque()
        groups: dict[str, list[PlannedRecord]] = {}
        for row in rows:
            key = lead_key(row.search_by_value)
            if key in known or not key:
                self._ready.append(row)
            else:
                groups.setdefault(key, []).append(row)
        self._unsent: deque[list[PlannedRecord]] = deque(groups.values())
        self._to_capture: deque[PlannedRecord] = deque()
        self._bulk_busy = 0
        self._general_busy = 0
        self._aborted = False
        self.unknown_leads = len(self._unsent)

    # -- the bulk lane --------------------------------------------------------------------------
    def take_leads(self, limit: int = MAX_LEADS_PER_BULK_CREATE) -> list[list[PlannedRecord]]:
        """Up to `limit` unsent leads from the front (each a list of its records); [] when none is left."""
        with self._changed:
            if self._aborted:
                return []
            taken = [self._unsent.popleft() for _ in range(min(limit, len(self._unsent)))]
            if taken:
                self._bulk_busy += 1
            return taken

    def leads_sent(self, groups: list[list[PlannedRecord]]) -> None:
        """The bulk call for these leads ended (however it ended): their records go to Bulk Add,
        whose per-row answer tells whether each lead exists."""
        with self._changed:
            self._ready.extend(row for group in groups for row in group)
            self._bulk_busy -= 1
            self._changed.notify_all()

    # -- the general lane -----------------------------------------------------------------------
    def take_work(self) -> Work | None:
        """The next unit for a general worker, waiting while the only work left is in flight;
        None when every create is done."""
        with self._changed:
            while not self._aborted:
                if self._to_capture:
                    count = min(CAPTURES_PER_UNIT, len(self._to_capture))
                    return self._start(Work(WorkKind.CAPTURE, [self._to_capture.popleft() for _ in range(count)], []))
                if len(self._ready) >= MAX_ITEMS_PER_WRITE:
                    return self._start(Work(WorkKind.ADD, self._pop_ready(MAX_ITEMS_PER_WRITE), []))
                if self._unsent:
                    groups = [self._unsent.pop() for _ in range(min(CAPTURES_PER_UNIT, len(self._unsent)))]
                    return self._start(Work(WorkKind.CAPTURE_LEAD, [g[0] for g in groups],
                                                 [r for g in groups for r in g[1:]]))
                if self._ready and not self._bulk_busy:
                    return self._start(Work(WorkKind.ADD, self._pop_ready(MAX_ITEMS_PER_WRITE), []))
                if not self._bulk_busy and not self._general_busy:
                    self._changed.notify_all()
                    return None
                self._changed.wait()
            return None

    def abort(self) -> None:
        """A lane failed: the others stop taking work."""
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def work_done(
        self, work: Work, to_capture: Sequence[PlannedRecord] = (), to_add: Sequence[PlannedRecord] = ()
    ) -> None:
        """A unit ended: `to_capture` rows (Bulk Add could not create them, e.g. no lead) go to
        Capture; `to_add` rows (a capture whose answer was lost) and a captured lead's other
        records go to Bulk Add."""
        with self._changed:
            self._to_capture.extend(to_capture)
            self._ready.extend([*to_add, *work.rest])
            self._general_busy -= 1
            self._changed.notify_all()

    def left(self) -> int:
        """Records not yet taken by either lane."""
        with self._changed:
            return len(self._ready) + len(self._to_capture) + sum(len(group) for group in self._unsent)

    def _start(self, work: Work) -> Work:
        self._general_busy += 1
        return work

    def _pop_ready(self, limit: int) -> list[PlannedRecord]:
        return [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]


class Creates:
    """Sends one push's creates through `sender`: the lanes run in threads, each batch journalled
    before it goes and its answers recorded as they come."""

    def __init__(self, sender: BatchSender, mapping: Mapping, leads_in_bulk: bool = True) -> None:
        """`leads_in_bulk=False`: no lead is created in bulk; every create goes to Bulk Add first and
        a missing lead to Capture."""
        self.sender = sender
        self.client = sender.client
        self.summary = sender.summary
        self.progress = sender.progress
        self.mapping = mapping
        self.leads_in_bulk = leads_in_bulk
        self._captures_unknown: Counter[str] = Counter()
        """Captures per record whose answer was lost in this push."""
        self._adoption = mapping.opportunity.adoption()
        self._own_creates: set[str] = set()
        """Records whose earlier create may have landed (its answer was lost): their creates are ours
        to resolve, sent with OverwriteFields whatever `on_existing` says."""

    def push(self, records: list[PlannedRecord], rounds: int = RESOLVE_ROUNDS) -> None:
        """Creates in two lanes, one per rate window: leads not known to exist are created in bulk
        while the general window adds opportunities (Bulk Add) to records whose lead exists and
        captures the others. A record Bulk Add could not create for a reason other than its own
        values goes to Capture; a capture whose answer was lost goes back to Bulk Add (which finds
        the lead if the capture landed), at most `rounds` times. Once the day's call budget is
        spent both lanes stop; what was not sent stays planned."""
        if records and not self.mapping.opportunity.source_id.duplicate_rule:
            self._refuse(records)
            return
        if not records or self.summary.daily_budget_exhausted:
            return
        keys = [lead_key(r.search_by_value) for r in records]
        with self.sender.connect() as conn:
            if self._adoption is not None:
                self._own_creates = opportunities.creates_that_may_have_landed(
                    conn, [r.source_id for r in records], CALL_FAILURES)
            known = opportunities.known_leads(conn, keys) if self.leads_in_bulk else set(keys)
        queue = CreateQueue(records, known)
        self.progress.plan("leads", queue.unknown_leads)
        lanes = [lambda: self._bulk_lane(queue)] * BULK_LEAD_CALLS_IN_FLIGHT
        lanes += [lambda: self._general_lane(queue, rounds)] * self.client.max_in_flight
        with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="lsq-push") as pool:
            futures = [pool.submit(lane) for lane in lanes]
            errors = [future.exception() for future in futures]
        first_error = next((error for error in errors if error is not None), None)
        if first_error is not None:
            raise first_error

    # -- the lanes ------------------------------------------------------------------------------
    def _bulk_lane(self, queue: CreateQueue) -> None:
        """Create leads, 50 a call, from the front of the queue until none is left unsent."""
        try:
            while groups := queue.take_leads():
                try:
                    batches = self.client.create_leads([self._lead(group[0]) for group in groups])
                except DailyBudgetExhausted as error:
                    self.sender.day_spent(error)
                    queue.abort()
                    return
                finally:
                    queue.leads_sent(groups)
                self.summary.count_lead_calls(batches)
                self.progress.done("leads", len(groups))
        except BaseException:
            queue.abort()
            raise

    def _general_lane(self, queue: CreateQueue, rounds: int) -> None:
        """Take units of the general window's work until every create is done."""
        try:
            while work := queue.take_work():
                to_capture: list[PlannedRecord] = []
                to_add: list[PlannedRecord] = []
                try:
                    if work.kind == WorkKind.ADD:
                        to_capture = self._add_batch(work.rows)
                    else:
                        to_add = self._capture(work.rows, rounds)
                        if work.kind == WorkKind.CAPTURE_LEAD:
                            self.progress.done("leads", len(work.rows))
                finally:
                    queue.work_done(work, to_capture=to_capture, to_add=to_add)
                if self.summary.daily_budget_exhausted:
                    queue.abort()
        except BaseException:
            queue.abort()
            raise

    # -- the calls ------------------------------------------------------------------------------
    def _add_batch(self, records: list[PlannedRecord]) -> list[PlannedRecord]:
        """One Bulk Add call; returns the records it could not create for a reason other than their
        own values (a missing lead, however worded): they go to Capture."""
        search_by = self.mapping.opportunity.lead.search_by.field
        entries = [self._entry(Kind.CREATE, record, self._add_item(record)) for record in records]
        answered = self.sender.send_batches(
            [entries], lambda batch: self.client.add_opportunities(search_by, [e.payload for e in batch]), _add_answered)
        return [entry.record for entry in answered if entry.passed_on]

    def _capture(self, records: list[PlannedRecord], rounds: int) -> list[PlannedRecord]:
        """Capture: creates the lead if needed and the opportunity, or answers the existing one
        (`ConflictedOpportunityId`) under the type's duplicate rule. A capture whose answer was
        lost is never re-sent (Capture may not apply the rule): it is returned for Bulk Add, which
        finds the lead if the capture landed and answers its opportunity; after `rounds` lost
        answers the record is failed with that error, and a later run resolves it."""

        def capture_answered(entry: JournalEntry) -> None:
            if entry.answer.ok or not entry.answer.outcome_unknown:
                _create_answered(entry)
                return
            self._own_creates.add(entry.source_id)  # it may have landed: ours to resolve
            self._captures_unknown[entry.source_id] += 1
            # Passed back to Bulk Add; after `rounds` the record is failed (retryable), and its
            # journal row keeps that the answer was lost.
            entry.status, entry.error = Sent.UNKNOWN, error_text(entry.answer)
            entry.passed_on = self._captures_unknown[entry.source_id] < rounds

        entries = [self._entry(Kind.CAPTURE, record, self._capture_item(record)) for record in records]
        answered = self.sender.send_batches(
            [entries], lambda batch: self.client.capture_opportunities([e.payload for e in batch]), capture_answered)
        return [entry.record for entry in answered if entry.passed_on]

    def _refuse(self, records: list[PlannedRecord]) -> None:
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
        entries = [JournalEntry.of_record(Kind.CREATE, record, self._add_item(record)) for record in records]
        for entry in entries:
            entry.answer = RowResult(ok=False, exception_type="NoDuplicateRule", exception_message=reason)
            fail(entry)
        self.sender.record(entries)

    # -- what a create sends ------------------------------------------------------------------------
    def _adopting(self, source_id: str) -> Adoption | None:
        """How this record's create merges into an opportunity it meets: the mapping's adoption,
        unless an earlier create of the record may have landed (then it is ours: OverwriteFields)."""
        return None if source_id in self._own_creates else self._adoption

    def _duplicate_flags(self, source_id: str) -> dict[str, bool]:
        adoption = self._adopting(source_id)
        return adoption.flags() if adoption else {"OverwriteFields": True}

    def _entry(self, kind: Kind, record: PlannedRecord, payload: OpportunityAdd | CaptureRequest) -> JournalEntry:
        """A create's journal entry, with the adoption its flags ask for."""
        return JournalEntry.of_record(kind, record, payload, adoption=self._adopting(record.source_id))

    def _add_item(self, record: PlannedRecord) -> OpportunityAdd:
        return OpportunityAdd(
            search_by_value=record.search_by_value,
            event_code=self.mapping.opportunity.event_code,
            note=record.note or None,
            owner_email=record.owner_email or None,
            fields=fields_from_dict(record.fields),
            **self._duplicate_flags(record.source_id),
        )

    def _capture_item(self, record: PlannedRecord) -> CaptureRequest:
        lead = self._lead(record)
        lead.append(LeadAttribute(attribute="SearchBy", value=self.mapping.opportunity.lead.search_by.field))
        return CaptureRequest(
            lead_details=lead,
            opportunity=CaptureOpportunityDetails(
                event_code=self.mapping.opportunity.event_code,
                note=record.note or None,
                fields=fields_from_dict(record.fields),
                **self._duplicate_flags(record.source_id),
            ),
        )

    @staticmethod
    def _lead(record: PlannedRecord) -> list[LeadAttribute]:
        """The record's lead fields that have a value."""
        return [LeadAttribute(attribute=name, value=value) for name, value in record.lead_fields.items() if value]


def _add_answered(entry: JournalEntry) -> None:
    """A Bulk Add row's answer. Unanswered (the whole call failed after the client's retries), the
    call may have created the opportunity (or an earlier Capture may have): a Capture now could make
    a second one, so the record is failed (retryable) and a later run's Bulk Add resolves it
    through the duplicate rule. A row that failed for a reason other than its own values goes on
    to Capture."""
    if entry.answer.ok:
        _create_answered(entry)
    elif _needs_capture(entry.answer) and not _call_failed(entry.answer):
        entry.status, entry.error, entry.passed_on = Sent.FAILED, error_text(entry.answer), True
    else:
        fail(entry)


def _create_answered(entry: JournalEntry) -> None:
    """A create answered: a new opportunity, or the existing one the type's duplicate rule found
    (adopted, when the create asked for an adoption); refused otherwise."""
    if not entry.answer.ok:
        fail(entry)
        return
    entry.status, entry.opportunity_id = Sent.OK, entry.answer.opportunity_id
    if not entry.answer.already_existed:
        entry.adoption = None
