"""Pydantic models for the five LeadSquared opportunity endpoints and the two lead bulk creates,
the API's limits and paths.

API field names are aliases (`SearchByValue`), Python names are used in code (`search_by_value`).
Requests serialize with `to_api()` (aliases, no `None`); answers parse tolerantly: unknown keys
are ignored, and the per-row failure keys (`ExceptionType`, `ExceptionMessage`) are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Limits from the API reference (../shared/leadsquared-api/).
MAX_ITEMS_PER_WRITE = 25
"""Bulk Add, Bulk Update and Bulk Activities take at most 25 items a call."""
MAX_IDS_PER_READ = 2000
"""GetOpportunitiesById returns at most 2,000 opportunities a call."""
MAX_LEADS_PER_BULK_CREATE = 50
"""Create Leads in Bulk takes at most 50 leads a call."""
MAX_LEADS_PER_BULK_CREATE_OR_UPDATE = 25
"""Create or Update Leads in Bulk takes at most 25 leads a call."""

# Endpoint paths (all POST, JSON body).
BULK_ADD_PATH = "/v2/OpportunityManagement.svc/Bulk/Add/ByLeadField"
BULK_UPDATE_PATH = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
CAPTURE_PATH = "/v2/OpportunityManagement.svc/Capture"
GET_BY_IDS_PATH = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
BULK_ACTIVITIES_PATH = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByOpportunityId"
LEAD_BULK_CREATE_PATH = "/v2/LeadManagement.svc/Lead/Bulk/Create"
LEAD_BULK_CREATE_OR_UPDATE_PATH = "/v2/LeadManagement.svc/Lead/Bulk/CreateOrUpdate"

RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
DUPLICATE_EXCEPTION = "MXDuplicateEntryException"


@dataclass(frozen=True)
class Endpoint:
    """One API endpoint: a short name (for logs and counters), its path, items per call, and the
    rate class whose window it takes starts from (LeadSquared's "Bulk APIs" are `bulk`)."""

    name: str
    path: str
    max_items: int
    rate_class: Literal["general", "bulk"] = "general"


BULK_ADD = Endpoint("bulk_add", BULK_ADD_PATH, MAX_ITEMS_PER_WRITE)
BULK_UPDATE = Endpoint("bulk_update", BULK_UPDATE_PATH, MAX_ITEMS_PER_WRITE)
CAPTURE = Endpoint("capture", CAPTURE_PATH, 1)
GET_BY_IDS = Endpoint("get_by_ids", GET_BY_IDS_PATH, MAX_IDS_PER_READ)
BULK_ACTIVITIES = Endpoint("bulk_activities", BULK_ACTIVITIES_PATH, MAX_ITEMS_PER_WRITE)
LEAD_BULK_CREATE = Endpoint("lead_bulk_create", LEAD_BULK_CREATE_PATH, MAX_LEADS_PER_BULK_CREATE, rate_class="bulk")
LEAD_BULK_CREATE_OR_UPDATE = Endpoint(
    "lead_bulk_create_or_update", LEAD_BULK_CREATE_OR_UPDATE_PATH, MAX_LEADS_PER_BULK_CREATE_OR_UPDATE, rate_class="bulk"
)
ENDPOINTS = (BULK_ADD, BULK_UPDATE, CAPTURE, GET_BY_IDS, BULK_ACTIVITIES, LEAD_BULK_CREATE, LEAD_BULK_CREATE_OR_UPDATE)


class ApiModel(BaseModel):
    """Base of every model: aliases are the API's names, Python names work too, extra keys ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def to_api(self) -> dict[str, Any]:
        """The JSON-ready dict LeadSquared expects (API names, `None` left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)


def _as_api_string(value: Any) -> Any:
    """All field values travel as strings; booleans are written as "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class FieldValue(ApiModel):
    """One opportunity or activity field: `{"SchemaName": "mx_Custom_1", "Value": "..."}`."""

    schema_name: str = Field(alias="SchemaName")
    value: str | None = Field(default=None, alias="Value")

    _coerce = field_validator("value", mode="before")(_as_api_string)


def fields_from_dict(values: dict[str, Any]) -> list[FieldValue]:
    """`{"mx_Custom_1": "A-1", "Status": "Open"}` -> the API's list of SchemaName/Value pairs."""
    return [FieldValue(schema_name=name, value=value) for name, value in values.items()]


# --- requests ---------------------------------------------------------------------------------


class DuplicateHandling(ApiModel):
    """What a create does when the type's duplicate rule finds an existing opportunity."""

    overwrite_fields: bool | None = Field(default=None, alias="OverwriteFields")
    update_empty_fields: bool | None = Field(default=None, alias="UpdateEmptyFields")
    do_not_post_duplicate_activity: bool | None = Field(default=None, alias="DoNotPostDuplicateActivity")
    do_not_change_owner: bool | None = Field(default=None, alias="DoNotChangeOwner")


class OpportunityAdd(DuplicateHandling):
    """One item of Add Opportunities in Bulk (`?SearchBy=<lead field>`)."""

    search_by_value: str = Field(alias="SearchByValue")
    event_code: int = Field(alias="OpportunityEventCode")
    note: str | None = Field(default=None, alias="OpportunityNote")
    owner_email: str | None = Field(default=None, alias="OpportunityOwnerEmail")
    fields: list[FieldValue] = Field(default_factory=list, alias="Fields")


class OpportunityUpdate(ApiModel):
    """One item of Bulk Update Opportunities (by opportunity id)."""

    opportunity_id: str = Field(alias="ProspectOpportunityId")
    event_code: int = Field(alias="OpportunityEventCode")
    fields: list[FieldValue] = Field(default_factory=list, alias="Fields")


class LeadAttribute(ApiModel):
    """One lead field of a Capture or a lead bulk create: `{"Attribute": "EmailAddress", "Value": "..."}`."""

    attribute: str = Field(alias="Attribute")
    value: str | None = Field(default=None, alias="Value")

    _coerce = field_validator("value", mode="before")(_as_api_string)


class CaptureOpportunityDetails(DuplicateHandling):
    """The `Opportunity` object of a Capture."""

    event_code: int = Field(alias="OpportunityEventCode")
    note: str | None = Field(default=None, alias="OpportunityNote")
    date_time: str | None = Field(default=None, alias="OpportunityDateTime")
    fields: list[FieldValue] = Field(default_factory=list, alias="Fields")


class CaptureRequest(ApiModel):
    """One Capture call: a lead (created or updated) and an opportunity on it."""

    lead_details: list[LeadAttribute] = Field(alias="LeadDetails")
    opportunity: CaptureOpportunityDetails = Field(alias="Opportunity")


class Columns(ApiModel):
    include_csv: str = Field(alias="Include_CSV")


class SearchParameter(ApiModel):
    """One group of GetOpportunitiesById: an event code, up to 2,000 ids and the columns wanted."""

    event_code: str = Field(alias="EventCode")
    opportunity_ids: list[str] = Field(alias="ProspectActivityId")
    columns: Columns = Field(alias="Columns")

    _code_as_text = field_validator("event_code", mode="before")(_as_api_string)


class GetOpportunitiesRequest(ApiModel):
    search_parameters: list[SearchParameter] = Field(alias="SearchParameters")


class ActivityAdd(ApiModel):
    """One item of Post Bulk Activities on an Opportunity."""

    activity_event: int = Field(alias="ActivityEvent")
    owner_email: str = Field(alias="ActivityOwnerEmail")
    note: str | None = Field(default=None, alias="ActivityNote")
    fields: list[FieldValue] | None = Field(default=None, alias="Fields")
    validate_dropdown_options: bool | None = Field(default=None, alias="ValidateDropDownOptions")


# --- responses --------------------------------------------------------------------------------


class ErrorBody(ApiModel):
    """`{"Status":"Error","ExceptionType":"MX...","ExceptionMessage":"..."}`."""

    status: str | int | None = Field(default=None, alias="Status")
    exception_type: str | None = Field(default=None, alias="ExceptionType")
    exception_message: str | None = Field(default=None, alias="ExceptionMessage")

    @property
    def is_mx_error(self) -> bool:
        return self.status == "Error" and (self.exception_type or "").startswith("MX")


class RowFailure(ApiModel):
    """The keys every bulk row may carry: its 1-based number and, when it failed, why."""

    row_number: int | None = Field(default=None, alias="RowNumber")
    exception_type: str | None = Field(default=None, alias="ExceptionType")
    exception_message: str | None = Field(default=None, alias="ExceptionMessage")


class BulkAddRow(RowFailure):
    opportunity_id: str | None = Field(default=None, alias="ProspectOpportunityId")
    created: bool = Field(default=False, alias="OpportunityCreated")


class BulkUpdateRow(RowFailure):
    updated: bool = Field(default=False, alias="OpportunityUpdated")


class ActivityRow(RowFailure):
    activity_id: str | None = Field(default=None, alias="ProspectActivityId")
    created: bool = Field(default=False, alias="ActivityCreated")


class BulkAddResponse(ApiModel):
    rows: list[BulkAddRow] = Field(default_factory=list, alias="Response")


class BulkUpdateResponse(ApiModel):
    rows: list[BulkUpdateRow] = Field(default_factory=list, alias="Response")


class BulkActivitiesResponse(ApiModel):
    rows: list[ActivityRow] = Field(default_factory=list, alias="Response")


class CaptureActivityDetail(ApiModel):
    activity_id: str | None = Field(default=None, alias="ActivityId")
    post_dedup_action: int | None = Field(default=None, alias="PostDeDupActionPerformed")


class CaptureResponse(ApiModel):
    """Capture's answer. `status`: 0 success, 1 failure, 2 partial success."""

    status: int | None = Field(default=None, alias="Status")
    primary_action: int | None = Field(default=None, alias="PrimaryAction")
    secondary_action: int | None = Field(default=None, alias="SecondaryAction")
    created_opportunity_id: str | None = Field(default=None, alias="CreatedOpportunityId")
    conflicted_opportunity_id: str | None = Field(default=None, alias="ConflictedOpportunityId")
    is_unique: bool | None = Field(default=None, alias="IsUnique")
    lead_id: str | None = Field(default=None, alias="RelatedProspectId")
    request_id: str | None = Field(default=None, alias="RequestId")
    additional_details: list[CaptureActivityDetail] = Field(default_factory=list, alias="AdditionalDetails")
    exception_type: str | None = Field(default=None, alias="ExceptionType")
    exception_message: str | None = Field(default=None, alias="ExceptionMessage")


class OpportunityRecord(BaseModel):
    """One opportunity read back by GetOpportunitiesById: the fixed keys plus every column asked for.

    Columns are kept as extra attributes; the record also reads like a dict of API names.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    opportunity_id: str = Field(alias="ProspectActivityId")
    lead_id: str | None = Field(default=None, alias="ProspectId")

    def as_dict(self) -> dict[str, Any]:
        """Every key of the answer by API name (`ProspectActivityId`, `ModifiedOn`, `mx_Custom_1`...)."""
        values: dict[str, Any] = {"ProspectActivityId": self.opportunity_id}
        if self.lead_id is not None:
            values["ProspectId"] = self.lead_id
        values.update(self.model_extra or {})
        return values

    # Read like a dict of API names: record["mx_Custom_1"], record.get("Status").
    def __getitem__(self, name: str) -> Any:
        return self.as_dict()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.as_dict()

    def get(self, name: str, default: Any = None) -> Any:
        return self.as_dict().get(name, default)

    def keys(self) -> Any:
        return self.as_dict().keys()


class OpportunityGroup(ApiModel):
    event_code: str | None = Field(default=None, alias="EventCode")
    record_count: int = Field(default=0, alias="RecordCount")
    opportunities: list[OpportunityRecord] = Field(default_factory=list, alias="Opportunities")

    _code_as_text = field_validator("event_code", mode="before")(_as_api_string)


# --- client results ---------------------------------------------------------------------------


class RowResult(ApiModel):
    """The outcome of one item sent through the client, in the order the items were given.

    `ok` is true when the record exists as asked: created, updated, or (for creates) found
    already existing under the type's duplicate rule (`already_existed`, with its id).
    `outcome_unknown` marks an activity call whose answer was lost: it may or may not have
    been posted, and it was not re-sent (activities have no duplicate detection).
    """

    ok: bool
    opportunity_id: str | None = None
    activity_id: str | None = None
    lead_id: str | None = None
    already_existed: bool = False
    outcome_unknown: bool = False
    exception_type: str | None = None
    exception_message: str | None = None


class LeadCallStatus(StrEnum):
    """What became of one lead bulk call. Whether a given lead exists is learned from the next Bulk Add."""

    ANSWERED = "answered"
    """HTTP 200: every lead of the call whose unique field was new now exists."""
    REFUSED = "refused"
    """An error answer: none, or only some, of the leads may exist."""
    UNKNOWN = "unknown"
    """No answer after the retries."""


class LeadBatchResult(ApiModel):
    """The outcome of one lead bulk call, covering the leads `first` to `first + count - 1` of those given.
    The answer's shape is not documented, so nothing but its kind (`status`) is read from it."""

    status: LeadCallStatus
    first: int
    count: int
    exception_type: str | None = None
    exception_message: str | None = None


class EndpointStats(ApiModel):
    """Counters of one endpoint (and, summed, of the client)."""

    calls: int = 0
    """HTTP calls sent, retries included."""
    items: int = 0
    """Items carried by the calls that got an answer the client could use."""
    retries: int = 0
    rate_limited: int = 0
    """Calls refused by the server's rate limit (429, or 200 with the rate-limit body)."""
    transient_failures: int = 0
    permanent_failures: int = 0
    seconds_in_calls: float = 0.0


class ClientStats(EndpointStats):
    """A snapshot of the client's counters, ready for Dagster asset metadata."""

    window_wait_seconds: float = 0.0
    """Seconds spent waiting for the rate-limit window, summed over threads."""
    per_endpoint: dict[str, EndpointStats] = Field(default_factory=dict)

    def as_metadata(self) -> dict[str, int | float]:
        """Flat numbers (no keys, no URLs) for `MaterializeResult(metadata=...)`."""
        flat: dict[str, int | float] = {
            "lsq_calls": self.calls,
            "lsq_items": self.items,
            "lsq_retries": self.retries,
            "lsq_rate_limited": self.rate_limited,
            "lsq_transient_failures": self.transient_failures,
            "lsq_permanent_failures": self.permanent_failures,
            "lsq_window_wait_seconds": round(self.window_wait_seconds, 3),
        }
        return flat
