"""Normalise and validate raw rows against the mapping, in SQL: accepted records and rejects with reasons.

The SQL is generated from the mapping: for every mapped value one conversion expression (the
value exactly as sent to the API, or NULL when it cannot be converted) and one reason
expression (NULL when the value is fine). A row with problems gives one reject row per bad
source column (the first problem found on that column); a row superseded by a later version
of the same id in the same day is neither accepted nor rejected.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date

import duckdb

from lsq_pipeline.sync.mapping import FieldSpec, Mapping, template_columns
from lsq_pipeline.sync.sql import day_list_sql, identifier, literal

WHITESPACE = " \\t\\r\\n"
EMAIL_RE = r"[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}"
INDIAN_PHONE_RE = r"(?:\+91|0091|91|0)?[1-9][0-9]{9}"
PLAIN_DECIMAL_RE = r"[+-]?[0-9]+(\.[0-9]+)?"
ISO_DATETIME_RE = r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?))?(Z|[+-](?:0\d|1[0-4]):?[0-5]\d)?$"
FORMULA_RE = r"^[=+\-@]"
NUL_SHOWN_AS = "\u2400"


def _t(column: str) -> str:
    """The quoted name of a source column's trimmed text."""
    return identifier(f"t_{column}")


def _x(column: str) -> str:
    """The quoted name of a source column's date, time and offset parts."""
    return identifier(f"x_{column}")


def _trimmed(column: str) -> str:
    return f"NULLIF(trim({identifier(column)}, e'{WHITESPACE}'), '')"


def _datetime_parts(t: str) -> str:
    """The date, time and offset of ISO 8601 text as a struct (empty strings when it does not match)."""
    return f"regexp_extract({t}, {literal(ISO_DATETIME_RE)}, ['d', 't', 'z'])"


def _utc_timestamp(x: str) -> str:
    """A UTC TIMESTAMP from the parts struct `x` (Z, an offset, or naive = UTC), NULL if invalid."""
    offset = (
        f"CASE WHEN {x}.z IN ('', 'Z') THEN 0 ELSE (CASE WHEN {x}.z[1] = '-' THEN -1 ELSE 1 END) * "
        f"(CAST({x}.z[2:3] AS INTEGER) * 60 + CAST(right({x}.z, 2) AS INTEGER)) END"
    )
    return (
        f"try_cast({x}.d || ' ' || coalesce(NULLIF({x}.t, ''), '00:00:00') AS TIMESTAMP) - to_minutes({offset})"
    )


@dataclass
class Rule:
    """One mapped value: how to convert the trimmed text `t`, and the checks on the result."""

    target: str  # the schema name / attribute / role it feeds
    column: str | None  # the source column it reads (None for templates)
    value: str  # SQL: the converted value (NULL if it cannot be converted)
    checks: list[tuple[str, str]] = field(default_factory=list)  # (SQL condition, SQL reason)
    required: bool = False
    as_text: str = "{p}"  # SQL turning the converted value {p} into the text sent
    only_when: str | None = None  # SQL condition under which the rule applies (event types)
    plain: bool = True  # the value is the column's own normalised text (templates may use it)


