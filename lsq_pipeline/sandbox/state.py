"""The account's records (leads, opportunities, activities), their look-up indexes and their journal."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from lsq_pipeline.sandbox.account import OWNER_FIELD, Account
from lsq_pipeline.sandbox.journal import Journal
from lsq_pipeline.sandbox.read_lag import ReadLag

SENT_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SEARCH_BY_PROSPECT_ID = "ProspectId"  # the SearchBy value; the lead attribute is `ProspectID`


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


def fold(value: str) -> str:
    """How LeadSquared compares values: trimmed, without case."""
    return value.strip().casefold()


@dataclass
class Lead:
    id: str
    fields: dict[str, str]
    created_on: datetime
    modified_on: datetime


@dataclass
class Opportunity:
    id: str
    lead_id: str
    event_code: int
    fields: dict[str, str]
    note: str
    created_on: datetime
    modified_on: datetime
    created_by: str
    modified_by: str


@dataclass
class Activity:
    id: str
    kind: str
    event_code: int | None
    lead_id: str
    opportunity_id: str | None
    owner_id: str
    note: str
    fields: dict[str, str]
    created_on: datetime


_KINDS: dict[str, type] = {"lead": Lead, "opp": Opportunity, "act": Activity}


def _to_record(obj: Any) -> dict:
    kind = next(name for name, cls in _KINDS.items() if isinstance(obj, cls))
    value = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(obj).items()}
    return {"t": kind, "v": value}


def _from_record(cls: type, value: dict) -> Any:
    for name in ("created_on", "modified_on"):
        if name in value:
            value[name] = datetime.fromisoformat(value[name])
    return cls(**value)


class AccountState:
    """Every record of one account, indexed by unique lead field and by duplicate-rule values.

    Not locked: the backend holds its lock around every call. `put` changes memory and appends to
    the journal; `sync` makes the appended records durable before an answer goes out. Reads of
    opportunities by id go through `readable`, which lags writes by `read_lag_seconds`.
    """

    def __init__(self, account: Account, state_path: str | Path | None, clock: Callable[[], datetime],
                 read_lag_seconds: float = 0.0):
        self.account = account
        self.clock = clock
        self.read_lag = ReadLag(read_lag_seconds, clock)
        self._journal = Journal(state_path) if state_path else None
        self.clear()
        records = self._journal.load() if self._journal else []
        if records:
            for record in records:
                self._replay(record)
        else:
            self._seed()
        if self._journal:
            self._journal.compact(self._snapshot())

    @property
    def api_user_id(self) -> str:
        """The user the API keys belong to: the account's first user (the owner when none is sent)."""
        return self.account.users[0].id

    def clear(self) -> None:
        self.leads: dict[str, Lead] = {}
        self.opportunities: dict[str, Opportunity] = {}
        self.activities: dict[str, Activity] = {}
        self._lead_index: dict[str, dict[str, str]] = {f: {} for f in self.account.unique_lead_fields}
        # (lead id, event code, rule values) -> ids of the opportunities with those values
        self._duplicate_index: dict[tuple, list[str]] = defaultdict(list)

    def reset(self) -> None:
        """Back to the account's seed records; the journal is compacted to them."""
        self.clear()
        self.read_lag.clear()
        self._seed()
        if self._journal:
            self._journal.compact(self._snapshot())

    def _seed(self) -> None:
        for seed in self.account.leads:
            self._apply(Lead(seed.id, dict(seed.fields), self.clock(), self.clock()))
        for seed in self.account.opportunities:
            created = datetime.strptime(seed.created_on, SENT_DATETIME_FORMAT)
            modified = (datetime.strptime(seed.modified_on, SENT_DATETIME_FORMAT)
                        if seed.modified_on else created)
            fields = dict(seed.fields)
            fields.setdefault(OWNER_FIELD, self.api_user_id)
            self._apply(Opportunity(seed.id, seed.lead_id, seed.event_code, fields, seed.note, created,
                                    modified, self.api_user_id, self.api_user_id))

    def _snapshot(self) -> list[dict]:
        return [_to_record(x) for x in (*self.leads.values(), *self.opportunities.values(),
                                        *self.activities.values())]

    def _replay(self, record: dict) -> None:
        kind, value = record.get("t"), record.get("v")
        if kind in _KINDS:
            self._apply(_from_record(_KINDS[kind], value))
        elif kind == "reset":
            self.clear()
            self._seed()

    def put(self, record: Lead | Opportunity | Activity) -> None:
        """Apply one change to memory and append it to the journal (made durable by `sync`)."""
        if isinstance(record, Opportunity):
            self.read_lag.written(self.opportunities.get(record.id), record)
        self._apply(record)
        if self._journal:
            self._journal.append(_to_record(record))

    def sync(self) -> None:
        if self._journal:
            self._journal.sync()

    def close(self) -> None:
        if self._journal:
            self._journal.close()

    def _apply(self, record: Lead | Opportunity | Activity) -> None:
        if isinstance(record, Lead):
            old = self.leads.get(record.id)
            for name, index in self._lead_index.items():
                if old and old.fields.get(name):
                    index.pop(fold(old.fields[name]), None)
                if record.fields.get(name):
                    index[fold(record.fields[name])] = record.id
            self.leads[record.id] = record
        elif isinstance(record, Opportunity):
            old = self.opportunities.get(record.id)
            old_key = self.duplicate_key(old.event_code, old.lead_id, old.fields) if old else None
            new_key = self.duplicate_key(record.event_code, record.lead_id, record.fields)
            if old_key != new_key:
                if old_key is not None:
                    self._duplicate_index[old_key].remove(record.id)
                if new_key is not None:
                    self._duplicate_index[new_key].append(record.id)
            self.opportunities[record.id] = record
        else:
            self.activities[record.id] = record

    # ----- look-ups ---------------------------------------------------------------------

    def duplicate_key(self, event_code: int, lead_id: str, values: dict[str, str]) -> tuple | None:
        """What the type's duplicate rule compares; None when there is no rule or a rule field is empty."""
        opp_type = self.account.opportunity_type(event_code)
        rule = opp_type.duplicate_rule if opp_type else []
        if not rule or any(not values.get(name) for name in rule):
            return None
        return (lead_id, event_code, *(fold(values[name]) for name in rule))

    def find_duplicate(self, event_code: int, lead_id: str, values: dict[str, str]) -> Opportunity | None:
        """The existing opportunity of the same type on the same lead with equal rule values, if any."""
        key = self.duplicate_key(event_code, lead_id, values)
        matches = self._duplicate_index.get(key) if key is not None else None
        return self.opportunities[matches[0]] if matches else None

    def readable(self, opportunity_id: str) -> Opportunity | None:
        """The opportunity as GetOpportunitiesById sees it now (see `ReadLag`); None if unknown or not yet visible."""
        current = self.opportunities.get(opportunity_id)
        return self.read_lag.visible(current) if current is not None else None

    def find_lead(self, search_by: str, value: str) -> Lead | None:
        """The lead whose unique field `search_by` (or id, for `ProspectId`) equals `value`."""
        if not value:
            return None
        if search_by == SEARCH_BY_PROSPECT_ID:
            return next((lead for lead_id, lead in self.leads.items() if fold(lead_id) == fold(value)), None)
        lead_id = self._lead_index[search_by].get(fold(value))
        return self.leads.get(lead_id) if lead_id else None

    def lead_owning(self, field: str, value: str) -> str | None:
        """The id of the lead that holds `value` in the unique field `field`."""
        return self._lead_index[field].get(fold(value)) if value else None

    def next_modified_on(self, previous: datetime) -> datetime:
        return max(self.clock(), previous + timedelta(microseconds=1))
