"""The declarative mapping from source columns to the opportunity type and activities, validated at load."""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

FieldType = Literal["string", "number", "date", "datetime", "dropdown", "email", "phone"]
FormulaGuard = Literal["reject", "quote", "off"]
OnExisting = Literal["overwrite", "fill_empty", "keep"]
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# LeadSquared's schema names: `Status`, `Owner`, `mx_Custom_1`, `mx_Loan_Amount`.
SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


def _schema_name(name: str) -> str:
    if not SCHEMA_NAME.match(name):
        raise ValueError(f"{name!r} is not a LeadSquared schema name (a letter, then letters, digits or _)")
    return name


SchemaName = Annotated[str, AfterValidator(_schema_name)]
"""A field's schema name, checked against LeadSquared's pattern before it goes anywhere near SQL."""


class MappingError(ValueError):
    """A mistake in the mapping file; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def template_columns(template: str) -> list[str]:
    """The `{column}` placeholders of a template, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


class FieldSpec(_Strict):
    """One value taken from a source column (or a template over columns), converted to its type."""

    column: str | None = None
    template: str | None = None
    type: FieldType = "string"
    required: bool = False
    max_length: int | None = Field(default=None, gt=0)
    options: list[str] | None = None
    value_map: dict[str, str] | None = None
    greater_than: float | None = None
    part: Literal["first", "rest"] | None = None
    owner: Literal["source", "crm"] = "source"
    """`crm`: LeadSquared's users own the field: sent when the opportunity is created, never again."""
    on_drift: Literal["report", "repair"] = "report"
    """A source-owned field changed in LeadSquared: report it, or send the sent value again."""
    formula_guard: FormulaGuard | None = None
    """A text that looks like a spreadsheet formula (starts with `=` or `@`, or with `+` / `-` and is
    not a number or phone number): `reject` it (the default), `quote` it (prefix `'`), or send it
    as it is (`off`). Strings only."""

    @property
    def guard(self) -> FormulaGuard:
        """The formula guard in force: `reject` unless the mapping says otherwise."""
        return self.formula_guard or "reject"

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if (self.column is None) == (self.template is None):
            raise ValueError("give exactly one of 'column' or 'template'")
        if self.template is not None and self.type != "string":
            raise ValueError("a template makes a string; 'type' must be string")
        if self.type == "dropdown" and not self.options:
            raise ValueError("a dropdown needs 'options'")
        if self.options is not None and self.type != "dropdown":
            raise ValueError(f"'options' only apply to a dropdown, not to type {self.type}")
        if self.options is not None and len({o.lower() for o in self.options}) != len(self.options):
            raise ValueError("'options' has the same value twice")
        if self.max_length is not None and self.type != "string":
            raise ValueError(f"'max_length' only applies to a string, not to type {self.type}")
        if self.formula_guard is not None and self.type != "string":
            raise ValueError(f"'formula_guard' only applies to a string, not to type {self.type}")
        if self.greater_than is not None and self.type != "number":
            raise ValueError(f"'greater_than' only applies to a number, not to type {self.type}")
        if self.owner == "crm" and self.on_drift != "report":
            raise ValueError("a field owned by the CRM is never sent again: 'on_drift' does not apply")
        if self.part is not None and self.type != "string":
            raise ValueError("'part' (first / rest word of a name) only applies to a string")
        if self.value_map is not None:
            if self.options is None:
                raise ValueError("a 'value_map' maps onto a dropdown: give its 'options'")
            wrong = [f"{k!r} -> {v!r}" for k, v in self.value_map.items() if v not in self.options]
            if wrong:
                raise ValueError(f"value_map maps onto values not in options {self.options}: {', '.join(wrong)}")
            if len({k.lower() for k in self.value_map}) != len(self.value_map):
                raise ValueError("'value_map' has the same source value twice")
        return self


class SourceId(_Strict):
    """The column holding the source record's id and the opportunity field that carries it."""

    column: str
    field: SchemaName
    max_length: int = Field(default=50, gt=0)
    duplicate_rule: bool = False
    """True only when the opportunity type has a duplicate detection rule on `field`: creates
    are then safe to repeat (LeadSquared answers the existing opportunity). False: no creates."""


class SearchBy(_Strict):
    """The lead field the opportunity is attached by (`SearchBy`) and its source column."""

    field: Literal["EmailAddress", "Phone", "Mobile"]
    column: str
    type: Literal["email", "phone"] = "email"


class LeadSpec(_Strict):
    search_by: SearchBy
    capture_fields: dict[SchemaName, FieldSpec] = {}


