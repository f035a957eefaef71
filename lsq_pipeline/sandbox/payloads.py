"""The request bodies of the five endpoints as pydantic models; a body of the wrong shape is a 400."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lsq_pipeline.sandbox.exceptions import MXInvalidJsonException

MAX_ITEMS_PER_WRITE = 25
MAX_IDS_PER_READ = 2000


def _as_text(value: Any) -> Any:
    """Field values travel as strings; numbers and booleans are accepted and turned into text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class _Payload(BaseModel):
    """Keys are matched case-insensitively (LeadSquared is .NET); unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _case_insensitive_keys(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        canonical = {name.lower(): name for name in cls.model_fields}
        return {canonical.get(str(key).lower(), key): value for key, value in raw.items()}


class FieldValue(_Payload):
    SchemaName: str
    Value: str | None = None

    _text = field_validator("Value", mode="before")(lambda cls, v: _as_text(v))


class LeadAttribute(_Payload):
    Attribute: str
    Value: str | None = None

    _text = field_validator("Value", mode="before")(lambda cls, v: _as_text(v))


class _OpportunityWrite(_Payload):
    OpportunityEventCode: int
    OpportunityNote: str | None = None
    OpportunityOwnerEmail: str | None = None
    OverwriteFields: bool = False
    UpdateEmptyFields: bool = False
    DoNotPostDuplicateActivity: bool = False
    DoNotChangeOwner: bool = False
    Fields: list[FieldValue] = Field(default_factory=list)


class BulkAddRow(_OpportunityWrite):
    SearchByValue: str

    _text = field_validator("SearchByValue", mode="before")(lambda cls, v: _as_text(v))


class BulkUpdateRow(_Payload):
    ProspectOpportunityId: str
    OpportunityEventCode: int
    Fields: list[FieldValue] = Field(default_factory=list)


class CaptureOpportunity(_OpportunityWrite):
    OpportunityDateTime: str | None = None


class CaptureRequest(_Payload):
    LeadDetails: list[LeadAttribute]
    Opportunity: CaptureOpportunity


class ColumnList(_Payload):
    Include_CSV: str = ""


class SearchParameter(_Payload):
    EventCode: int | str
    ProspectActivityId: list[str]
    Columns: ColumnList = Field(default_factory=ColumnList)


class GetByIdsRequest(_Payload):
    SearchParameters: list[SearchParameter]


class ActivityRow(_Payload):
    ActivityEvent: int
    ActivityNote: str | None = None
    ActivityOwnerEmail: str | None = None
    ActivityDateTime: str | None = None
    Fields: list[FieldValue] = Field(default_factory=list)


def parse(model: type[BaseModel], body: Any) -> Any:
    """Validate one object body, or raise the 400 that names the offending key."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise MXInvalidJsonException(_describe(exc)) from None


def parse_rows(model: type[BaseModel], body: Any) -> list[Any]:
    """Validate an array body of objects, or raise the 400 that names the offending row and key."""
    if not isinstance(body, list):
        raise MXInvalidJsonException("The request body must be a JSON array.")
    rows = []
    for index, row in enumerate(body):
        try:
            rows.append(model.model_validate(row))
        except ValidationError as exc:
            raise MXInvalidJsonException(f"Row {index + 1}: {_describe(exc)}") from None
    return rows


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )
