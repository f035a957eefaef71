"""The typed records every step and table shares: what the plan sends (`PlannedRecord`,
`PlannedActivity`), one journalled item of a batch (`JournalEntry`), and what the read-back
decided for one state row (`ReadBack`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from lsq_pipeline.leadsquared import ActivityAdd, CaptureRequest, OpportunityAdd, OpportunityUpdate, RowResult
from lsq_pipeline.mapping import Adoption
from lsq_pipeline.tables.statuses import Kind, Sent


@dataclass(frozen=True)
class PlannedRecord:
    """A record the plan sends (a create or an update), as of the version the plan named."""

    day: date
    source_id: str
    opportunity_id: str | None
    """The opportunity an update writes; None for a create."""
    fields: dict[str, str | None]
    """What is sent: every mapped field for a create, the changed ones for an update."""
    full_fields: dict[str, str | None]
    """Every mapped field as it stands once the write lands (what the state keeps as sent)."""
    search_by_value: str | None
    lead_fields: dict[str, str | None]
    owner_email: str | None
    note: str | None
    record_hash: str
    source_updated_at: datetime
    failed_hash: str
    """What the state keeps when LeadSquared refuses this version (see `plan.failed_hash_sql`)."""


@dataclass(frozen=True)
class PlannedActivity:
    """An event the plan sends as an activity on its record's opportunity."""

    day: date
    event_id: str
    source_id: str
    opportunity_id: str | None
    """The record's opportunity in the state; None while it has none."""
    activity_event: int
    owner_email: str
    note: str | None
    fields: dict[str, str | None]


Payload = OpportunityAdd | CaptureRequest | OpportunityUpdate | ActivityAdd
"""One item as the client sends it; the journal keeps it as the API's JSON."""


@dataclass
class JournalEntry:
    """One item of one batch: a create, capture, update or activity for one source record, from
    the moment it is journalled to its answer."""

    kind: Kind
    day: date | None
    source_id: str
    payload: Payload
    event_id: str | None = None
    batch_id: str = ""
    status: Sent = Sent.SENT
    opportunity_id: str | None = None
    error: str | None = None
    record: PlannedRecord | None = None
    """The planned record an opportunity write sends: its state row follows the answer."""
    adoption: Adoption | None = None
    """A create's: the adoption its duplicate flags ask for; None when the opportunity is ours
    (OverwriteFields)."""
    passed_on: bool = False
    """Not the record's last answer in this push: a Bulk Add row gone on to Capture, or a capture
    whose answer was lost gone back to Bulk Add. Its state waits for that answer."""
    activity_id: str | None = None
    """An activity's id, once LeadSquared answered it."""
    answer: RowResult | None = None
    """LeadSquared's answer to this item; None while it is unanswered or when it was not sent."""

    @classmethod
    def of_record(cls, kind: Kind, record: PlannedRecord, payload: Payload,
                  adoption: Adoption | None = None) -> JournalEntry:
        """The entry of one write of a planned record (a create, capture or update)."""
        return cls(kind, record.day, record.source_id, payload, opportunity_id=record.opportunity_id,
                   record=record, adoption=adoption)

    @classmethod
    def of_activity(cls, activity: PlannedActivity, payload: ActivityAdd) -> JournalEntry:
        """The entry of one planned activity, on its record's opportunity."""
        return cls(Kind.ACTIVITY, activity.day, activity.source_id, payload, event_id=activity.event_id,
                   opportunity_id=activity.opportunity_id)

    def resent(self) -> JournalEntry:
        """A fresh entry for the same item, to go out again in a split half: the same payload, so
        the same adoption if it meets an opportunity this pipeline did not create."""
        return JournalEntry(self.kind, self.day, self.source_id, self.payload, event_id=self.event_id,
                            opportunity_id=self.opportunity_id, record=self.record, adoption=self.adoption)


@dataclass(frozen=True)
class ReadBack:
    """What reconcile decided for one state row. `confirmed`: the read found the opportunity as of our
    last write (`in_sync`, `drifted`, or sent again by a repair), so its fields are kept as what
    LeadSquared holds; otherwise (`pending`: not yet, `missing`: past the grace) the row keeps what
    was last read. `rewritten`: a repair was just sent, so the grace starts again now."""

    source_id: str
    status: str
    confirmed: bool = False
    lead_id: str | None = None
    remote_fields: str | None = None
    """JSON text of the fields read, only when `confirmed`."""
    remote_modified_on: datetime | None = None
    drift_fields: tuple[str, ...] = ()
    error: str | None = None
    rewritten: bool = False
    kept_fields: str | None = None
    """An adoption's baseline, when this read took it: JSON text of the fields where LeadSquared kept
    its own value rather than the one sent (`opportunity_adoption.kept_fields`)."""
