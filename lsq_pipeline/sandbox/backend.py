"""The sandbox backend: leads, opportunities, activities and LeadSquared's rules, with no HTTP."""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from lsq_pipeline.sandbox.account import (
    OWNER_FIELD,
    STATUS_COMMENT_FIELD,
    STATUS_FIELD,
    Account,
    FieldDefinition,
    OpportunityType,
    load_account,
)
from lsq_pipeline.sandbox.exceptions import (
    MXDuplicateEntryException,
    MXInvalidFieldValueException,
    MXInvalidInputException,
    MXInvalidJsonException,
    MXMandatoryAttributeMissingException,
    MXRecordNotFoundException,
    MXSystemFieldUpdateException,
    SandboxError,
    status_comment_missing,
)
from lsq_pipeline.sandbox.journal import Journal
from lsq_pipeline.sandbox.payloads import (
    MAX_IDS_PER_READ,
    MAX_ITEMS_PER_WRITE,
    ActivityRow,
    BulkAddRow,
    BulkUpdateRow,
    CaptureRequest,
    FieldValue,
    GetByIdsRequest,
    parse,
    parse_rows,
)

SYSTEM_FIELDS = ("CreatedOn", "ModifiedOn", "CreatedBy", "ModifiedBy")
SEARCH_BY_PROSPECT_ID = "ProspectId"  # the SearchBy value; the lead attribute is `ProspectID`
PROSPECT_ID_ATTRIBUTE = "ProspectID"
SENT_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SENT_DATE_FORMAT = "%Y-%m-%d"

# Capture's documented action codes.
ACTION_NONE = 0
ACTION_CREATE_OPPORTUNITY = 1
ACTION_CAPTURED_ACTIVITY = 2
ACTION_DUPLICATE_DETECTED_ACTIVITY = 3
DEDUP_CREATED = 1
DEDUP_DUPLICATE_DETECTED = 3

