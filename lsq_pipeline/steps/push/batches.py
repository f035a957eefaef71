"""One push's batches: each written down in the journal before it leaves, sent through the client,
split in halves when LeadSquared refuses the call whole, its answers recorded through `state`; and
what the push did (`PushSummary`). The creates' lanes, the updates and the activities all send
through one `BatchSender`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from lsq_pipeline.leadsquared import (
    DailyBudgetExhausted,
    LeadSquaredAPIError,
    LeadSquaredClient,
    RateLimitedError,
    RowResult,
    TransientError,
)
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.tables import state
from lsq_pipeline.steps.push.progress import PushProgress
from lsq_pipeline.tables.records import JournalEntry
from lsq_pipeline.tables.statuses import Sent
from lsq_pipeline.warehouse.schema import ReusedConnection

Send = Callable[[list[JournalEntry]], list[RowResult]]
Answered = list[tuple[JournalEntry, RowResult | None]]
"""Each entry sent with its result; None when it was not sent (the day's call budget ran out)."""

CALL_FAILURES = frozenset({TransientError.__name__, RateLimitedError.__name__})
"""How `BatchSender.send` names a call that still failed after the client's retries (timeouts, 5xx, the rate limit)."""


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


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def with_batch_ids(entries: list[JournalEntry]) -> list[JournalEntry]:
    """One batch id per API call's worth of items, as the client will split them."""
    for batch in chunks(entries, MAX_ITEMS_PER_WRITE):
        batch_id = state.new_batch_id()
        for entry in batch:
            entry.batch_id = batch_id
    return entries


def error_text(result: RowResult | LeadSquaredAPIError) -> str:
    return ": ".join(part for part in (result.exception_type, result.exception_message) if part) or "unknown error"


class BatchSender:
    """Journals, sends and records the batches of one push. The creates' lanes run in threads:
    `lock` is held while the summary changes and while the warehouse is written."""

    def __init__(
        self,
        connect: ReusedConnection,
        client: LeadSquaredClient,
        run_id: str,
        event_code: int,
        log: Callable[[str], None],
    ) -> None:
        self.connect = connect
        self.client = client
        self.run_id = run_id
        self.event_code = event_code
        self.log = log
        self.summary = PushSummary()
        self.progress = PushProgress(client, log)
        self.lock = threading.RLock()

    def journal_sent(self, entries: list[JournalEntry], parent_batch_id: str | None = None) -> None:
        with self.lock, self.connect() as conn:
            state.record_sent(conn, self.run_id, entries, parent_batch_id)

    def send(self, entries: list[JournalEntry], send: Send) -> Answered:
        """Send journalled entries; every entry comes back with its result. A call LeadSquared
        refused whole with an MX error wrote nothing: its rows are journalled `split` and sent
        again in two halves (each journalled first), down to single rows, whose result is then
        that error. A call still failing after the client's retries leaves its rows failed
        with a transient error (retried by a later run). Once the day's call budget is spent, an
        entry not sent comes back with `None` and the status `not_sent` (its record stays
        planned), and nothing more is sent."""
        if self.summary.daily_budget_exhausted:
            return _not_sent(entries, [None] * len(entries))
        try:
            results: list[RowResult | None] = list(send(entries))
        except DailyBudgetExhausted as error:
            self.day_spent(error)
            return _not_sent(entries, error.results or [None] * len(entries))
        except LeadSquaredAPIError as error:
            results = error.results or [None] * len(entries)
            refusal = error
        except (TransientError, RateLimitedError) as error:
            # Still failing after the client's retries (timeouts, 5xx, the rate limit): the
            # call's items end failed with that error and a later run sends them again (creates
            # are found by the duplicate rule, updates are idempotent); the push goes on.
            failed = RowResult(ok=False, exception_type=type(error).__name__, exception_message=str(error))
            return [(entry, result or failed) for entry, result in zip(entries, error.results or [None] * len(entries))]
        answered: Answered = [(entry, result) for entry, result in zip(entries, results) if result is not None]
        refused: dict[str, list[JournalEntry]] = {}
        for entry, result in zip(entries, results):
            if result is None:
                refused.setdefault(entry.batch_id, []).append(entry)
        for batch_id, batch in refused.items():
            if len(batch) == 1:
                answered.append((batch[0], RowResult(ok=False, exception_type=refusal.exception_type,
                                                     exception_message=refusal.exception_message)))
                continue
            with self.lock, self.connect() as conn:
                state.record_split(conn, self.run_id, batch, f"{error_text(refusal)} (whole call; sent again in halves)")
                self.summary.split_calls += 1
            middle = len(batch) // 2
            for half in (batch[:middle], batch[middle:]):
                copies = with_batch_ids([entry.resent() for entry in half])
                self.journal_sent(copies, parent_batch_id=batch_id)
                answered.extend(self.send(copies, send))
        return answered

    def day_spent(self, error: DailyBudgetExhausted) -> None:
        """The day's call budget ran out: nothing more is sent in this push."""
        with self.lock:
            if not self.summary.daily_budget_exhausted:
                self.log(f"stopping the push: {error}")
            self.summary.daily_budget_exhausted = True

    def failed(self, entry: JournalEntry, result: RowResult) -> None:
        entry.status, entry.error = Sent.FAILED, error_text(result)
        with self.lock:
            self.summary.failed += 1
            if len(self.summary.errors) < 20:
                self.summary.errors.append(f"{entry.source_id}: {entry.error}")

    def record_answers(self, entries: list[JournalEntry]) -> None:
        """The answers of opportunity writes, into the journal and their records' state."""
        with self.lock, self.connect() as conn:
            state.record_answers(conn, self.run_id, entries, self.event_code)


def _not_sent(entries: list[JournalEntry], results: list[RowResult | None]) -> Answered:
    for entry, result in zip(entries, results):
        if result is None:
            entry.status, entry.error = Sent.NOT_SENT, "daily call budget spent"
    return list(zip(entries, results))
