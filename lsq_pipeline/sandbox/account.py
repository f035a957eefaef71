"""The sandbox account definition: opportunity and activity types, lead fields, users, seed records (YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_ACCOUNT_PATH = Path(__file__).with_name("default_account.yaml")

DataType = Literal[
    "String", "Number", "Date", "DateTime", "Dropdown", "SearchableDropdown", "Boolean", "User"
]

STATUS_FIELD = "Status"
OWNER_FIELD = "Owner"
STATUS_COMMENT_FIELD = "mx_Custom_19"
STATUS_OPTIONS = ["Open", "Won", "Lost"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldDefinition(_Strict):
    """One field of an opportunity or activity type."""

    schema_name: str
    display_name: str = ""
    data_type: DataType = "String"
    mandatory: bool = False
    options: list[str] = Field(default_factory=list)
    max_length: int | None = None

    @model_validator(mode="after")
    def _dropdown_has_options(self) -> FieldDefinition:
        if self.data_type in ("Dropdown", "SearchableDropdown") and not self.options:
            raise ValueError(f"field {self.schema_name!r} is a {self.data_type} without options")
        return self


class OpportunityType(_Strict):
    """An opportunity type, by event code, with its fields and duplicate detection rule."""

    event_code: int
    name: str = ""
    status_comments: bool = False
    duplicate_rule: list[str] = Field(default_factory=list)
    # Drop-down values outside the options: refused when true; None follows the account's setting.
    validate_dropdowns: bool | None = None
    fields: list[FieldDefinition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _builtin_fields_and_rule(self) -> OpportunityType:
        names = {f.schema_name for f in self.fields}
        if STATUS_FIELD not in names:
            self.fields.append(
                FieldDefinition(schema_name=STATUS_FIELD, display_name="Status",
                                data_type="Dropdown", options=STATUS_OPTIONS)
            )
        if OWNER_FIELD not in names:
            self.fields.append(
                FieldDefinition(schema_name=OWNER_FIELD, display_name="Owner", data_type="User")
            )
        if self.status_comments and STATUS_COMMENT_FIELD not in names:
            self.fields.append(
                FieldDefinition(schema_name=STATUS_COMMENT_FIELD, display_name="Status Comment",
                                max_length=200)
            )
        known = {f.schema_name for f in self.fields}
        unknown = [name for name in self.duplicate_rule if name not in known]
        if unknown:
            raise ValueError(
                f"duplicate_rule of type {self.event_code} names unknown fields {unknown}"
            )
        return self

    def field(self, schema_name: str) -> FieldDefinition | None:
        return next((f for f in self.fields if f.schema_name == schema_name), None)


class ActivityType(_Strict):
    """A custom activity type, by event code, with its fields."""

    event_code: int
    name: str = ""
    fields: list[FieldDefinition] = Field(default_factory=list)

    def field(self, schema_name: str) -> FieldDefinition | None:
        return next((f for f in self.fields if f.schema_name == schema_name), None)


class User(_Strict):
    id: str
    email: str


class SeedLead(_Strict):
    """A lead that exists when the sandbox starts empty."""

    id: str
    fields: dict[str, str] = Field(default_factory=dict)


class SeedOpportunity(_Strict):
    """An opportunity that exists when the sandbox starts empty."""

    id: str
    lead_id: str
    event_code: int
    fields: dict[str, str] = Field(default_factory=dict)
    note: str = ""
    created_on: str = "2021-01-01 00:00:00"
    modified_on: str | None = None


class Account(_Strict):
    """Everything the sandbox knows about the LeadSquared account it stands in for."""

    name: str = "sandbox"
    unique_lead_fields: list[str] = Field(default_factory=lambda: ["EmailAddress", "Phone", "Mobile"])
    # The real API accepts drop-down values outside the options unless validation is switched on (NOTES.md).
    validate_dropdowns: bool = False
    lead_fields: list[str] = Field(default_factory=list)
    users: list[User] = Field(min_length=1)
    opportunity_types: list[OpportunityType] = Field(default_factory=list)
    activity_types: list[ActivityType] = Field(default_factory=list)
    leads: list[SeedLead] = Field(default_factory=list)
    opportunities: list[SeedOpportunity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Account:
        for name in self.unique_lead_fields:
            if name not in self.lead_fields:
                self.lead_fields.append(name)
        if "ProspectID" not in self.lead_fields:
            self.lead_fields.append("ProspectID")
        codes = [t.event_code for t in self.opportunity_types]
        if len(codes) != len(set(codes)):
            raise ValueError("opportunity_types: event codes must be unique")
        lead_ids = {lead.id for lead in self.leads}
        for opp in self.opportunities:
            if opp.lead_id not in lead_ids:
                raise ValueError(f"opportunities: {opp.id} names unknown lead {opp.lead_id}")
            if opp.event_code not in codes:
                raise ValueError(f"opportunities: {opp.id} has unknown event code {opp.event_code}")
        return self

    def opportunity_type(self, event_code: int) -> OpportunityType | None:
        return next((t for t in self.opportunity_types if t.event_code == event_code), None)

    def activity_type(self, event_code: int) -> ActivityType | None:
        return next((t for t in self.activity_types if t.event_code == event_code), None)

    def user_by_email(self, email: str) -> User | None:
        return next((u for u in self.users if u.email.lower() == email.strip().lower()), None)

    def user_by_id(self, user_id: str) -> User | None:
        return next((u for u in self.users if u.id.lower() == user_id.strip().lower()), None)


class AccountError(ValueError):
    """The account file is missing, not YAML, or does not validate (the message names the key)."""


def load_account(path: str | Path | None = None) -> Account:
    """Load and validate an account definition; without a path, the default that ships with the package."""
    path = Path(path) if path is not None else DEFAULT_ACCOUNT_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AccountError(f"cannot read account file {path}: {exc}") from exc
    try:
        return Account.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise AccountError(f"invalid account file {path}: {problems}") from exc


def account_file_problem(path: str | Path) -> str | None:
    """Why `path` does not load as an account definition, in one line naming the file (not
    readable, not YAML, or its first invalid key); None when it loads."""
    try:
        load_account(path)
    except AccountError as error:
        cause = error.__cause__
        if isinstance(cause, ValidationError):
            first = cause.errors(include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "<root>"
            return f"invalid account file {path}: {where}: {first['msg'].removeprefix('Value error, ')}"
        if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
            return f"cannot read account file {path}: {cause.problem} (line {cause.problem_mark.line + 1})"
        return str(error).splitlines()[0]
    return None