ACTIVITY_CAPTURED = "OpportunityCaptured"
ACTIVITY_DUPLICATE_DETECTED = "DuplicateDetected"
ACTIVITY_CUSTOM = "Custom"


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def format_lsq_datetime(moment: datetime) -> str:
    """`M/D/YYYY h:mm:ss AM`, as GetOpportunitiesById answers (UTC)."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d}:{moment.second:02d} {half}"


def format_sent_datetime(moment: datetime) -> str:
    return moment.strftime(SENT_DATETIME_FORMAT)


def _new_id() -> str:
    return str(uuid.uuid4())


def _key(value: str) -> str:
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


@dataclass
class SandboxStats:
    """Counters for `/sandbox/stats`."""

    calls: Counter = field(default_factory=Counter)
    rate_limited: int = 0
    faults: Counter = field(default_factory=Counter)
    lost_responses: int = 0
    rows_failed: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, counter: str, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                setattr(self, counter, getattr(self, counter) + 1)
            else:
                getattr(self, counter)[key] += 1

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "Calls": dict(self.calls),
                "TotalCalls": sum(self.calls.values()),
                "RateLimited": self.rate_limited,
                "Faults": dict(self.faults),
                "TotalFaults": sum(self.faults.values()),
                "LostResponses": self.lost_responses,
                "RowsFailed": dict(self.rows_failed),
            }

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.faults.clear()
            self.rows_failed.clear()
            self.rate_limited = 0
            self.lost_responses = 0


def _to_record(kind: str, obj: Any) -> dict:
    value = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(obj).items()}
    return {"t": kind, "v": value}


def _from_record(cls: type, value: dict) -> Any:
    for name in ("created_on", "modified_on"):
        if name in value:
            value[name] = datetime.fromisoformat(value[name])
    return cls(**value)


class SandboxBackend:
    """State and rules of one LeadSquared account. Thread-safe: one lock around every operation."""

    def __init__(
        self,
        account: Account | str | Path | None = None,
        state_path: str | Path | None = None,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.account = account if isinstance(account, Account) else load_account(account)
        self.stats = SandboxStats()
        self._clock = clock
        self._lock = threading.RLock()
        self._journal = Journal(state_path) if state_path else None
        self._clear()
        records = self._journal.load() if self._journal else []
        if records:
            for record in records:
                self._replay(record)
        else:
            self._seed()
        if self._journal:
            self._journal.compact(self._snapshot())

    # ----- state plumbing -------------------------------------------------------------

    def _clear(self) -> None:
        self.leads: dict[str, Lead] = {}
        self.opportunities: dict[str, Opportunity] = {}
        self.activities: dict[str, Activity] = {}
        self._lead_index: dict[str, dict[str, str]] = {f: {} for f in self.account.unique_lead_fields}
        # (lead id, event code, rule values) -> ids of the opportunities with those values
        self._duplicate_index: dict[tuple, list[str]] = defaultdict(list)

    def _seed(self) -> None:
        for seed in self.account.leads:
            self._put_lead(Lead(seed.id, dict(seed.fields), self._clock(), self._clock()))
        for seed in self.account.opportunities:
            created = datetime.strptime(seed.created_on, SENT_DATETIME_FORMAT)
            modified = (datetime.strptime(seed.modified_on, SENT_DATETIME_FORMAT)
                        if seed.modified_on else created)
            fields = dict(seed.fields)
            fields.setdefault(OWNER_FIELD, self.api_user_id)
            self._put_opportunity(Opportunity(seed.id, seed.lead_id, seed.event_code, fields,
                                              seed.note, created, modified,
                                              self.api_user_id, self.api_user_id))

    def _snapshot(self) -> list[dict]:
        return ([_to_record("lead", x) for x in self.leads.values()]
                + [_to_record("opp", x) for x in self.opportunities.values()]
                + [_to_record("act", x) for x in self.activities.values()])

    def _replay(self, record: dict) -> None:
        kind, value = record.get("t"), record.get("v")
        if kind == "lead":
            self._put_lead(_from_record(Lead, value))
        elif kind == "opp":
            self._put_opportunity(_from_record(Opportunity, value))
        elif kind == "act":
            self._put_activity(_from_record(Activity, value))
        elif kind == "reset":
            self._clear()
            self._seed()

    def _put_lead(self, lead: Lead) -> None:
        old = self.leads.get(lead.id)
        for name, index in self._lead_index.items():
            if old and old.fields.get(name):
                index.pop(_key(old.fields[name]), None)
            if lead.fields.get(name):
                index[_key(lead.fields[name])] = lead.id
        self.leads[lead.id] = lead

    def _put_opportunity(self, opp: Opportunity) -> None:
        old = self.opportunities.get(opp.id)
        old_key = self._duplicate_key(old.event_code, old.lead_id, old.fields) if old else None
        new_key = self._duplicate_key(opp.event_code, opp.lead_id, opp.fields)
        if old_key != new_key:
            if old_key is not None:
                self._duplicate_index[old_key].remove(opp.id)
            if new_key is not None:
                self._duplicate_index[new_key].append(opp.id)
        self.opportunities[opp.id] = opp

    def _duplicate_key(self, event_code: int, lead_id: str, values: dict[str, str]) -> tuple | None:
        """What the type's duplicate rule compares; None when there is no rule or a rule field is empty."""
        opp_type = self.account.opportunity_type(event_code)
        rule = opp_type.duplicate_rule if opp_type else []
        if not rule or any(not values.get(name) for name in rule):
            return None
        return (lead_id, event_code, *(_key(values[name]) for name in rule))

    def _put_activity(self, activity: Activity) -> None:
        self.activities[activity.id] = activity

    def _commit(self, kind: str, obj: Any) -> None:
        """Apply one change to memory and append it to the journal (synced by `_sync` before answering)."""
        {"lead": self._put_lead, "opp": self._put_opportunity, "act": self._put_activity}[kind](obj)
        if self._journal:
            self._journal.append(_to_record(kind, obj))

    def _sync(self) -> None:
        if self._journal:
            self._journal.sync()

    def close(self) -> None:
        with self._lock:
            if self._journal:
                self._journal.close()

    def reset(self) -> None:
        """Back to the account's seed state; the journal is compacted to it."""
        with self._lock:
            self._clear()
            self._seed()
            self.stats.clear()
            if self._journal:
                self._journal.compact(self._snapshot())

    @property
    def api_user_id(self) -> str:
        """The user the API keys belong to: the account's first user (the owner when none is sent)."""
        return self.account.users[0].id

    def _next_modified_on(self, previous: datetime) -> datetime:
        return max(self._clock(), previous + timedelta(microseconds=1))

    # ----- validation -----------------------------------------------------------------

    def _check_value(self, definition: FieldDefinition, value: str | None) -> str:
        """The stored form of `value` for the field, or MXInvalidFieldValueException."""
        if value is None or value == "":
            return ""
        name, kind = definition.schema_name, definition.data_type

        def refuse(expected: str) -> MXInvalidFieldValueException:
            return MXInvalidFieldValueException(
                f"Invalid value '{value}' for field '{name}' of datatype '{kind}': {expected}."
            )

        if kind == "String":
            if definition.max_length is not None and len(value) > definition.max_length:
                raise refuse(f"maximum length is {definition.max_length}")
            return value
        if kind == "Number":
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                raise refuse("expected a number") from None
            if not number.is_finite():
                raise refuse("expected a number")
            return value.strip()
        if kind in ("Date", "DateTime"):
            fmt = SENT_DATE_FORMAT if kind == "Date" else SENT_DATETIME_FORMAT
            try:
                datetime.strptime(value, fmt)
            except ValueError:
                raise refuse("expected " + ("YYYY-MM-DD" if kind == "Date" else "YYYY-MM-DD HH:MM:SS")) from None
            return value
        if kind in ("Dropdown", "SearchableDropdown"):
            for option in definition.options:
                if _key(option) == _key(value):
                    return option
            raise refuse(f"allowed values are {', '.join(definition.options)}")
        if kind == "Boolean":
            flag = _key(value)
            if flag in ("true", "1"):
                return "1"
            if flag in ("false", "0"):
                return "0"
            raise refuse("expected true or false")
        if kind == "User":
            user = self.account.user_by_id(value)
            if user is None:
                raise refuse("no user has this id")
            return user.id
        raise refuse("unsupported datatype")  # pragma: no cover - Literal guards it

    def _check_opportunity_fields(
        self, opp_type: OpportunityType, sent: list[FieldValue], *, creating: bool
    ) -> dict[str, str]:
        """Validated fields of one write (types, system fields, mandatory, status comment)."""
        values: dict[str, str] = {}
        for item in sent:
            name = item.SchemaName
            if name in SYSTEM_FIELDS:
                raise MXSystemFieldUpdateException(
                    f"System field '{name}' cannot be updated."
                )
            definition = opp_type.field(name)
            if definition is None:
                raise MXInvalidInputException(
                    f"Field '{name}' does not exist for opportunity type {opp_type.event_code}."
                )
            values[name] = self._check_value(definition, item.Value)
        for definition in opp_type.fields:
            if not definition.mandatory:
                continue
            missing = (values.get(definition.schema_name, "") == "" if creating
                       else values.get(definition.schema_name) == "")
            if missing:
                raise MXMandatoryAttributeMissingException(
                    f"Mandatory field '{definition.schema_name}' ({definition.display_name}) is missing."
                )
        if opp_type.status_comments and values.get(STATUS_FIELD) and not values.get(STATUS_COMMENT_FIELD):
            raise status_comment_missing(STATUS_COMMENT_FIELD)
        return values

    def _opportunity_type(self, event_code: int) -> OpportunityType:
        opp_type = self.account.opportunity_type(event_code)
        if opp_type is None:
            raise MXInvalidInputException(f"Opportunity type with event code {event_code} does not exist.")
        return opp_type

    def _owner_id_by_email(self, email: str) -> str:
        user = self.account.user_by_email(email)
        if user is None:
            raise MXInvalidInputException(f"User with email '{email}' does not exist.")
        return user.id

    def _find_lead(self, search_by: str, value: str) -> Lead | None:
        if search_by == SEARCH_BY_PROSPECT_ID:
            return next((lead for lead_id, lead in self.leads.items()
                         if _key(lead_id) == _key(value)), None) if value else None
        lead_id = self._lead_index[search_by].get(_key(value)) if value else None
        return self.leads.get(lead_id) if lead_id else None

    def _search_by_field(self, search_by: str | None) -> str:
        """The canonical SearchBy: a unique lead field or `ProspectId` (case-insensitive)."""
        for name in [*self.account.unique_lead_fields, SEARCH_BY_PROSPECT_ID]:
            if search_by and _key(search_by) == _key(name):
                return name
        raise MXInvalidInputException(
            f"SearchBy '{search_by}' is not a unique lead field "
            f"({', '.join(self.account.unique_lead_fields)}, {SEARCH_BY_PROSPECT_ID})."
        )

    def _find_duplicate(self, opp_type: OpportunityType, lead_id: str, values: dict[str, str]) -> Opportunity | None:
        """The existing opportunity of the same type on the same lead with equal rule values, if any."""
        key = self._duplicate_key(opp_type.event_code, lead_id, values)
        matches = self._duplicate_index.get(key) if key is not None else None
        return self.opportunities[matches[0]] if matches else None

    @staticmethod
    def _duplicate_error(opp_type: OpportunityType, existing: Opportunity) -> MXDuplicateEntryException:
        return MXDuplicateEntryException(
            f"Duplicate opportunity detected: an opportunity of type {opp_type.event_code} with the same "
            f"{', '.join(opp_type.duplicate_rule)} already exists on this lead ({existing.id}).",
            existing_id=existing.id,
        )

    # ----- shared write steps ---------------------------------------------------------

    def _create_opportunity(self, lead_id: str, opp_type: OpportunityType, values: dict[str, str], note: str | None) -> Opportunity:
        now = self._clock()
        values = {name: value for name, value in values.items() if value != ""}
        values.setdefault(OWNER_FIELD, self.api_user_id)
        opp = Opportunity(_new_id(), lead_id, opp_type.event_code, values, note or "",
                          now, now, self.api_user_id, self.api_user_id)
        self._commit("opp", opp)
        return opp

    def _merge_duplicate(self, existing: Opportunity, values: dict[str, str], *, overwrite: bool,
                         update_empty: bool, keep_owner: bool) -> None:
        """OverwriteFields / UpdateEmptyFields / DoNotChangeOwner applied to the existing opportunity."""
        changes = {}
        for name, value in values.items():
            if name == OWNER_FIELD and keep_owner:
                continue
            if overwrite or (update_empty and existing.fields.get(name, "") == ""):
                changes[name] = value
        changes = {n: v for n, v in changes.items() if existing.fields.get(n, "") != v}
        if changes:
            self._update_opportunity(existing, changes)

    def _update_opportunity(self, opp: Opportunity, changes: dict[str, str]) -> None:
        fields = {**opp.fields, **changes}
        fields = {name: value for name, value in fields.items() if value != ""}
        updated = Opportunity(opp.id, opp.lead_id, opp.event_code, fields, opp.note, opp.created_on,
                              self._next_modified_on(opp.modified_on), opp.created_by, self.api_user_id)
        self._commit("opp", updated)

    def _post_activity(self, kind: str, lead_id: str, opportunity_id: str | None, *, event_code: int | None = None,
                       owner_id: str | None = None, note: str = "", fields: dict[str, str] | None = None) -> Activity:
        activity = Activity(_new_id(), kind, event_code, lead_id, opportunity_id,
                            owner_id or self.api_user_id, note, fields or {}, self._clock())
        self._commit("act", activity)
        return activity

    @staticmethod
    def _check_batch(rows: Any, what: str) -> None:
        """The per-call limits: an array of 1 to 25 items."""
        if not isinstance(rows, list):
            raise MXInvalidJsonException("The request body must be a JSON array.")
        if not rows:
            raise MXInvalidInputException(f"The request must contain at least one {what}.")
        if len(rows) > MAX_ITEMS_PER_WRITE:
            raise MXInvalidInputException(
                f"You can send up to {MAX_ITEMS_PER_WRITE} {what}s in a single request; got {len(rows)}."
            )

    def _run_rows(self, rows: list, flag: str, one_row: Callable[[Any], dict]) -> dict:
        """Each row atomically under the lock; a failed row answers `{RowNumber, <flag>: false, ExceptionType, ExceptionMessage}`."""
        answers = []
        with self._lock:
            try:
                for number, row in enumerate(rows, start=1):
                    try:
                        answers.append({**one_row(row), "RowNumber": number, flag: True})
                    except SandboxError as error:
                        self.stats.count("rows_failed", error.exception_type)
                        failed = {"RowNumber": number, flag: False, **error.row_fields()}
                        if isinstance(error, MXDuplicateEntryException) and error.existing_id:
                            failed = {"ProspectOpportunityId": error.existing_id, **failed}
                        answers.append(failed)
            finally:
                self._sync()
        return {"Response": answers}

    # ----- the five endpoints ---------------------------------------------------------

    def bulk_add(self, search_by: str | None, body: Any) -> dict:
        """`Bulk/Add/ByLeadField?SearchBy=`: up to 25 opportunities on leads found by a unique field."""
        self._check_batch(body, "opportunity")
        rows = parse_rows(BulkAddRow, body)
        search_field = self._search_by_field(search_by)

        def add(row: BulkAddRow) -> dict:
            lead = self._find_lead(search_field, row.SearchByValue)
            if lead is None:
                raise MXRecordNotFoundException(
                    f"Lead with {search_field} '{row.SearchByValue}' does not exist."
                )
            opp_type = self._opportunity_type(row.OpportunityEventCode)
            values = self._check_opportunity_fields(opp_type, row.Fields, creating=True)
            if row.OpportunityOwnerEmail and OWNER_FIELD not in values:
                values[OWNER_FIELD] = self._owner_id_by_email(row.OpportunityOwnerEmail)
            existing = self._find_duplicate(opp_type, lead.id, values)
            if existing is not None:
                self._merge_duplicate(existing, values, overwrite=row.OverwriteFields,
                                      update_empty=row.UpdateEmptyFields, keep_owner=row.DoNotChangeOwner)
                if not row.DoNotPostDuplicateActivity:
                    self._post_activity(ACTIVITY_DUPLICATE_DETECTED, lead.id, existing.id)
                raise self._duplicate_error(opp_type, existing)
            opp = self._create_opportunity(lead.id, opp_type, values, row.OpportunityNote)
            return {"ProspectOpportunityId": opp.id}

        return self._run_rows(rows, "OpportunityCreated", add)

    def bulk_update(self, body: Any) -> dict:
        """`Bulk/Update/ByOpportunityId`: up to 25 opportunities updated by id."""
        self._check_batch(body, "opportunity")
        rows = parse_rows(BulkUpdateRow, body)

        def update(row: BulkUpdateRow) -> dict:
            opp = self.opportunities.get(row.ProspectOpportunityId.strip().lower())
            if opp is None:
                raise MXRecordNotFoundException(
                    f"Opportunity with id '{row.ProspectOpportunityId}' does not exist."
                )
            if opp.event_code != row.OpportunityEventCode:
                raise MXInvalidInputException(
                    f"OpportunityEventCode {row.OpportunityEventCode} does not match the opportunity's "
                    f"type {opp.event_code}."
                )
            values = self._check_opportunity_fields(self._opportunity_type(opp.event_code), row.Fields,
                                                    creating=False)
            self._update_opportunity(opp, values)
            return {}

        return self._run_rows(rows, "OpportunityUpdated", update)

    def bulk_add_activities(self, opportunity_id: str | None, body: Any) -> dict:
        """`Bulk/CustomActivity/Add/ByOpportunityId?opportunityId=`: up to 25 activities on one opportunity."""
        self._check_batch(body, "activity")
        rows = parse_rows(ActivityRow, body)

        def add(row: ActivityRow) -> dict:
            opp = self.opportunities.get((opportunity_id or "").strip().lower())
            if opp is None:
                raise MXRecordNotFoundException(f"Opportunity with id '{opportunity_id}' does not exist.")
            activity_type = self.account.activity_type(row.ActivityEvent)
            if activity_type is None:
                raise MXInvalidInputException(f"Activity event {row.ActivityEvent} does not exist.")
            if not row.ActivityOwnerEmail:
                raise MXMandatoryAttributeMissingException("ActivityOwnerEmail is mandatory.")
            owner_id = self._owner_id_by_email(row.ActivityOwnerEmail)
            values = {}
            for item in row.Fields:
                definition = activity_type.field(item.SchemaName)
                if definition is None:
                    raise MXInvalidInputException(
                        f"Field '{item.SchemaName}' does not exist for activity event {row.ActivityEvent}."
                    )
                values[item.SchemaName] = self._check_value(definition, item.Value)
            for definition in activity_type.fields:
                if definition.mandatory and not values.get(definition.schema_name):
                    raise MXMandatoryAttributeMissingException(
                        f"Mandatory field '{definition.schema_name}' ({definition.display_name}) is missing."
                    )
            activity = self._post_activity(ACTIVITY_CUSTOM, opp.lead_id, opp.id, event_code=row.ActivityEvent,
                                           owner_id=owner_id, note=row.ActivityNote or "", fields=values)
            return {"ProspectActivityId": activity.id}

        return self._run_rows(rows, "ActivityCreated", add)

    def capture(self, body: Any) -> dict:
        """`Capture`: create or update the lead from LeadDetails, then create the opportunity or detect the duplicate."""
        request = parse(CaptureRequest, body)
        opportunity = request.Opportunity
        if opportunity.OverwriteFields and opportunity.UpdateEmptyFields:
            raise MXInvalidInputException("OverwriteFields and UpdateEmptyFields both cannot be true")
        attributes: dict[str, str] = {}
        search_by = None
        user_defined_guid = False
        for item in request.LeadDetails:
            if item.Attribute == "SearchBy":
                search_by = item.Value
            elif item.Attribute == "__UseUserDefinedGuid__":
                user_defined_guid = _key(item.Value or "") in ("true", "1")
            else:
                lead_field = next((f for f in self.account.lead_fields if _key(f) == _key(item.Attribute)), None)
                if lead_field is None:
                    raise MXInvalidInputException(f"Lead field '{item.Attribute}' does not exist.")
                attributes[lead_field] = item.Value or ""
        unique_sent = [f for f in [*self.account.unique_lead_fields, PROSPECT_ID_ATTRIBUTE] if attributes.get(f)]
        if not unique_sent:
            raise MXInvalidInputException(
                "LeadDetails must contain at least one unique lead field "
                f"({', '.join(self.account.unique_lead_fields)})."
            )
        if search_by is None:
            search_by = unique_sent[0]
            if search_by == PROSPECT_ID_ATTRIBUTE:
                search_by = SEARCH_BY_PROSPECT_ID
        search_field = self._search_by_field(search_by)
        search_attribute = PROSPECT_ID_ATTRIBUTE if search_field == SEARCH_BY_PROSPECT_ID else search_field
        if not attributes.get(search_attribute):
            raise MXInvalidInputException(f"LeadDetails has no value for the SearchBy field '{search_attribute}'.")
        if opportunity.OpportunityDateTime:
            try:
                datetime.strptime(opportunity.OpportunityDateTime, SENT_DATETIME_FORMAT)
            except ValueError:
                raise MXInvalidInputException("OpportunityDateTime must be yyyy-mm-dd hh:mm:ss.") from None

        with self._lock:
            try:
                # Everything is checked before the first write, so a refused capture changes nothing.
                opp_type = self._opportunity_type(opportunity.OpportunityEventCode)
                values = self._check_opportunity_fields(opp_type, opportunity.Fields, creating=True)
                if opportunity.OpportunityOwnerEmail and OWNER_FIELD not in values:
                    values[OWNER_FIELD] = self._owner_id_by_email(opportunity.OpportunityOwnerEmail)
                lead = self._find_lead(search_field, attributes[search_attribute])
                lead_id = lead.id if lead else (
                    self._user_defined_guid(attributes.get(PROSPECT_ID_ATTRIBUTE)) if user_defined_guid else _new_id()
                )
                lead_fields = {k: v for k, v in attributes.items() if k != PROSPECT_ID_ATTRIBUTE}
                self._check_lead_unique(lead_id, lead_fields)
                lead = self._save_lead(lead, lead_id, lead_fields)

                existing = self._find_duplicate(opp_type, lead.id, values)
                captured = self._post_activity(ACTIVITY_CAPTURED, lead.id, existing.id if existing else None)
                answer = {
                    "AdditionalDetails": [{"ActivityId": captured.id, "PostDeDupActionPerformed": DEDUP_CREATED}],
                    "ConflictedOpportunityId": None,
                    "CreatedOpportunityId": None,
                    "ExceptionMessage": None,
                    "ExceptionType": None,
                    "IsUnique": True,
                    "PrimaryAction": ACTION_CREATE_OPPORTUNITY,
                    "RelatedProspectId": lead.id,
                    "RequestId": _new_id(),
                    "SecondaryAction": ACTION_CAPTURED_ACTIVITY,
                    "Status": 0,
                }
                if existing is None:
                    opp = self._create_opportunity(lead.id, opp_type, values, opportunity.OpportunityNote)
                    answer["CreatedOpportunityId"] = opp.id
                    return answer
                self._merge_duplicate(existing, values, overwrite=opportunity.OverwriteFields,
                                      update_empty=opportunity.UpdateEmptyFields,
                                      keep_owner=opportunity.DoNotChangeOwner)
                if opportunity.DoNotPostDuplicateActivity:
                    answer["PrimaryAction"] = ACTION_NONE
                else:
                    duplicate = self._post_activity(ACTIVITY_DUPLICATE_DETECTED, lead.id, existing.id)
                    answer["PrimaryAction"] = ACTION_DUPLICATE_DETECTED_ACTIVITY
                    answer["AdditionalDetails"] = [{"ActivityId": duplicate.id,
                                                    "PostDeDupActionPerformed": DEDUP_DUPLICATE_DETECTED}]
                error = self._duplicate_error(opp_type, existing)
                answer.update(ConflictedOpportunityId=existing.id, IsUnique=False,
                              ExceptionType=error.exception_type, ExceptionMessage=error.message)
                return answer
            finally:
                self._sync()

    @staticmethod
    def _user_defined_guid(value: str | None) -> str:
        try:
            return str(uuid.UUID(value or ""))
        except ValueError:
            raise MXInvalidInputException(
                f"__UseUserDefinedGuid__ needs a GUID in ProspectID; got '{value}'."
            ) from None

    def _check_lead_unique(self, lead_id: str, lead_fields: dict[str, str]) -> None:
        """A unique field's value may belong to one lead only ("A Lead with same Email already exists.")."""
        for name in self.account.unique_lead_fields:
            value = lead_fields.get(name)
            owner = self._lead_index[name].get(_key(value)) if value else None
            if owner is not None and owner != lead_id:
                label = "Email" if name == "EmailAddress" else name
                raise MXDuplicateEntryException(f"A Lead with same {label} already exists.")

    def _save_lead(self, lead: Lead | None, lead_id: str, lead_fields: dict[str, str]) -> Lead:
        now = self._clock()
        if lead is None:
            lead = Lead(lead_id, {k: v for k, v in lead_fields.items() if v}, now, now)
            self._commit("lead", lead)
            return lead
        merged = {k: v for k, v in {**lead.fields, **lead_fields}.items() if v}
        if merged != lead.fields:
            lead = Lead(lead.id, merged, lead.created_on, self._next_modified_on(lead.modified_on))
            self._commit("lead", lead)
        return lead

    def get_opportunities_by_id(self, body: Any) -> list[dict]:
        """`GetOpportunitiesById`: one result group per search parameter; unknown or other-type ids left out."""
        request = parse(GetByIdsRequest, body)
        if not request.SearchParameters:
            raise MXInvalidInputException("SearchParameters must contain at least one search parameter.")
        total = sum(len(p.ProspectActivityId) for p in request.SearchParameters)
        if any(not p.ProspectActivityId for p in request.SearchParameters):
            raise MXInvalidInputException("ProspectActivityId must contain at least one opportunity id.")
        if total > MAX_IDS_PER_READ:
            raise MXInvalidInputException(
                f"You can retrieve a maximum of {MAX_IDS_PER_READ} opportunities; got {total}."
            )
        groups = []
        with self._lock:
            for parameter in request.SearchParameters:
                try:
                    event_code = int(str(parameter.EventCode).strip())
                except ValueError:
                    raise MXInvalidInputException(f"EventCode '{parameter.EventCode}' is not a number.") from None
                columns = [c.strip() for c in parameter.Columns.Include_CSV.split(",") if c.strip()]
                found = []
                for opp_id in dict.fromkeys(i.strip().lower() for i in parameter.ProspectActivityId):
                    opp = self.opportunities.get(opp_id)
                    if opp is not None and opp.event_code == event_code:
                        found.append(self._read_opportunity(opp, columns))
                groups.append({"EventCode": str(parameter.EventCode), "RecordCount": len(found),
                               "Opportunities": found})
        return groups

    def _read_opportunity(self, opp: Opportunity, columns: list[str]) -> dict:
        lead = self.leads.get(opp.lead_id)
        owner = self.account.user_by_id(opp.fields.get(OWNER_FIELD, ""))
        row: dict[str, Any] = {
            "ProspectId": opp.lead_id,
            "EmailAddress": lead.fields.get("EmailAddress") if lead else None,
            "ProspectActivityId": opp.id,
        }
        system = {
            "CreatedOn": format_lsq_datetime(opp.created_on),
            "ModifiedOn": format_lsq_datetime(opp.modified_on),
            "CreatedBy": opp.created_by,
            "ModifiedBy": opp.modified_by,
            "OpportunityNote": opp.note,
        }
        opp_type = self.account.opportunity_type(opp.event_code)
        for column in columns:
            if column in row or column == "OwnerEmailAddress":
                continue
            if column in system:
                row[column] = system[column]
            elif opp_type is not None and opp_type.field(column) is not None:
                row[column] = opp.fields.get(column)
        row["OwnerEmailAddress"] = owner.email if owner else None
        return row

    # ----- inspection (/sandbox/) -----------------------------------------------------

    def list_leads(self) -> list[dict]:
        with self._lock:
            return [{"ProspectId": lead.id, "Fields": dict(lead.fields),
                     "CreatedOn": format_sent_datetime(lead.created_on),
                     "ModifiedOn": format_sent_datetime(lead.modified_on)} for lead in self.leads.values()]

    def list_opportunities(self) -> list[dict]:
        with self._lock:
            return [self._describe_opportunity(opp) for opp in self.opportunities.values()]

    @staticmethod
    def _describe_opportunity(opp: Opportunity) -> dict:
        return {"ProspectOpportunityId": opp.id, "ProspectId": opp.lead_id, "EventCode": opp.event_code,
                "Fields": dict(opp.fields), "OpportunityNote": opp.note,
                "CreatedOn": format_sent_datetime(opp.created_on),
                "ModifiedOn": format_sent_datetime(opp.modified_on)}

    def list_activities(self) -> list[dict]:
        with self._lock:
            return [{"ProspectActivityId": a.id, "Kind": a.kind, "ActivityEvent": a.event_code,
                     "ProspectId": a.lead_id, "OpportunityId": a.opportunity_id, "OwnerId": a.owner_id,
                     "ActivityNote": a.note, "Fields": dict(a.fields),
                     "CreatedOn": format_sent_datetime(a.created_on)} for a in self.activities.values()]

    def edit_opportunity(self, opportunity_id: str, fields: Any) -> dict:
        """Change an opportunity's fields behind the pipeline's back (drift tests); no validation, ModifiedOn moves."""
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise MXInvalidInputException('The body must be {"Fields": {"<SchemaName>": "<value>", ...}}.')
        with self._lock:
            opp = self.opportunities.get(opportunity_id.strip().lower())
            if opp is None:
                raise MXRecordNotFoundException(f"Opportunity with id '{opportunity_id}' does not exist.")
            self._update_opportunity(opp, {k: "" if v is None else str(v) for k, v in fields.items()})
            self._sync()
            return self._describe_opportunity(self.opportunities[opp.id])
