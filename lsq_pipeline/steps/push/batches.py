"""The batch cycle every write of a push goes through, written once: each batch written down in
the journal before it leaves, sent through the client, split in halves when LeadSquared refuses the
call whole, its answers read by the batch kind's classifier, counted in the push's `PushSummary`
and recorded through the tables that own them (`journal`, `opportunities`, `activities`). The
creates' lanes, the updates and the activities all send through one `BatchSender`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from lsq_pipeline.leadsquared import (
    DailyBudgetExhausted,
    LeadSquaredAPIError,
    LeadSquaredClient,
    RateLimitedError,
    RowResult,
    TransientError,
)
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.tables import activities, journal, opportunities
from lsq_pipeline.steps.push.progress import PushProgress
from lsq_pipeline.steps.push.summary import PushSummary
from lsq_pipeline.tables.records import JournalEntry
from lsq_pipeline.tables.statuses import Kind, Sent
from lsq_pipeline.warehouse.connection import ReusedConnection

Send = Callable[[list[JournalEntry]], list[RowResult]]
"""One call of a batch kind: its entries' payloads to LeadSquared, one result per entry."""
Classify = Callable[[JournalEntry], None]
"""A batch kind's reading of one answer (`entry.answer`): the entry's status, error, ids."""

CALL_FAILURES = frozenset({TransientError.__name__, RateLimitedError.__name__})
"""How `BatchSender.send` names a call that still failed after the client's retries (timeouts, 5xx, the rate limit)."""

PROGRESS_ACTION = {Kind.CREATE: "creates", Kind.CAPTURE: "creates", Kind.UPDATE: "updates", Kind.ACTIVITY: "activities"}
"""The progress line's action for each kind of journal row."""


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def with_batch_ids(entries: list[JournalEntry]) -> list[JournalEntry]:
    """One batch id per API call's worth of items, as the client will split them."""
    for batch in chunks(entries, MAX_ITEMS_PER_WRITE):
        batch_id = journal.new_batch_id()
        for entry in batch:
            entry.batch_id = batch_id
    return entries


def error_text(result: RowResult | LeadSquaredAPIError) -> str:
    return ": ".join(part for part in (result.exception_type, result.exception_message) if part) or "unknown error"


def fail(entry: JournalEntry) -> None:
    """The entry's answer refused it: `failed` with the answer's error (retryable by a later run)."""
    entry.status, entry.error = Sent.FAILED, error_text(entry.answer)


class BatchSender:
    """Journals, sends, classifies and records the batches of one push. The creates' lanes run in
    threads: `lock` is held while answers are classified and while the warehouse is written."""

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

    def send_batches(self, groups: Sequence[list[JournalEntry]], call: Send, classify: Classify) -> list[JournalEntry]:
        """The batch cycle: journal every group's entries before any leaves, send each group
        through `call` (several groups at once, within the client's calls in flight), read each
        answer with `classify`, then count and record them all (see `record`). Returns the entries
        sent, each with its answer; a split call's halves stand for its entries."""
        entries = [entry for group in groups for entry in with_batch_ids(group)]
        self.journal_sent(entries)
        if len(groups) == 1:
            answered = self.send(groups[0], call)
        else:
            with ThreadPoolExecutor(max_workers=self.client.max_in_flight) as pool:
                answered = [entry for sent in pool.map(lambda group: self.send(group, call), groups) for entry in sent]
        with self.lock:
            for entry in answered:
                if entry.answer is not None:
                    classify(entry)
            self.record(answered)
        return answered

    def record(self, entries: list[JournalEntry], sent: bool = True) -> None:
        """Settled entries of one kind: counted in the summary, their answers written into the
        journal (when they were `sent`) and their records' or activities' state, and marked done
        in the progress (those passed on and those not sent excepted)."""
        if not entries:
            return
        self.summary.count(entries)
        kind = entries[0].kind
        with self.lock, self.connect() as conn:
            if kind == Kind.ACTIVITY:
                activities.record_activities(conn, self.run_id, entries, sent)
            else:
                opportunities.record_answers(conn, self.run_id, entries, self.event_code)
        self.progress.done(PROGRESS_ACTION[kind],
                           sum(entry.status != Sent.NOT_SENT and not entry.passed_on for entry in entries))

    def journal_sent(self, entries: list[JournalEntry], parent_batch_id: str | None = None) -> None:
        with self.lock, self.connect() as conn:
            journal.record_sent(conn, self.run_id, entries, parent_batch_id)

    def send(self, entries: list[JournalEntry], call: Send) -> list[JournalEntry]:
        """Send journalled entries; every entry comes back with its answer. A call LeadSquared
        refused whole with an MX error wrote nothing: its rows are journalled `split` and sent
        again in two halves (each journalled first), down to single rows, whose answer is then
        that error. A call still failing after the client's retries leaves its rows failed
        with a transient error (retried by a later run). Once the day's call budget is spent, an
        entry not sent comes back unanswered with the status `not_sent` (its record stays
        planned), and nothing more is sent."""
        if self.summary.daily_budget_exhausted:
            return _not_sent(entries, [None] * len(entries))
        try:
            results: list[RowResult | None] = list(call(entries))
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
            return _answered(entries, [result or failed for result in error.results or [None] * len(entries)])
        answered = _answered([e for e, r in zip(entries, results) if r is not None], [r for r in results if r is not None])
        refused: dict[str, list[JournalEntry]] = {}
        for entry, result in zip(entries, results):
            if result is None:
                refused.setdefault(entry.batch_id, []).append(entry)
        for batch_id, batch in refused.items():
            if len(batch) == 1:
                answered += _answered(batch, [RowResult(ok=False, exception_type=refusal.exception_type,
                                                        exception_message=refusal.exception_message)])
                continue
            with self.lock, self.connect() as conn:
                journal.record_split(conn, self.run_id, batch, f"{error_text(refusal)} (whole call; sent again in halves)")
            self.summary.count_split()
            middle = len(batch) // 2
            for half in (batch[:middle], batch[middle:]):
                copies = with_batch_ids([entry.resent() for entry in half])
                self.journal_sent(copies, parent_batch_id=batch_id)
                answered.extend(self.send(copies, call))
        return answered

    def day_spent(self, error: DailyBudgetExhausted) -> None:
        """The day's call budget ran out: nothing more is sent in this push."""
        if self.summary.stop_for_the_day():
            self.log(f"stopping the push: {error}")


def _answered(entries: list[JournalEntry], results: Sequence[RowResult | None]) -> list[JournalEntry]:
    """The entries with their answers attached, one per result."""
    answered = []
    for entry, result in zip(entries, results):
        entry.answer = result
        answered.append(entry)
    return answered


def _not_sent(entries: list[JournalEntry], results: list[RowResult | None]) -> list[JournalEntry]:
    for entry, result in zip(entries, results):
        if result is None:
            entry.status, entry.error = Sent.NOT_SENT, "daily call budget spent"
    return _answered(entries, results)
