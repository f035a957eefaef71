"""LeadSquared's rules on one account's state: each call checks in full, then writes, and returns outcomes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable

from lsq_pipeline.sandbox.account import (
    OWNER_FIELD,
    STATUS_COMMENT_FIELD,
    STATUS_FIELD,
    Account,
    ActivityType,
    FieldDefinition,
    OpportunityType,
)
from lsq_pipeline.sandbox.exceptions import (
    MXDuplicateEntryException,
    MXInvalidFieldValueException,
    MXInvalidInputException,
    MXMandatoryAttributeMissingException,
    MXRecordNotFoundException,
    MXSystemFieldUpdateException,
    SandboxError,
    status_comment_missing,
)
from lsq_pipeline.sandbox.outcomes import Captured, ReadGroup, RowDone, RowOutcome, RowRefused
from lsq_pipeline.sandbox.payloads import (
    MAX_IDS_PER_READ,
    MAX_NOTE_LENGTH,
    ActivityRow,
    BulkAddRow,
    BulkUpdateRow,
    CaptureRequest,
    FieldValue,
    GetByIdsRequest,
    LeadAttribute,
)
from lsq_pipeline.sandbox.state import (
    SEARCH_BY_PROSPECT_ID,
    SENT_DATETIME_FORMAT,
    AccountState,
    Activity,
    Lead,
    Opportunity,
    fold,
    new_id,
)

SYSTEM_FIELDS = ("CreatedOn", "ModifiedOn", "CreatedBy", "ModifiedBy")
PROSPECT_ID_ATTRIBUTE = "ProspectID"
SEARCH_BY_ATTRIBUTE = "SearchBy"
USER_DEFINED_GUID_ATTRIBUTE = "__UseUserDefinedGuid__"
SENT_DATE_FORMAT = "%Y-%m-%d"

ACTIVITY_CAPTURED = "OpportunityCaptured"
ACTIVITY_DUPLICATE_DETECTED = "DuplicateDetected"
ACTIVITY_CUSTOM = "Custom"


class MissingLead(MXRecordNotFoundException):
    """A Bulk Add row whose lead does not exist; the answer builder words the message per profile."""

    def __init__(self, field: str, value: str):
        super().__init__(f"Lead with {field} '{value}' does not exist.")
        self.field, self.value = field, value


class Rules:
    """The rules of one account. `validate_dropdowns(type)` and `capture_applies_duplicate_rule` come
    from the profile (the only two switches that change what is written, not how it is answered)."""

    def __init__(self, state: AccountState, validate_dropdowns: Callable[[OpportunityType | None], bool],
                 capture_applies_duplicate_rule: bool):
        self.state = state
        self.account: Account = state.account
        self.validate_dropdowns = validate_dropdowns
        self.capture_applies_duplicate_rule = capture_applies_duplicate_rule

    # ----- values ---------------------------------------------------------------------

    def check_value(self, definition: FieldDefinition, value: str | None, dropdowns: bool) -> str:
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
            option = next((o for o in definition.options if fold(o) == fold(value)), None)
            if option is None and dropdowns:
                raise refuse(f"allowed values are {', '.join(definition.options)}")
            return option or value
        if kind == "Boolean":
            flag = fold(value)
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

    @staticmethod
    def check_note(note: str | None) -> str:
        if note and len(note) > MAX_NOTE_LENGTH:
            raise MXInvalidFieldValueException(
                f"Invalid value for 'OpportunityNote': maximum length is {MAX_NOTE_LENGTH}; got {len(note)}."
            )
        return note or ""

    def check_opportunity_fields(self, opp_type: OpportunityType, sent: list[FieldValue], *,
                                 creating: bool) -> dict[str, str]:
        """Validated fields of one write (types, system fields, mandatory, status comment)."""
        dropdowns = self.validate_dropdowns(opp_type)
        values: dict[str, str] = {}
        for item in sent:
            name = item.SchemaName
            if name in SYSTEM_FIELDS:
                raise MXSystemFieldUpdateException(f"System field '{name}' cannot be updated.")
            definition = opp_type.field(name)
            if definition is None:
                raise MXInvalidInputException(
                    f"Field '{name}' does not exist for opportunity type {opp_type.event_code}."
                )
            values[name] = self.check_value(definition, item.Value, dropdowns)
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

    def bad_values(self, rows: list[Any]) -> list[tuple[int, MXInvalidFieldValueException]]:
        """Rows whose values a type refuses (type, length, option, note), found without writing anything."""
        found = []
        for number, row in enumerate(rows, start=1):
            try:
                self._check_values_only(row)
            except MXInvalidFieldValueException as error:
                found.append((number, error))
        return found

    def _check_values_only(self, row: Any) -> None:
        """The value checks of one row alone: its note, then each known field of its type."""
        if isinstance(row, BulkAddRow):
            self.check_note(row.OpportunityNote)
        row_type = self._row_type(row)
        if row_type is None:
            return
        dropdowns = self.validate_dropdowns(row_type if isinstance(row_type, OpportunityType) else None)
        for item in row.Fields:
            definition = row_type.field(item.SchemaName)
            if definition is not None:
                self.check_value(definition, item.Value, dropdowns)

    def _row_type(self, row: Any) -> OpportunityType | ActivityType | None:
        """The type whose fields a bulk row writes; None for a lead, a row refused at parsing, or no type."""
        if isinstance(row, BulkAddRow):
            return self.account.opportunity_type(row.OpportunityEventCode)
        if isinstance(row, BulkUpdateRow):
            opp = self.state.opportunities.get(row.ProspectOpportunityId.strip().lower())
            return self.account.opportunity_type(opp.event_code) if opp else None
        if isinstance(row, ActivityRow):
            return self.account.activity_type(row.ActivityEvent)
        return None

    def opportunity_type(self, event_code: int) -> OpportunityType:
        opp_type = self.account.opportunity_type(event_code)
        if opp_type is None:
            raise MXInvalidInputException(f"Opportunity type with event code {event_code} does not exist.")
        return opp_type

    def owner_id_by_email(self, email: str) -> str:
        user = self.account.user_by_email(email)
        if user is None:
            raise MXInvalidInputException(f"User with email '{email}' does not exist.")
        return user.id

    def search_by_field(self, search_by: str | None) -> str:
        """The canonical SearchBy: a unique lead field or `ProspectId` (case-insensitive)."""
        if not search_by:
            raise MXMandatoryAttributeMissingException("The URL parameter 'SearchBy' is mandatory.")
        for name in [*self.account.unique_lead_fields, SEARCH_BY_PROSPECT_ID]:
            if fold(search_by) == fold(name):
                return name
        raise MXInvalidInputException(
            f"SearchBy '{search_by}' is not a unique lead field "
            f"({', '.join(self.account.unique_lead_fields)}, {SEARCH_BY_PROSPECT_ID})."
        )

    # ----- bulk rows --------------------------------------------------------------------

    @staticmethod
    def run_rows(rows: list[Any], one_row: Callable[[Any], RowOutcome]) -> list[RowOutcome]:
        """Each row on its own; a row refused at parsing (a SandboxError) or by a rule changes nothing."""
        outcomes: list[RowOutcome] = []
        for row in rows:
            if isinstance(row, SandboxError):
                outcomes.append(RowRefused(row))
                continue
            try:
                outcomes.append(one_row(row))
            except MXDuplicateEntryException as error:
                outcomes.append(RowRefused(error, error.existing_id))
            except SandboxError as error:
                outcomes.append(RowRefused(error))
        return outcomes

    def add_opportunity(self, search_field: str, row: BulkAddRow) -> RowOutcome:
        """Bulk Add, one row: the lead by `search_field`, then a new opportunity or the duplicate."""
        lead = self.state.find_lead(search_field, row.SearchByValue)
        if lead is None:
            raise MissingLead(search_field, row.SearchByValue)
        opp_type = self.opportunity_type(row.OpportunityEventCode)
        note = self.check_note(row.OpportunityNote)
        values = self.check_opportunity_fields(opp_type, row.Fields, creating=True)
        if row.OpportunityOwnerEmail and OWNER_FIELD not in values:
            values[OWNER_FIELD] = self.owner_id_by_email(row.OpportunityOwnerEmail)
        existing = self.state.find_duplicate(opp_type.event_code, lead.id, values)
        if existing is not None:
            self._merge_duplicate(existing, values, overwrite=row.OverwriteFields,
                                  update_empty=row.UpdateEmptyFields, keep_owner=row.DoNotChangeOwner)
            if not row.DoNotPostDuplicateActivity:
                self._post_activity(ACTIVITY_DUPLICATE_DETECTED, lead.id, existing.id)
            raise self._duplicate_error(opp_type, existing)
        return RowDone(self._create_opportunity(lead.id, opp_type, values, note).id)

    def update_opportunity(self, row: BulkUpdateRow) -> RowOutcome:
        opp = self.state.opportunities.get(row.ProspectOpportunityId.strip().lower())
        if opp is None:
            raise MXRecordNotFoundException(f"Opportunity with id '{row.ProspectOpportunityId}' does not exist.")
        if opp.event_code != row.OpportunityEventCode:
            raise MXInvalidInputException(
                f"OpportunityEventCode {row.OpportunityEventCode} does not match the opportunity's "
                f"type {opp.event_code}."
            )
        values = self.check_opportunity_fields(self.opportunity_type(opp.event_code), row.Fields, creating=False)
        self.update_fields(opp, values)
        return RowDone()

    def opportunity_for_activities(self, opportunity_id: str | None) -> Opportunity | None:
        """The opportunity named in the URL; a missing parameter refuses the whole call."""
        if not opportunity_id:
            raise MXMandatoryAttributeMissingException("The URL parameter 'opportunityId' is mandatory.")
        return self.state.opportunities.get(opportunity_id.strip().lower())

    def add_activity(self, opportunity_id: str, opp: Opportunity | None, row: ActivityRow) -> RowOutcome:
        if opp is None:
            raise MXRecordNotFoundException(f"Opportunity with id '{opportunity_id}' does not exist.")
        activity_type = self.account.activity_type(row.ActivityEvent)
        if activity_type is None:
            raise MXInvalidInputException(f"Activity event {row.ActivityEvent} does not exist.")
        owner_id = self.owner_id_by_email(row.ActivityOwnerEmail)
        values = {}
        dropdowns = self.validate_dropdowns(None)
        for item in row.Fields:
            definition = activity_type.field(item.SchemaName)
            if definition is None:
                raise MXInvalidInputException(
                    f"Field '{item.SchemaName}' does not exist for activity event {row.ActivityEvent}."
                )
            values[item.SchemaName] = self.check_value(definition, item.Value, dropdowns)
        for definition in activity_type.fields:
            if definition.mandatory and not values.get(definition.schema_name):
                raise MXMandatoryAttributeMissingException(
                    f"Mandatory field '{definition.schema_name}' ({definition.display_name}) is missing."
                )
        activity = self._post_activity(ACTIVITY_CUSTOM, opp.lead_id, opp.id, event_code=row.ActivityEvent,
                                       owner_id=owner_id, note=row.ActivityNote or "", fields=values)
        return RowDone(activity.id)

    # ----- leads ------------------------------------------------------------------------

    def lead_attributes(self, pairs: Iterable[LeadAttribute]) -> tuple[dict[str, str], str | None, bool]:
        """Lead fields by canonical name, the `SearchBy` value sent, and `__UseUserDefinedGuid__`."""
        attributes: dict[str, str] = {}
        search_by = None
        user_defined_guid = False
        for item in pairs:
            if fold(item.Attribute) == fold(SEARCH_BY_ATTRIBUTE):
                search_by = item.Value
            elif item.Attribute == USER_DEFINED_GUID_ATTRIBUTE:
                user_defined_guid = fold(item.Value or "") in ("true", "1")
            else:
                lead_field = next((f for f in self.account.lead_fields if fold(f) == fold(item.Attribute)), None)
                if lead_field is None:
                    raise MXInvalidInputException(f"Lead field '{item.Attribute}' does not exist.")
                attributes[lead_field] = item.Value or ""
        return attributes, search_by, user_defined_guid

    def match_field(self, attributes: dict[str, str], search_by: str | None) -> tuple[str, str]:
        """The SearchBy field (canonical) and the lead attribute holding its value; default: the first
        unique field sent, in the account's order (email, then phone)."""
        unique_sent = [f for f in [*self.account.unique_lead_fields, PROSPECT_ID_ATTRIBUTE] if attributes.get(f)]
        if not unique_sent:
            raise MXInvalidInputException(
                "The lead must contain at least one unique lead field "
                f"({', '.join(self.account.unique_lead_fields)})."
            )
        if not search_by:
            search_by = SEARCH_BY_PROSPECT_ID if unique_sent[0] == PROSPECT_ID_ATTRIBUTE else unique_sent[0]
        search_field = self.search_by_field(search_by)
        attribute = PROSPECT_ID_ATTRIBUTE if search_field == SEARCH_BY_PROSPECT_ID else search_field
        if not attributes.get(attribute):
            raise MXInvalidInputException(f"The lead has no value for the SearchBy field '{attribute}'.")
        return search_field, attribute

    def check_lead_unique(self, lead_id: str, lead_fields: dict[str, str]) -> None:
        """A unique field's value may belong to one lead only ("A Lead with same Email already exists.")."""
        for name in self.account.unique_lead_fields:
            owner = self.state.lead_owning(name, lead_fields.get(name, ""))
            if owner is not None and owner != lead_id:
                label = "Email" if name == "EmailAddress" else name
                raise MXDuplicateEntryException(f"A Lead with same {label} already exists.", existing_id=owner)

    def save_lead(self, lead: Lead | None, lead_id: str, lead_fields: dict[str, str]) -> Lead:
        now = self.state.clock()
        if lead is None:
            lead = Lead(lead_id, {k: v for k, v in lead_fields.items() if v}, now, now)
            self.state.put(lead)
            return lead
        merged = {k: v for k, v in {**lead.fields, **lead_fields}.items() if v}
        if merged != lead.fields:
            lead = Lead(lead.id, merged, lead.created_on, self.state.next_modified_on(lead.modified_on))
            self.state.put(lead)
        return lead

    def create_lead(self, pairs: list[LeadAttribute]) -> RowOutcome:
        """Create Leads in Bulk, one lead: refused if one of its unique values belongs to a lead already."""
        attributes, _, _ = self.lead_attributes(pairs)
        attributes.pop(PROSPECT_ID_ATTRIBUTE, None)
        self.match_field(attributes, None)
        lead_id = new_id()
        self.check_lead_unique(lead_id, attributes)
        return RowDone(self.save_lead(None, lead_id, attributes).id)

    def create_or_update_lead(self, pairs: list[LeadAttribute]) -> RowOutcome:
        """Create or Update Leads in Bulk, one lead: matched on its SearchBy field, updated or created."""
        attributes, search_by, _ = self.lead_attributes(pairs)
        search_field, attribute = self.match_field(attributes, search_by)
        lead = self.state.find_lead(search_field, attributes[attribute])
        lead_fields = {k: v for k, v in attributes.items() if k != PROSPECT_ID_ATTRIBUTE}
        if lead is None and search_field == SEARCH_BY_PROSPECT_ID:
            raise MXRecordNotFoundException(f"Lead with ProspectId '{attributes[attribute]}' does not exist.")
        lead_id = lead.id if lead else new_id()
        self.check_lead_unique(lead_id, lead_fields)
        return RowDone(self.save_lead(lead, lead_id, lead_fields).id, created=lead is None)

    # ----- Capture and reads ------------------------------------------------------------

    def capture(self, request: CaptureRequest) -> Captured:
        """Create or update the lead, then create the opportunity or detect its duplicate; all checks first."""
        opportunity = request.Opportunity
        if opportunity.OverwriteFields and opportunity.UpdateEmptyFields:
            raise MXInvalidInputException("OverwriteFields and UpdateEmptyFields both cannot be true")
        attributes, search_by, user_defined_guid = self.lead_attributes(request.LeadDetails)
        search_field, search_attribute = self.match_field(attributes, search_by)
        if opportunity.OpportunityDateTime:
            try:
                datetime.strptime(opportunity.OpportunityDateTime, SENT_DATETIME_FORMAT)
            except ValueError:
                raise MXInvalidInputException("OpportunityDateTime must be yyyy-mm-dd hh:mm:ss.") from None
        opp_type = self.opportunity_type(opportunity.OpportunityEventCode)
        note = self.check_note(opportunity.OpportunityNote)
        values = self.check_opportunity_fields(opp_type, opportunity.Fields, creating=True)
        if opportunity.OpportunityOwnerEmail and OWNER_FIELD not in values:
            values[OWNER_FIELD] = self.owner_id_by_email(opportunity.OpportunityOwnerEmail)
        lead = self.state.find_lead(search_field, attributes[search_attribute])
        lead_id = lead.id if lead else (
            self._user_defined_guid(attributes.get(PROSPECT_ID_ATTRIBUTE)) if user_defined_guid else new_id()
        )
        lead_fields = {k: v for k, v in attributes.items() if k != PROSPECT_ID_ATTRIBUTE}
        self.check_lead_unique(lead_id, lead_fields)
        # Every check has passed: from here on the capture writes.
        lead = self.save_lead(lead, lead_id, lead_fields)
        existing = (self.state.find_duplicate(opp_type.event_code, lead.id, values)
                    if self.capture_applies_duplicate_rule else None)
        captured = self._post_activity(ACTIVITY_CAPTURED, lead.id, existing.id if existing else None)
        if existing is None:
            created = self._create_opportunity(lead.id, opp_type, values, note)
            return Captured(lead.id, captured.id, created_id=created.id)
        self._merge_duplicate(existing, values, overwrite=opportunity.OverwriteFields,
                              update_empty=opportunity.UpdateEmptyFields, keep_owner=opportunity.DoNotChangeOwner)
        duplicate_activity = (None if opportunity.DoNotPostDuplicateActivity
                              else self._post_activity(ACTIVITY_DUPLICATE_DETECTED, lead.id, existing.id))
        return Captured(lead.id, captured.id, conflicted_id=existing.id,
                        duplicate=self._duplicate_error(opp_type, existing),
                        duplicate_activity_id=duplicate_activity.id if duplicate_activity else None)

    def read(self, request: GetByIdsRequest) -> list[ReadGroup]:
        """GetOpportunitiesById: one group per search parameter; unknown or other-type ids left out, and
        each opportunity as the (possibly lagging) read sees it."""
        if not request.SearchParameters:
            raise MXInvalidInputException("SearchParameters must contain at least one search parameter.")
        if any(not p.ProspectActivityId for p in request.SearchParameters):
            raise MXInvalidInputException("ProspectActivityId must contain at least one opportunity id.")
        total = sum(len(p.ProspectActivityId) for p in request.SearchParameters)
        if total > MAX_IDS_PER_READ:
            raise MXInvalidInputException(
                f"You can retrieve a maximum of {MAX_IDS_PER_READ} opportunities; got {total}."
            )
        groups = []
        for parameter in request.SearchParameters:
            try:
                event_code = int(str(parameter.EventCode).strip())
            except ValueError:
                raise MXInvalidInputException(f"EventCode '{parameter.EventCode}' is not a number.") from None
            columns = [c.strip() for c in parameter.Columns.Include_CSV.split(",") if c.strip()]
            if not columns:
                raise MXMandatoryAttributeMissingException("Columns.Include_CSV must name at least one column.")
            found = []
            for opp_id in dict.fromkeys(i.strip().lower() for i in parameter.ProspectActivityId):
                opp = self.state.readable(opp_id)
                if opp is not None and opp.event_code == event_code:
                    found.append(opp)
            groups.append(ReadGroup(str(parameter.EventCode), columns, found))
        return groups

    # ----- shared write steps -----------------------------------------------------------

    @staticmethod
    def _user_defined_guid(value: str | None) -> str:
        try:
            return str(uuid.UUID(value or ""))
        except ValueError:
            raise MXInvalidInputException(
                f"__UseUserDefinedGuid__ needs a GUID in ProspectID; got '{value}'."
            ) from None

    @staticmethod
    def _duplicate_error(opp_type: OpportunityType, existing: Opportunity) -> MXDuplicateEntryException:
        return MXDuplicateEntryException(
            f"Duplicate opportunity detected: an opportunity of type {opp_type.event_code} with the same "
            f"{', '.join(opp_type.duplicate_rule)} already exists on this lead ({existing.id}).",
            existing_id=existing.id,
        )

    def _create_opportunity(self, lead_id: str, opp_type: OpportunityType, values: dict[str, str],
                            note: str) -> Opportunity:
        now = self.state.clock()
        values = {name: value for name, value in values.items() if value != ""}
        values.setdefault(OWNER_FIELD, self.state.api_user_id)
        opp = Opportunity(new_id(), lead_id, opp_type.event_code, values, note, now, now,
                          self.state.api_user_id, self.state.api_user_id)
        self.state.put(opp)
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
            self.update_fields(existing, changes)

    def update_fields(self, opp: Opportunity, changes: dict[str, str]) -> None:
        """New field values (an empty value clears the field); ModifiedOn moves."""
        fields = {name: value for name, value in {**opp.fields, **changes}.items() if value != ""}
        self.state.put(Opportunity(opp.id, opp.lead_id, opp.event_code, fields, opp.note, opp.created_on,
                                   self.state.next_modified_on(opp.modified_on), opp.created_by,
                                   self.state.api_user_id))

    def _post_activity(self, kind: str, lead_id: str, opportunity_id: str | None, *,
                       event_code: int | None = None, owner_id: str | None = None, note: str = "",
                       fields: dict[str, str] | None = None) -> Activity:
        activity = Activity(new_id(), kind, event_code, lead_id, opportunity_id,
                            owner_id or self.state.api_user_id, note, fields or {}, self.state.clock())
        self.state.put(activity)
        return activity
