"""What the rules decided, before any wire shape: plain dataclasses the answer builders turn into JSON."""

from __future__ import annotations

from dataclasses import dataclass

from lsq_pipeline.sandbox.exceptions import SandboxError
from lsq_pipeline.sandbox.state import Opportunity


@dataclass(frozen=True)
class RowDone:
    """A bulk row carried out; `record_id` is the created opportunity, activity or lead (None for updates)."""

    record_id: str | None = None
    created: bool = True


@dataclass(frozen=True)
class RowRefused:
    """A bulk row that changed nothing; `existing_id` names the record it duplicates, if any."""

    error: SandboxError
    existing_id: str | None = None


RowOutcome = RowDone | RowRefused


@dataclass(frozen=True)
class Captured:
    """A Capture: the lead, then a new opportunity or the duplicate it matched."""

    lead_id: str
    captured_activity_id: str
    created_id: str | None = None
    conflicted_id: str | None = None
    duplicate: SandboxError | None = None
    duplicate_activity_id: str | None = None


@dataclass(frozen=True)
class ReadGroup:
    """One search parameter of GetOpportunitiesById: the opportunities found and the columns asked for."""

    event_code: str
    columns: list[str]
    found: list[Opportunity]
