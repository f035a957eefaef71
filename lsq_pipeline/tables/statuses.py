"""The values the sync writes in its status, kind and action columns, named once: what the plan
decides, what the journal records of each write, where each record and activity stands, and how
each run ended."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """`sync_plan.action`: what the plan decided for a record."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    STALE = "stale"
    REFUSED = "refused"
    SKIPPED = "skipped"


class Kind(StrEnum):
    """`push_journal.kind`: the write a journal row records."""

    CREATE = "create"
    """Bulk Add."""
    CAPTURE = "capture"
    UPDATE = "update"
    ACTIVITY = "activity"


CREATE_KINDS = (Kind.CREATE, Kind.CAPTURE)
"""The journal's kinds that create an opportunity."""

REJECT = "reject"
"""`sync_errors.kind` of a source row the transform rejected; its other kinds are the journal's."""


class Sent(StrEnum):
    """`push_journal.status`: where one journalled item stands."""

    SENT = "sent"
    """Written down before the call; no answer yet."""
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """The answer was lost (or the run died before it)."""
    SPLIT = "split"
    """The call was refused whole; the item went again in a half."""
    NOT_SENT = "not_sent"
    """The day's call budget ran out before it."""


class RecordStatus(StrEnum):
    """`opportunity_state.status`: where a source record stands in LeadSquared."""

    PENDING = "pending"
    """Written, not yet confirmed by a read-back."""
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    """Not found by the read-back past its grace."""
    FAILED = "failed"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    GONE_FROM_SOURCE = "gone_from_source"
    """Synced once, no longer in a snapshot source: nothing in LeadSquared is deleted or changed."""


class ActivityStatus(StrEnum):
    """`activity_state.status`."""

    CREATED = "created"
    FAILED = "failed"
    UNKNOWN = "unknown"


class RunStatus(StrEnum):
    """`sync_runs.status`: how a sync run ended."""

    SUCCEEDED = "succeeded"
    CHECK_FAILED = "check_failed"
    """The run succeeded, but one of its non-blocking ERROR checks failed."""
    BLOCKED = "blocked"
    """A blocking check stopped the run."""
    FAILED = "failed"


class Outcome(StrEnum):
    """`sync_runs.<outcome>_<kind>` (`planned_create`, `failed_activity`...): what became of a
    run's records of one journal kind."""

    PLANNED = "planned"
    ATTEMPTED = "attempted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