class UserSpec(_Strict):
    """The owner: a column of user emails, sent as the user id in `field`."""

    column: str
    field: SchemaName = "Owner"
    required: bool = False
    users: dict[str, str]

    @model_validator(mode="after")
    def _users_are_ids(self) -> UserSpec:
        for email, user_id in self.users.items():
            if email != email.lower() or "@" not in email:
                raise ValueError(f"users: {email!r} must be a lowercase email address")
            if not GUID.match(user_id):
                raise ValueError(f"users.{email}: {user_id!r} is not a user id (GUID)")
        return self


class StatusComment(_Strict):
    field: SchemaName
    template: str
    max_length: int = Field(default=200, gt=0)


OWNER_FIELD = "Owner"
"""The opportunity's owner in LeadSquared, the field `DoNotChangeOwner` leaves alone."""


@dataclass(frozen=True)
class Adoption:
    """The mapping's `on_existing` and `keep_owner` as a create's duplicate flags, and what
    LeadSquared holds after such a create met an existing opportunity (the Bulk Add and Capture
    pages: OverwriteFields overwrites the fields passed, UpdateEmptyFields fills the empty ones,
    DoNotChangeOwner keeps the owner)."""

    on_existing: OnExisting = "overwrite"
    keep_owner: bool = False

    def flags(self) -> dict[str, bool]:
        """The create's flags, OverwriteFields always given (false: the caller chose; see the client)."""
        flags = {"OverwriteFields": self.on_existing == "overwrite"}
        if self.on_existing == "fill_empty":
            flags["UpdateEmptyFields"] = True
        if self.keep_owner:
            flags["DoNotChangeOwner"] = True
        return flags

    def held_after(self, sent: dict[str, str], held: dict[str, str | None]) -> dict[str, str]:
        """What the opportunity holds in each sent field once a create with these flags met it,
        from what it `held` before (or after: the merge gives the same on either)."""
        merged = {}
        for name, value in sent.items():
            before = held.get(name) or ""
            keeps = (name == OWNER_FIELD and self.keep_owner) or self.on_existing == "keep" or (
                self.on_existing == "fill_empty" and before != "")
            merged[name] = before if keeps else value
        return merged


class OpportunitySpec(_Strict):
    event_code: int = Field(gt=0)
    source_id: SourceId
    updated_at_column: str
    lead: LeadSpec
    fields: dict[SchemaName, FieldSpec]
    owner: UserSpec
    note: FieldSpec | None = None
    status_field: SchemaName = "Status"
    status_comment: StatusComment | None = None
    mode: Literal["upsert", "update_only", "create_only"] = "upsert"
    """`update_only` never creates, `create_only` never updates: what the other would do is `skipped`."""
    on_existing: OnExisting = "overwrite"
    """A create that meets an opportunity this pipeline did not create (one made before it, say):
    `overwrite` its fields with the source's (OverwriteFields), `fill_empty` only its empty fields
    (UpdateEmptyFields), or `keep` it as it is. What LeadSquared then holds is the record's baseline."""
    keep_owner: bool = False
    """Such a create leaves the existing opportunity's owner as it is (DoNotChangeOwner)."""

    def adoption(self) -> Adoption | None:
        """How a create merges into an opportunity this pipeline did not create; None when it simply
        overwrites it (the default: what LeadSquared holds is then what was sent)."""
        if self.on_existing == "overwrite" and not self.keep_owner:
            return None
        return Adoption(self.on_existing, self.keep_owner)

    def crm_owned(self) -> list[str]:
        """Schema names the CRM's users own: sent on create only, never drift."""
        return [name for name, spec in self.fields.items() if spec.owner == "crm"]

    def repaired(self) -> list[str]:
        """Schema names sent again when someone changed them in LeadSquared."""
        return [name for name, spec in self.fields.items() if spec.on_drift == "repair"]


class ActivitySpec(_Strict):
    activity_event: int = Field(gt=0)
    fields: dict[SchemaName, FieldSpec] = {}


class EventsSpec(_Strict):
    id_column: str
    source_id_column: str
    type_column: str
    occurred_at_column: str
    owner_column: str
    note: FieldSpec | None = None
    types: dict[str, ActivitySpec]