def _field_rule(target: str, spec: FieldSpec, t: str) -> Rule:
    """The conversion and checks of one FieldSpec over the trimmed text expression `t`."""
    checks: list[tuple[str, str]] = []
    as_text = "{p}"
    if spec.type == "string":
        value = t
        if spec.part == "first":
            value = f"NULLIF(regexp_extract({t}, '^(\\S+)', 1), '')"
        elif spec.part == "rest":
            value = f"NULLIF(regexp_extract({t}, '^\\S+\\s+(.*)$', 1), '')"
        checks.append((f"regexp_matches({value}, {literal(FORMULA_RE)})",  # a name part too
                       "'starts with = + - or @: looks like a spreadsheet formula'"))
        if spec.max_length:
            checks.append((f"length({t}) > {spec.max_length}",
                           f"'longer than {spec.max_length} characters (' || length({t}) || ')'"))
    elif spec.type == "email":
        value = f"lower({t})"
        checks.append((f"NOT regexp_full_match(lower({t}), {literal(EMAIL_RE)})", "'not a valid email address'"))
    elif spec.type == "phone":
        digits = f"regexp_replace({t}, '[\\s().-]', '', 'g')"
        value = f"CASE WHEN regexp_full_match({digits}, {literal(INDIAN_PHONE_RE)}) THEN '+91-' || right({digits}, 10) END"
        checks.append(("{p} IS NULL", "'not an Indian 10-digit phone number (+91, 0 prefixes allowed)'"))
    elif spec.type == "number":
        value = (
            f"CASE WHEN regexp_full_match({t}, {literal(PLAIN_DECIMAL_RE)}) THEN regexp_replace("
            f"CAST(try_cast({t} AS DECIMAL(38, 10)) AS VARCHAR), '\\.?0+$', '') END"
        )
        checks.append((f"{{p}} IS NULL AND {t} LIKE '%,%'", "'thousands separators are not allowed: plain decimal expected'"))
        checks.append(("{p} IS NULL", "'not a plain decimal number'"))
        if spec.greater_than is not None:
            checks.append((f"CAST({t} AS DECIMAL(38, 10)) <= {spec.greater_than}",
                           f"'must be greater than {spec.greater_than:g}'"))
    elif spec.type in ("date", "datetime"):
        value = _utc_timestamp(_x(spec.column))
        checks.append(("{p} IS NULL", "'not an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS with Z or an offset)'"))
        checks.append(("{p} >= CAST(day AS TIMESTAMP) + INTERVAL 2 DAY",
                       "'in the future: after the end of the day following the file''s day'"))
        as_text = "strftime({p}, '%Y-%m-%d')" if spec.type == "date" else "strftime({p}, '%Y-%m-%d %H:%M:%S')"
    else:  # dropdown, possibly through a value map
        if spec.value_map is not None:
            pairs = spec.value_map.items()
            reason = f"no {target} value mapped for it (mapped: {', '.join(spec.value_map)})"
        else:
            pairs = ((option, option) for option in spec.options or [])
            reason = f"not one of the options: {', '.join(spec.options or [])}"
        whens = " ".join(f"WHEN {literal(key.lower())} THEN {literal(val)}" for key, val in pairs)
        value = f"CASE lower({t}) {whens} END"
        checks.append(("{p} IS NULL", literal(reason)))
    if spec.part is not None:
        checks = [check for check in checks if check[0] != "{p} IS NULL"]
    plain = spec.value_map is None and spec.part is None
    return Rule(target, spec.column, value, checks, spec.required, as_text, plain=plain)


def _owner_rule(target: str, column: str, users: dict[str, str], required: bool, t: str) -> Rule:
    whens = " ".join(f"WHEN {literal(email)} THEN {literal(user_id)}" for email, user_id in users.items())
    return Rule(
        target, column, f"CASE lower({t}) {whens} END",
        [(f"NOT regexp_full_match(lower({t}), {literal(EMAIL_RE)})", "'not a valid email address'"),
         ("{p} IS NULL", "'unknown owner: not one of the LeadSquared users in the mapping'")],
        required,
        plain=False,
    )


def _template_sql(template: str, text_of_column: dict[str, str]) -> str:
    pieces = []
    for text, name, _, _ in string.Formatter().parse(template):
        if text:
            pieces.append(literal(text))
        if name:
            pieces.append(f"coalesce({text_of_column[name]}, '')")
    return "concat(" + ", ".join(pieces or ["''"]) + ")"


