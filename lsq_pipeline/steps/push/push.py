"""Push a plan to LeadSquared: the creates (see `creates`), then the updates (Bulk Update) and the
activities, each batch through the one batch cycle (`batches.BatchSender.send_batches`).

Safe to re-run: a create that already landed comes back as the existing opportunity (see
`creates`); an update is by opportunity id; an activity whose answer was lost is never sent again.
A call refused whole with an MX error is split in halves, down to single rows, each half
journalled before it goes, so one bad record never takes the good ones with it and no row is sent
twice (see `batches`). When the day's call budget runs out the push stops, and what was not sent
stays planned."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date

import duckdb

from lsq_pipeline.leadsquared import (
    ActivityAdd,
    DailyBudgetExhausted,
    LeadSquaredClient,
    OpportunityUpdate,
    RateLimitedError,
    TransientError,
    fields_from_dict,
)
from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE
from lsq_pipeline.steps import plan
from lsq_pipeline.steps.reconcile import read_back
from lsq_pipeline.tables import journal, opportunities
from lsq_pipeline.steps.push.batches import BatchSender, chunks, error_text, fail
from lsq_pipeline.steps.push.creates import Creates
from lsq_pipeline.steps.push.summary import PushSummary
from lsq_pipeline.mapping import Mapping
from lsq_pipeline.tables.records import JournalEntry, PlannedActivity, PlannedRecord
from lsq_pipeline.tables.statuses import Action, Kind, Sent
from lsq_pipeline.warehouse.connection import ReusedConnection

ConnectionFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

# How many items go to the client at once between two journal writes: large enough to keep
# max_in_flight calls in the air, small enough that a crash leaves little unknown.
CHUNK_ITEMS = MAX_ITEMS_PER_WRITE * 20


class Pusher:
    """Sends one run's plan; the journal and state rows are written by the batch cycle as answers come.

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
        self.sender = BatchSender(self.connect, client, run_id, mapping.opportunity.event_code, log)
        self.summary = self.sender.summary
        self.progress = self.sender.progress

    # -- the whole push ---------------------------------------------------------------------
    def push(self, days: Sequence[date]) -> PushSummary:
        started = time.monotonic()
        try:
            with self.connect() as conn:
                interrupted_before = journal.mark_interrupted(conn, self.run_id, self.run_is_alive)
                creates = plan.records_to_send(conn, days, Action.CREATE)
                updates = plan.records_to_send(conn, days, Action.UPDATE)
            planned = len(creates) + len(updates)
            creates = self.read_missing_once_more(creates)
            self.progress.plan("creates", len(creates))
            self.progress.plan("updates", len(updates))
            with self.progress.reporting():
                Creates(self.sender, self.mapping, self.leads_in_bulk).push(creates)
                self.push_updates(updates)
                self.push_activities(days)
        finally:
            self.connect.close()
        self.summary.finish(interrupted_before, planned, time.monotonic() - started)
        return self.summary

    def read_missing_once_more(self, creates: list[PlannedRecord]) -> list[PlannedRecord]:
        """Before a `missing` record is re-created, read it back once more: found now, it was only
        slow (its state row goes back to `pending` and nothing is sent); still not found, it goes to
        Bulk Add, where the duplicate rule answers if LeadSquared holds it after all. If that read
        fails, the missing records wait for the next run rather than being re-created unread."""
        with self.connect() as conn:
            missing = opportunities.missing_opportunities(conn, [record.source_id for record in creates])
        if not missing:
            return creates
        try:
            held = read_back(self.client, self.mapping.opportunity.event_code, list(missing.values()), ["ModifiedOn"])
        except DailyBudgetExhausted as error:
            self.sender.day_spent(error)
            return [record for record in creates if record.source_id not in missing]
        except (TransientError, RateLimitedError) as error:
            self.log(f"{len(missing)} missing records wait for the next run: reading them once more failed: {error}")
            return [record for record in creates if record.source_id not in missing]
        found = {source_id for source_id, opportunity_id in missing.items() if opportunity_id in held}
        with self.sender.lock, self.connect() as conn:
            opportunities.found_again(conn, sorted(found))
        self.summary.count_found_again(len(found))
        self.log(f"missing records read once more: {len(found)} found (only slow), "
                 f"{len(missing) - len(found)} go to Bulk Add")
        return [record for record in creates if record.source_id not in found]

    # -- updates ------------------------------------------------------------------------------
    def push_updates(self, records: list[PlannedRecord]) -> None:
        """Bulk Update by opportunity id (safe to re-send)."""
        for chunk in chunks(records, CHUNK_ITEMS):
            if self.summary.daily_budget_exhausted:
                return
            entries = [JournalEntry.of_record(Kind.UPDATE, record, self._update_item(record)) for record in chunk]
            self.sender.send_batches(
                [entries], lambda batch: self.client.update_opportunities([e.payload for e in batch]), _update_answered)

    def _update_item(self, record: PlannedRecord) -> OpportunityUpdate:
        return OpportunityUpdate(opportunity_id=record.opportunity_id, event_code=self.mapping.opportunity.event_code,
                                 fields=fields_from_dict(record.fields))

    # -- activities ---------------------------------------------------------------------------
    def push_activities(self, days: Sequence[date]) -> None:
        """Bulk activities, one call per opportunity (the client runs them concurrently within its
        limits); an activity whose answer was lost is `unknown` and never re-sent. An activity
        whose record has no opportunity yet is failed unsent."""
        with self.connect() as conn:
            activities = plan.activities_to_send(conn, days)
        by_opportunity: dict[str, list[JournalEntry]] = {}
        orphans: list[JournalEntry] = []
        for activity in activities:
            entry = JournalEntry.of_activity(activity, _activity_item(activity))
            if activity.opportunity_id:
                by_opportunity.setdefault(activity.opportunity_id, []).append(entry)
            else:
                entry.status, entry.error = Sent.FAILED, f"application {activity.source_id} has no opportunity yet"
                orphans.append(entry)
        self.progress.plan("activities", len(activities))
        self.sender.record(orphans, sent=False)
        groups = list(by_opportunity.values())
        per_chunk = CHUNK_ITEMS // MAX_ITEMS_PER_WRITE
        for number, chunk in enumerate(chunks(groups, per_chunk)):
            if self.summary.daily_budget_exhausted:
                self.summary.count_activities_waiting(sum(len(group) for group in groups[number * per_chunk :]))
                return
            self.sender.send_batches(
                chunk,
                lambda batch: self.client.add_activities(batch[0].opportunity_id, [e.payload for e in batch]),
                _activity_answered,
            )


def _update_answered(entry: JournalEntry) -> None:
    if entry.answer.ok:
        entry.status = Sent.OK
    else:
        fail(entry)


def _activity_answered(entry: JournalEntry) -> None:
    """An activity whose answer was lost is `unknown`: it may have been posted."""
    if entry.answer.ok:
        entry.status, entry.activity_id = Sent.OK, entry.answer.activity_id
    elif entry.answer.outcome_unknown:
        entry.status, entry.error = Sent.UNKNOWN, error_text(entry.answer)
    else:
        fail(entry)


def _activity_item(activity: PlannedActivity) -> ActivityAdd:
    return ActivityAdd(activity_event=activity.activity_event, owner_email=activity.owner_email,
                       note=activity.note or None, fields=fields_from_dict(activity.fields) or None)