class Mapping(_Strict):
    """The whole mapping file."""

    opportunity: OpportunitySpec
    events: EventsSpec

    def application_columns(self) -> list[str]:
        """The applications' source columns the mapping reads, in first use order."""
        opp = self.opportunity
        specs = [*opp.lead.capture_fields.values(), *opp.fields.values(), *([opp.note] if opp.note else [])]
        columns = [opp.source_id.column, opp.updated_at_column, opp.lead.search_by.column, opp.owner.column,
                   *(column for spec in specs for column in _spec_columns(spec)),
                   *(template_columns(opp.status_comment.template) if opp.status_comment else [])]
        return list(dict.fromkeys(columns))

    def event_columns(self) -> list[str]:
        """The events' source columns the mapping reads, in first use order."""
        events = self.events
        specs = [*([events.note] if events.note else []),
                 *(spec for activity in events.types.values() for spec in activity.fields.values())]
        columns = [events.id_column, events.source_id_column, events.type_column, events.occurred_at_column,
                   events.owner_column, *(column for spec in specs for column in _spec_columns(spec))]
        return list(dict.fromkeys(columns))

    def opportunity_field_names(self) -> list[str]:
        """Every schema name the opportunity sends, in the order of `fields` JSON."""
        opp = self.opportunity
        names = [opp.source_id.field, *opp.fields, opp.owner.field]
        if opp.status_comment:
            names.append(opp.status_comment.field)
        return names


def _spec_columns(spec: FieldSpec) -> list[str]:
    """The source columns a value reads: its column, or its template's placeholders."""
    return [spec.column] if spec.column is not None else template_columns(spec.template or "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise MappingError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _check_cross_references(mapping: Mapping) -> list[str]:
    """Checks across sections: schema names are unique, templates and ownership where they apply.
    The columns are the source's: whether they exist is found when the source is read."""
    problems: list[str] = []
    opp = mapping.opportunity

    def spec_ok(path: str, spec: FieldSpec, template_ok: bool = False) -> None:
        if not template_ok and (spec.owner != "source" or spec.on_drift != "report"):
            problems.append(f"{path}: 'owner' and 'on_drift' apply to opportunity.fields only")
        if spec.template is not None and not template_ok:
            problems.append(f"{path}.template: templates are supported in opportunity.fields and "
                            "opportunity.note only; give a column")

    for name, spec in opp.lead.capture_fields.items():
        spec_ok(f"opportunity.lead.capture_fields.{name}", spec)
    if opp.lead.search_by.field in opp.lead.capture_fields:
        problems.append(
            f"opportunity.lead.capture_fields.{opp.lead.search_by.field}: duplicate lead field "
            "(the search_by field is sent already)"
        )
    if opp.note:
        spec_ok("opportunity.note", opp.note, template_ok=True)
        if opp.note.owner != "source" or opp.note.on_drift != "report":
            problems.append("opportunity.note: 'owner' and 'on_drift' apply to opportunity.fields only")
    if opp.status_comment and opp.status_field in opp.crm_owned():
        problems.append(f"opportunity.status_field: {opp.status_field!r} is owned by the CRM; "
                        "its status comment would never follow it (drop one of the two)")
    if opp.status_comment and opp.status_field not in opp.fields:
        problems.append(f"opportunity.status_field: {opp.status_field!r} is not in opportunity.fields")
    declared = [
        ("opportunity.source_id.field", opp.source_id.field),
        ("opportunity.owner.field", opp.owner.field),
    ]
    if opp.status_comment:
        declared.append(("opportunity.status_comment.field", opp.status_comment.field))
    for path, name in declared:
        if name in opp.fields:
            problems.append(f"{path}: duplicate schema name {name!r} (also in opportunity.fields)")
    if len({name for _, name in declared}) != len(declared):
        problems.append(f"opportunity: duplicate schema name among {[name for _, name in declared]}")

    events = mapping.events
    if events.note:
        spec_ok("events.note", events.note)
    for type_name, activity in events.types.items():
        for name, spec in activity.fields.items():
            spec_ok(f"events.types.{type_name}.fields.{name}", spec)
    return problems


def parse_mapping(data: object, name: str = "mapping.yaml") -> Mapping:
    """Validate already-parsed YAML; every problem is reported as `name: dotted.key: message`."""
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"]) or "(top)"
            lines.append(f"{name}: {key}: {problem['msg']}")
        raise MappingError("\n".join(lines)) from None
    problems = _check_cross_references(mapping)
    if problems:
        raise MappingError("\n".join(f"{name}: {problem}" for problem in problems))
    return mapping


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping YAML file; raises `MappingError` naming the file and key.

    The file is read every time; the same text under the same name is parsed once per process
    (~15 ms: YAML and validation; each step of a run loads the mapping, and the demo runs 14)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(f"{path.name}: cannot read: {error}") from None
    return _parsed_mapping(text, path.name)


@functools.lru_cache(maxsize=16)
def _parsed_mapping(text: str, name: str) -> Mapping:
    """The mapping in `text` (its models are frozen, so one object can serve every caller)."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except MappingError as error:
        raise MappingError(f"{name}: {error}") from None
    except yaml.YAMLError as error:
        raise MappingError(f"{name}: cannot read: {error}") from None
    return parse_mapping(data, name)