class _Query:
    """Builds the checked-rows query of one raw table from its rules."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def add(self, rule: Rule) -> str:
        self.rules.append(rule)
        return f"p{len(self.rules) - 1}"

    def text(self, name: str) -> str:
        """SQL of the text sent for the rule whose value column is `name`."""
        rule = self.rules[int(name[1:])]
        return "(" + rule.as_text.replace('{p}', name) + ")"

    def reason_sql(self, index: int) -> str:
        rule = self.rules[index]
        p = f"p{index}"
        t = _t(rule.column)
        whens = [f"WHEN {t} IS NULL THEN {literal('required value missing') if rule.required else 'NULL'}"]
        whens += [f"WHEN {condition.replace('{p}', p)} THEN {reason}" for condition, reason in rule.checks]
        case = f"CASE WHEN contains({identifier(rule.column)}, chr(0)) THEN 'contains a NUL byte' {' '.join(whens)} END"
        return f"CASE WHEN {rule.only_when} THEN {case} END" if rule.only_when else case

    def errors_sql(self, extra: dict[str, list[str]] | None = None) -> str:
        """A list of (field, reason, value) structs: the first problem of each bad column."""
        by_column: dict[str, list[str]] = {}
        for index, rule in enumerate(self.rules):
            if rule.column is not None:
                by_column.setdefault(rule.column, []).append(self.reason_sql(index))
        for column, reasons in (extra or {}).items():
            by_column.setdefault(column, []).extend(reasons)
        items = [
            f"struct_pack(field := {literal(column)}, reason := coalesce({', '.join(reasons)}), "
            f"value := replace({identifier(column)}, chr(0), '{NUL_SHOWN_AS}'))"
            for column, reasons in by_column.items()
        ]
        return f"list_filter([{', '.join(items)}], lambda e: e.reason IS NOT NULL)"

    def columns(self) -> list[str]:
        return list(dict.fromkeys(rule.column for rule in self.rules if rule.column))

    def converted_sql(self, table: str, days: str) -> str:
        """Raw rows of the days, with `t_<column>` trimmed texts, `x_<column>` date-time parts and
        `p<i>` converted values."""
        trimmed = ", ".join(f"{_trimmed(column)} AS {_t(column)}" for column in self.columns())
        dated = list(dict.fromkeys(rule.column for rule in self.rules if f"{_x(rule.column)}." in rule.value))
        parts = "".join(f", {_datetime_parts(_t(column))} AS {_x(column)}" for column in dated)
        values = ", ".join(
            f"{rule.value} AS p{index}" for index, rule in enumerate(self.rules)
        )
        return f"""
            SELECT *, {values} FROM (
                SELECT *{parts} FROM (SELECT *, {trimmed} FROM {table} WHERE day IN {days})
            )"""


def _json_object(pairs: list[tuple[str, str]]) -> str:
    """A JSON object of the non-NULL values, keys in the given order."""
    entries = ", ".join(f"struct_pack(k := {literal(key)}, v := {value})" for key, value in pairs)
    return f"to_json(map_from_entries(list_filter([{entries}], lambda e: e.v IS NOT NULL)))"


def _opportunity_sql(mapping: Mapping, days: str) -> str:
    opp = mapping.opportunity
    query = _Query()

    def t(column: str) -> str:
        return _t(column)

    def add_field(target: str, spec: FieldSpec) -> str:
        return query.add(_field_rule(target, spec, t(spec.column)))

    source_id = add_field(opp.source_id.field, FieldSpec(
        column=opp.source_id.column, required=True, max_length=opp.source_id.max_length))
    updated_at = add_field("source_updated_at", FieldSpec(
        column=opp.updated_at_column, type="datetime", required=True))
    search_by = add_field(opp.lead.search_by.field, FieldSpec(
        column=opp.lead.search_by.column, type=opp.lead.search_by.type, required=True))
    lead = [(opp.lead.search_by.field, query.text(search_by))]
    lead += [(name, query.text(add_field(name, spec))) for name, spec in opp.lead.capture_fields.items()]
    column_fields = {name: add_field(name, spec) for name, spec in opp.fields.items() if spec.column is not None}
    owner = query.add(_owner_rule(opp.owner.field, opp.owner.column, opp.owner.users, opp.owner.required,
                                  t(opp.owner.column)))

    # A template's {column} is the column's normalised text (that of its first plain rule).
    text_of_column: dict[str, str] = {}
    for index, rule in enumerate(query.rules):
        if rule.column and rule.plain:
            text_of_column.setdefault(rule.column, query.text(f"p{index}"))
    template_checks: dict[str, list[str]] = {}

    def template_value(target: str, template: str, max_length: int | None) -> str:
        for column in template_columns(template):
            text_of_column.setdefault(column, _trimmed(column))
        sql = _template_sql(template, text_of_column)
        if max_length:
            template_checks.setdefault(target, []).append(
                f"CASE WHEN length({sql}) > {max_length} THEN 'longer than {max_length} characters' END")
        return sql

    fields = [(opp.source_id.field, query.text(source_id))]
    for name, spec in opp.fields.items():
        if name in column_fields:
            fields.append((name, query.text(column_fields[name])))
        else:
            fields.append((name, template_value(name, spec.template, spec.max_length)))
    fields.append((opp.owner.field, query.text(owner)))
    status = dict(fields).get(opp.status_field)
    if opp.status_comment:
        comment = template_value(opp.status_comment.field, opp.status_comment.template,
                                 opp.status_comment.max_length)
        fields.append((opp.status_comment.field, f"CASE WHEN {status} IS NOT NULL THEN {comment} END"))
    if opp.note is None:
        note = "NULL"
    elif opp.note.column is not None:
        note = query.text(add_field("note", opp.note))
    else:
        note = template_value("note", opp.note.template, opp.note.max_length)

    errors = query.errors_sql()
    if template_checks:
        extra = ", ".join(
            f"struct_pack(field := {literal(target)}, reason := coalesce({', '.join(reasons)}), value := NULL)"
            for target, reasons in template_checks.items())
        errors = f"list_concat({errors}, list_filter([{extra}], lambda e: e.reason IS NOT NULL))"
    return f"""
        SELECT day, source_file, row_number, {t(opp.source_id.column)} AS source_id,
               {updated_at} AS source_updated_at, {query.text(search_by)} AS search_by_value,
               {_json_object(lead)} AS lead_fields, {_json_object(fields)} AS fields,
               lower({t(opp.owner.column)}) AS owner_email, {note} AS note, {errors} AS errors
        FROM ({query.converted_sql('raw_applications', days)})
        QUALIFY row_number() OVER (
            PARTITION BY day, {t(opp.source_id.column)},
                         CASE WHEN {t(opp.source_id.column)} IS NULL THEN row_number END
            ORDER BY {updated_at} DESC NULLS FIRST, row_number DESC) = 1
    """


def _activity_sql(mapping: Mapping, days: str) -> str:
    events = mapping.events
    opp = mapping.opportunity
    query = _Query()
    t_type = _t(events.type_column)
    event_id = query.add(_field_rule("event_id", FieldSpec(column=events.id_column, required=True, max_length=50),
                                     _t(events.id_column)))
    source_id = query.add(_field_rule("source_id", FieldSpec(
        column=events.source_id_column, required=True, max_length=opp.source_id.max_length),
        _t(events.source_id_column)))
    codes = " ".join(f"WHEN {literal(name)} THEN {spec.activity_event}" for name, spec in events.types.items())
    activity_event = query.add(Rule(
        "activity_event", events.type_column, f"CASE lower({t_type}) {codes} END",
        [("{p} IS NULL", literal(f"unknown event type (known: {', '.join(events.types)})"))], True))
    occurred_at = query.add(_field_rule("occurred_at", FieldSpec(
        column=events.occurred_at_column, type="datetime", required=True), _t(events.occurred_at_column)))
    query.add(_owner_rule("owner_email", events.owner_column, opp.owner.users, True, _t(events.owner_column)))
    note = "NULL"
    if events.note is not None:
        note = query.text(query.add(_field_rule("note", events.note, _t(events.note.column))))
    per_type: list[str] = []
    for type_name, activity in events.types.items():
        pairs = []
        for name, spec in activity.fields.items():
            index = query.add(_field_rule(name, spec, _t(spec.column)))
            query.rules[-1].only_when = f"lower({t_type}) = {literal(type_name)}"
            pairs.append((name, query.text(index)))
        type_fields = _json_object(pairs) if pairs else "'{}'::JSON"
        per_type.append(f"WHEN {literal(type_name)} THEN {type_fields}")
    fields = f"CASE lower({t_type}) {' '.join(per_type)} END"
    known = f"""CASE WHEN {source_id} IS NOT NULL AND {source_id} NOT IN (SELECT source_id FROM opportunity_records)
                THEN 'no accepted application with this id (on any day)' END"""
    errors = query.errors_sql({events.source_id_column: [known]})
    return f"""
        SELECT day, source_file, row_number, {query.text(event_id)} AS event_id,
               {query.text(source_id)} AS source_id, {activity_event} AS activity_event,
               lower({_t(events.owner_column)}) AS owner_email,
               {note} AS note, {fields} AS fields, {occurred_at} AS occurred_at, {errors} AS errors
        FROM ({query.converted_sql('raw_events', days)})
        QUALIFY row_number() OVER (
            PARTITION BY day, {event_id}, CASE WHEN {event_id} IS NULL THEN row_number END
            ORDER BY row_number DESC) = 1
    """


def transform_days(conn: duckdb.DuckDBPyConnection, days: list[date], mapping: Mapping) -> dict[str, int]:
    """Replace the days' rows in opportunity_records, activity_records and rejects, in one transaction.

    Returns counts: accepted / rejected application rows, superseded duplicates, accepted /
    rejected events, and reject rows (one per bad column).
    """
    days = sorted(set(days))
    if not days:
        return {}
    in_days = day_list_sql(days)
    conn.execute("BEGIN TRANSACTION")
    try:
        for table in ("opportunity_records", "activity_records", "rejects"):
            conn.execute(f"DELETE FROM {table} WHERE day IN {in_days}")
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _checked_applications AS {_opportunity_sql(mapping, in_days)}")
        conn.execute("""
            INSERT INTO opportunity_records
            SELECT day, source_id, source_updated_at, search_by_value, lead_fields, fields,
                   owner_email, note, md5(CAST(fields AS VARCHAR))
            FROM _checked_applications WHERE len(errors) = 0""")
        conn.execute("""
            INSERT INTO rejects
            SELECT day, source_file, row_number, source_id, e.field, e.reason, e.value
            FROM (SELECT *, unnest(errors) AS e FROM _checked_applications WHERE len(errors) > 0)""")
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _checked_events AS {_activity_sql(mapping, in_days)}")
        conn.execute("""
            INSERT INTO activity_records
            SELECT day, event_id, source_id, activity_event, owner_email, note, fields, occurred_at
            FROM _checked_events WHERE len(errors) = 0""")
        conn.execute("""
            INSERT INTO rejects
            SELECT day, source_file, row_number, source_id, e.field, e.reason, e.value
            FROM (SELECT *, unnest(errors) AS e FROM _checked_events WHERE len(errors) > 0)""")
        counts = _counts(conn, in_days)
        conn.execute("DROP TABLE _checked_applications")
        conn.execute("DROP TABLE _checked_events")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts


def _counts(conn: duckdb.DuckDBPyConnection, in_days: str) -> dict[str, int]:
    row = conn.execute(f"""
        SELECT
          (SELECT count(*) FILTER (WHERE len(errors) = 0) FROM _checked_applications),
          (SELECT count(*) FILTER (WHERE len(errors) > 0) FROM _checked_applications),
          (SELECT count(*) FROM raw_applications WHERE day IN {in_days})
            - (SELECT count(*) FROM _checked_applications),
          (SELECT count(*) FILTER (WHERE len(errors) = 0) FROM _checked_events),
          (SELECT count(*) FILTER (WHERE len(errors) > 0) FROM _checked_events),
          (SELECT count(*) FROM raw_events WHERE day IN {in_days}) - (SELECT count(*) FROM _checked_events),
          (SELECT count(*) FROM rejects WHERE day IN {in_days})
    """).fetchone()
    names = ("accepted", "rejected", "superseded", "events_accepted", "events_rejected",
             "events_superseded", "reject_rows")
    return dict(zip(names, row))
