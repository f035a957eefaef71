"""What one push did (`PushSummary`), for asset metadata and the demo's summary. Its counters
change only through its methods, which the batch cycle and the creates' lanes call from several
threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from lsq_pipeline.leadsquared import LeadBatchResult, LeadCallStatus
from lsq_pipeline.tables.records import JournalEntry
from lsq_pipeline.tables.statuses import Kind, Sent

ERRORS_KEPT = 20
"""Refused records named in `PushSummary.errors`; the rest are in the journal."""


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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Held while a counter changes; never while the warehouse is written, so the bulk lane's
    counts never wait behind the journal."""

    @property
    def writes(self) -> int:
        return self.created + self.already_existed + self.captured + self.updated + self.activities_created

    def count(self, entries: Sequence[JournalEntry]) -> None:
        """Count settled entries by their status: answered writes, refused ones (the first
        `ERRORS_KEPT` named in `errors`) and activities left waiting. An entry passed on, or a
        record not sent, is not counted (records waiting are counted once, by `finish`)."""
        with self._lock:
            for entry in entries:
                if entry.kind == Kind.ACTIVITY:
                    self._count_activity(entry)
                elif entry.passed_on or entry.status == Sent.NOT_SENT:
                    continue
                elif entry.status == Sent.OK:
                    self._count_write(entry)
                else:
                    self.failed += 1
                    if len(self.errors) < ERRORS_KEPT:
                        self.errors.append(f"{entry.source_id}: {entry.error}")

    def _count_activity(self, entry: JournalEntry) -> None:
        if entry.status == Sent.OK:
            self.activities_created += 1
        elif entry.status == Sent.FAILED:
            self.activities_failed += 1
        elif entry.status == Sent.UNKNOWN:
            self.activities_unknown += 1
        elif entry.status == Sent.NOT_SENT:
            self.activities_waiting += 1

    def _count_write(self, entry: JournalEntry) -> None:
        """An answered write: an update, a new opportunity (created by Bulk Add or captured), or the
        existing one the type's duplicate rule found (adopted, when the create asked for it)."""
        if entry.kind == Kind.UPDATE:
            self.updated += 1
        elif entry.answer is not None and entry.answer.already_existed:
            self.already_existed += 1
            self.adopted += entry.adoption is not None
        elif entry.kind == Kind.CAPTURE:
            self.captured += 1
        else:
            self.created += 1

    def count_lead_calls(self, calls: Sequence[LeadBatchResult]) -> None:
        """Lead bulk create calls: leads answered, calls refused or unanswered."""
        with self._lock:
            self.lead_calls += len(calls)
            for call in calls:
                if call.status == LeadCallStatus.ANSWERED:
                    self.leads_sent += call.count
                else:
                    self.lead_calls_failed += 1

    def count_split(self) -> None:
        """A call refused whole, sent again in halves."""
        with self._lock:
            self.split_calls += 1

    def count_found_again(self, records: int) -> None:
        """`missing` records the read once more found: nothing is sent for them."""
        with self._lock:
            self.found_again += records

    def count_activities_waiting(self, activities: int) -> None:
        """Activities not sent because the day's call budget ran out: they stay planned."""
        with self._lock:
            self.activities_waiting += activities

    def stop_for_the_day(self) -> bool:
        """The day's call budget is spent; true the first time it is said."""
        with self._lock:
            first = not self.daily_budget_exhausted
            self.daily_budget_exhausted = True
            return first

    def finish(self, interrupted_before: dict[str, int], planned: int, seconds: float) -> None:
        """The push ended: rows left by dead runs, records planned but not answered, time taken."""
        with self._lock:
            self.interrupted_before = interrupted_before
            answered = (self.created + self.already_existed + self.captured + self.updated + self.failed
                        + self.found_again)
            self.records_waiting = planned - answered
            self.seconds = seconds
