"""Typed requests: the body decoded once (size, depth, UTF-8, JSON) and parsed into pydantic models.

A body that is not JSON, or of the wrong shape, is a 400 for the whole call. A missing mandatory
attribute is LeadSquared's 500 `MXMandatoryAttributeMissingException`: for a batch, on that row only.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from lsq_pipeline.sandbox.exceptions import (
    MXInvalidInputException,
    MXInvalidJsonException,
    MXMandatoryAttributeMissingException,
    SandboxError,
)

MAX_ITEMS_PER_WRITE = 25
MAX_IDS_PER_READ = 2000
MAX_LEADS_PER_CREATE = 50
MAX_LEADS_PER_UPSERT = 25
MAX_NOTE_LENGTH = 200
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _as_text(value: Any) -> Any:
    """Field values travel as strings; numbers and booleans are accepted and turned into text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _text(*names: str):
    return field_validator(*names, mode="before")(lambda cls, v: _as_text(v))


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

    _value_text = _text("Value")


class LeadAttribute(_Payload):
    Attribute: str
    Value: str | None = None

    _value_text = _text("Value")


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

    _search_text = _text("SearchByValue")


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
    Include_CSV: str


class SearchParameter(_Payload):
    EventCode: int | str
    ProspectActivityId: list[str]
    Columns: ColumnList


class GetByIdsRequest(_Payload):
    SearchParameters: list[SearchParameter]


class ActivityRow(_Payload):
    ActivityEvent: int
    ActivityOwnerEmail: str
    ActivityNote: str | None = None
    ActivityDateTime: str | None = None
    Fields: list[FieldValue] = Field(default_factory=list)


LeadRow = list[LeadAttribute]
_LEAD_ROW = TypeAdapter(LeadRow)


def decode_json(raw: bytes) -> Any:
    """The body as JSON: UTF-8, at most MAX_JSON_DEPTH deep (checked before parsing), else a 400."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MXInvalidJsonException(
            f"Unexpected character encountered while parsing value: invalid UTF-8 at byte {exc.start}."
        ) from None
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise MXInvalidJsonException(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MXInvalidJsonException(
            f"Unexpected character encountered while parsing value. Path '', position {getattr(exc, 'pos', 0)}."
        ) from None


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in `raw`, brackets inside strings left out; linear, no recursion."""
    brackets = _BRACKETS.findall(_STRINGS.sub(b'""', raw))
    return max(accumulate(_DEPTH_STEP[b[0]] for b in brackets), default=0)


def parse(model: type[BaseModel], body: Any) -> Any:
    """One object body as `model`: a missing mandatory attribute is a 500, any other mismatch a 400."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _refusal(exc) from None


def parse_batch(model: type[BaseModel] | TypeAdapter, body: Any, limit: int, what: str) -> list[Any]:
    """An array body of 1 to `limit` rows: each row a model, or the SandboxError of its missing attribute."""
    if not isinstance(body, list):
        raise MXInvalidJsonException("The request body must be a JSON array.")
    if not body:
        raise MXInvalidInputException(f"The request must contain at least one {what}.")
    if len(body) > limit:
        raise MXInvalidInputException(f"You can send up to {limit} {what}s in a single request; got {len(body)}.")
    validate = model.validate_python if isinstance(model, TypeAdapter) else model.model_validate
    rows: list[Any] = []
    for number, row in enumerate(body, start=1):
        try:
            rows.append(validate(row))
        except ValidationError as exc:
            refusal = _refusal(exc)
            if isinstance(refusal, MXInvalidJsonException):
                raise MXInvalidJsonException(f"Row {number}: {refusal.message}") from None
            rows.append(refusal)
    return rows


def parse_lead_rows(body: Any, limit: int) -> list[Any]:
    """The lead bulk calls' body: an array of leads, each an array of `{Attribute, Value}` pairs."""
    return parse_batch(_LEAD_ROW, body, limit, "lead")


def _refusal(exc: ValidationError) -> SandboxError:
    """MXMandatoryAttributeMissingException when every problem is an absent (or null) attribute."""
    errors = exc.errors()
    if all(err["loc"] and (err["type"] == "missing" or err.get("input", "") is None) for err in errors):
        names = ", ".join(_location(err) for err in errors)
        return MXMandatoryAttributeMissingException(f"Mandatory attribute missing: {names}.")
    return MXInvalidJsonException("; ".join(f"{_location(err)}: {err['msg']}" for err in errors))


def _location(err: dict) -> str:
    return ".".join(str(part) for part in err["loc"]) or "body"
