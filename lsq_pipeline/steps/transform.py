"""Normalise and validate raw rows against the mapping, in SQL: accepted records and rejects with reasons.

The SQL is generated from the mapping: for every mapped value one conversion expression (the
value exactly as sent to the API, or NULL when it cannot be converted) and one reason
expression (NULL when the value is fine). A row with problems gives one reject row per bad
source column (the first problem found on that column); a row superseded by a later version
of the same id in the same day is neither accepted nor rejected.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb

from lsq_pipeline.warehouse.connection import NUL_STORED_AS
from lsq_pipeline.mapping import FieldSpec, Mapping, template_columns
from lsq_pipeline.warehouse.sql import day_list_sql, identifier, literal, transaction

WHITESPACE = " \\t\\r\\n"
# Full-match patterns without capture groups, so RE2 runs them as a DFA.
EMAIL_RE = r"[a-z0-9._%+'-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}"
INDIAN_PHONE_RE = r"(?:\+91|0091|91|0)?[1-9][0-9]{9}"
INDIAN_PHONE_PLAIN_RE = r"(?:\+91-?|0091|91|0)?[1-9][0-9]{9}"  # matches INDIAN_PHONE_RE once separators go
PLAIN_DECIMAL_RE = r"[+-]?[0-9]+(?:\.[0-9]+)?"
WHOLE_NUMBER_RE = r"[1-9][0-9]{0,27}"  # fits DECIMAL(38, 10) unchanged
ISO_DATETIME_RE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-](?:0\d|1[0-4]):?[0-5]\d)?"
FORMULA_STARTS = ("=", "@")
"""A text starting with one of these is a spreadsheet formula (OWASP's CSV injection)."""
SIGNS = ("+", "-")
"""A text starting with one of these is a formula unless it is data by its shape (`SIGNED_DATA_RE`)."""
QUOTE = "'"
"""`formula_guard: quote` puts it before a formula-like text, as OWASP advises for spreadsheets."""
SIGNED_DATA_RE = r"[+-][0-9 .()-]*[0-9][0-9 .()-]*"
"""A text starting with `+` or `-` that is data, not a formula: a number or phone number (digits,
spaces, dots, dashes, parentheses after one leading sign: `+91-98765 43210`, `-12.5`)."""


def _t(column: str) -> str:
    """The quoted name of a source column's trimmed text."""
    return identifier(f"t_{column}")


def _trimmed(column: str) -> str:
    """The column's text without surrounding whitespace, NULL when empty. trim() with a character
    set is slow, so it runs only on the few values that start or end with a control or space
    (`< '!'`: a byte comparison, cheaper than taking the first character)."""
    c = identifier(column)
    return f"NULLIF(CASE WHEN {c} < '!' OR {c}[-1] <= ' ' THEN trim({c}, e'{WHITESPACE}') ELSE {c} END, '')"


def _utc_timestamp(t: str) -> str:
    """A UTC TIMESTAMP from ISO 8601 text `t` (Z, an offset, or naive = UTC), NULL if it is not
    ISO 8601 or not a real instant: one DFA match, then DuckDB's own parser. The usual shapes,
    `YYYY-MM-DDTHH:MM:SSZ` and `…+HH:MM`, are cast as they are; any other is given an explicit `Z`
    when it has no offset (never the session's time zone), seconds when it has none (DuckDB 1.5
    refuses `HH:MMZ`) and a midnight when it is a date alone.
    The instant is read through its epoch, which needs no time zone."""
    has_time = f"{t}[11] IN ('T', ' ')"
    with_seconds = f"CASE WHEN {t}[17] = ':' THEN {t} ELSE {t}[1:16] || ':00' || {t}[17:] END"
    with_time = f"CASE WHEN {has_time} THEN {with_seconds} ELSE {t}[1:10] || 'T00:00:00' || {t}[11:] END"
    has_offset = f"(ends_with({t}, 'Z') OR contains({t}[11:], '+') OR contains({t}[11:], '-'))"
    completed = f"{with_time} || CASE WHEN {has_offset} THEN '' ELSE 'Z' END"

    def utc(text: str) -> str:
        return f"make_timestamp(epoch_us(try_cast({text} AS TIMESTAMPTZ)))"

    return (f"CASE WHEN regexp_full_match({t}, {literal(ISO_DATETIME_RE)}) THEN CASE "
            f"WHEN length({t}) = 20 AND {t}[20] = 'Z' THEN try_cast({t} AS TIMESTAMP) "
            f"WHEN length({t}) = 25 AND {t}[20] IN ('+', '-') THEN {utc(t)} "
            f"ELSE {utc(completed)} END END")


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


def _looks_like_formula(text: str) -> str:
    """SQL: `text` starts with `=` or `@`, or with `+` or `-` and is not a number or phone number
    (`SIGNED_DATA_RE`). Decided by the value's shape, whatever the field's type; the regular
    expression runs only on the few values that start with a sign."""
    return (f"CASE WHEN {text}[1] IN ({', '.join(map(literal, SIGNS))}) "
            f"THEN NOT regexp_full_match({text}, {literal(SIGNED_DATA_RE)}) "
            f"ELSE {text}[1] IN ({', '.join(map(literal, FORMULA_STARTS))}) END")


def _name_part(t: str, first: bool) -> str:
    """The first word of `t` (`^(\\S+)`) or the rest after it and its spaces (`^\\S+\\s+(.*)$`),
    NULL when empty. A name whose only whitespace is spaces (nearly all) is cut with string
    functions; the regular expression with a capture group, several times slower, runs on the others."""
    pattern = r"^(\S+)" if first else r"^\S+\s+(.*)$"
    space = f"strpos({t}, ' ')"
    cut = (f"CASE WHEN {space} = 0 THEN {t} ELSE {t}[:{space} - 1] END" if first
           else f"CASE WHEN {space} > 0 THEN ltrim({t}[{space} + 1:], ' ') END")
    return (f"NULLIF(CASE WHEN regexp_matches({t}, '[\\t\\n\\f\\r]') THEN regexp_extract({t}, {literal(pattern)}, 1) "
            f"ELSE {cut} END, '')")


def _field_rule(target: str, spec: FieldSpec, t: str) -> Rule:
    """The conversion and checks of one FieldSpec over the trimmed text expression `t`."""
    checks: list[tuple[str, str]] = []
    as_text = "{p}"
    if spec.type == "string":
        value = t
        if spec.part == "first":
            value = _name_part(t, first=True)
        elif spec.part == "rest":
            value = _name_part(t, first=False)
        guard = spec.guard
        if guard != "off":  # a name part too
            if guard == "quote":
                value = f"CASE WHEN {_looks_like_formula(value)} THEN {literal(QUOTE)} || {value} ELSE {value} END"
            else:
                checks.append((_looks_like_formula("{p}"), literal(
                    f"{target}: looks like a spreadsheet formula (starts with = or @, or with + or - and is not "
                    f"a number); refused by formula_guard: reject")))
        if spec.max_length:
            length = "length({p})" if guard == "quote" else f"length({t})"  # the quote counts
            checks.append((f"{length} > {spec.max_length}",
                           f"'longer than {spec.max_length} characters (' || {length} || ')'"))
    elif spec.type == "email":
        value = f"lower({t})"
        checks.append((f"NOT regexp_full_match({{p}}, {literal(EMAIL_RE)})", "'not a valid email address'"))
    elif spec.type == "phone":
        # A number written without separators (or as +91-…, the normal form) is cut as it is;
        # the separators are removed, with a slower regular expression, from the others.
        digits = f"regexp_replace({t}, '[\\s().-]', '', 'g')"
        value = (f"CASE WHEN regexp_full_match({t}, {literal(INDIAN_PHONE_PLAIN_RE)}) THEN '+91-' || right({t}, 10) "
                 f"WHEN regexp_full_match({digits}, {literal(INDIAN_PHONE_RE)}) THEN '+91-' || right({digits}, 10) END")
        checks.append(("{p} IS NULL", "'not an Indian 10-digit phone number (+91, 0 prefixes allowed)'"))
    elif spec.type == "number":
        # A whole number without leading zeros (most amounts) is its own normal form; any other
        # plain decimal goes through DECIMAL(38, 10) and loses its trailing zeros.
        value = (
            f"CASE WHEN regexp_full_match({t}, {literal(WHOLE_NUMBER_RE)}) THEN {t} "
            f"WHEN regexp_full_match({t}, {literal(PLAIN_DECIMAL_RE)}) THEN rtrim(rtrim("
            f"CAST(try_cast({t} AS DECIMAL(38, 10)) AS VARCHAR), '0'), '.') END"
        )
        checks.append((f"{{p}} IS NULL AND {t} LIKE '%,%'", "'thousands separators are not allowed: plain decimal expected'"))
        checks.append(("{p} IS NULL", "'not a plain decimal number'"))
        if spec.greater_than is not None:
            # DuckDB 1.5 parses text into a DECIMAL wider than 18 digits some 200 times slower than
            # into HUGEINT, so the converted value, when whole (no point), goes through HUGEINT.
            amount = "CASE WHEN contains({p}, '.') THEN CAST({p} AS DECIMAL(38, 10)) ELSE CAST({p} AS HUGEINT) END"
            checks.append((f"{amount} <= {spec.greater_than}",
                           f"'must be greater than {spec.greater_than:g}'"))
    elif spec.type in ("date", "datetime"):
        value = _utc_timestamp(t)
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
        [(f"{{p}} IS NULL AND NOT regexp_full_match(lower({t}), {literal(EMAIL_RE)})", "'not a valid email address'"),
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
    """Builds the checked-rows query of one raw table from its rules: one scan of the table, the
    rows superseded within their day left out first (from a narrow scan of the key and version)."""

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
        whens += [f"WHEN {condition.replace('{p}', p)} THEN {reason.replace('{p}', p)}"
                  for condition, reason in rule.checks]
        column = identifier(rule.column)
        nul = f"contains({column}, chr(0)) OR contains({column}, {literal(NUL_STORED_AS)})"
        case = f"CASE WHEN {nul} THEN 'contains a NUL byte' {' '.join(whens)} END"
        return f"CASE WHEN {rule.only_when} THEN {case} END" if rule.only_when else case

    def reasons(self, extra: dict[str, list[str]] | None = None) -> list[tuple[str, bool, str]]:
        """(field, is a source column, SQL of its first problem or NULL) for every checked field."""
        by_field: dict[str, list[str]] = {}
        for index, rule in enumerate(self.rules):
            if rule.column is not None:
                by_field.setdefault(rule.column, []).append(self.reason_sql(index))
        columns = set(by_field)
        for name, reasons in (extra or {}).items():
            by_field.setdefault(name, []).extend(reasons)
        return [(name, name in columns, f"coalesce({', '.join(sqls)})") for name, sqls in by_field.items()]

    def _converted_sql(self, table: str, days: str, indices: list[int], where: str = "TRUE") -> str:
        """The days' raw rows (those matching `where`, which may use the trimmed texts) with
        `t_<column>` trimmed texts and `p<i>` converted values of the rules `indices`."""
        rules = [self.rules[i] for i in indices]
        columns = list(dict.fromkeys(rule.column for rule in rules if rule.column))
        trimmed = ", ".join(f"{_trimmed(column)} AS {_t(column)}" for column in columns)
        values = ", ".join(f"{self.rules[i].value} AS p{i}" for i in indices)
        return f"""
            SELECT *, {values} FROM (
                SELECT *, {trimmed} FROM {table} WHERE day IN {days}) WHERE {where}"""

    def check(self, table: str, days: str, key: str, version: str | None,
              outputs: list[tuple[str, str]], extra: dict[str, list[str]] | None = None) -> Check:
        """The check of `table`'s rows: the latest version of a key in a day wins (a NULL key
        never supersedes), ordered by `version` then by row."""
        narrow = [int(key[1:])] + ([int(version[1:])] if version else [])
        # A hash aggregate, not a window: the winner of each (day, key) is the row with a NULL
        # version if any (it is rejected), else the highest version, then the last row.
        winner = (f"arg_max(row_number, ({version} IS NULL, coalesce({version}, TIMESTAMP '-infinity'), row_number))"
                  if version else "max(row_number)")
        latest = f"""
            SELECT day, {winner} AS row_number, {key} AS key FROM ({self._converted_sql(table, days, narrow)})
            GROUP BY day, {key}, CASE WHEN {key} IS NULL THEN row_number END"""
        reasons = self.reasons(extra)
        problems = ", ".join(f"{sql} AS r{i}" for i, (_, _, sql) in enumerate(reasons))
        shown = f"chr(0), {literal(NUL_STORED_AS)}"
        entries = ", ".join(
            f"struct_pack(field := {literal(name)}, reason := r{i}, "
            f"value := {f'replace({identifier(name)}, {shown})' if is_column else 'NULL'})"
            for i, (name, is_column, _) in enumerate(reasons))
        bad = " OR ".join(f"r{i} IS NOT NULL" for i in range(len(reasons)))
        selected = ", ".join(f"{sql} AS {name}" for name, sql in outputs)

        def rows(where: str) -> str:
            converted = self._converted_sql(table, days, list(range(len(self.rules))), where)
            return f"""
                SELECT day, source_file, row_number, {selected}, errors FROM (
                    SELECT *, CASE WHEN {bad} THEN list_filter([{entries}], lambda e: e.reason IS NOT NULL) END AS errors
                    FROM (SELECT *, {problems} FROM ({converted})))"""

        return Check(table, latest, rows)


@dataclass(frozen=True)
class Check:
    """The SQL that checks one raw table: `latest` selects the (day, row_number, key) of the rows
    not superseded; `rows(where)` gives the checked rows, with `errors` NULL when a row is fine."""

    table: str
    latest: str
    rows: Callable[[str], str]


def _json_object(pairs: list[tuple[str, str]], first_present: bool = False) -> str:
    """The text of a JSON object of the non-NULL values, keys in the given order (the same text
    DuckDB's to_json gives a MAP, built by concatenation: no per-row list or map). Valid JSON by
    construction, so it is stored as VARCHAR: a JSON column would parse every row again.

    When the first value is never NULL (`first_present`: a required value of an accepted row),
    one concat() takes every key and value as arguments of their own, a key given only when its
    value is there (concat skips NULLs): no string is built per member, a quarter less work."""
    if not first_present:
        members = ", ".join(f"{literal(json.dumps(key) + ':')} || to_json({value})" for key, value in pairs)
        return f"'{{' || concat_ws(',', {members}) || '}}'"
    (first_key, first_value), rest = pairs[0], pairs[1:]
    arguments = [literal("{" + json.dumps(first_key) + ":"), f"to_json({first_value})"]
    for key, value in rest:
        arguments += [f"CASE WHEN {value} IS NOT NULL THEN {literal(',' + json.dumps(key) + ':')} END",
                      f"to_json({value})"]
    return f"concat({', '.join(arguments)}, '}}')"


def _opportunity_check(mapping: Mapping, days: str) -> Check:
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
    crm_owned = opp.crm_owned()  # left out of record_hash: a change to them in the source is never sent
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

    # Both objects start with a required value (the search-by value, the source id): never NULL when accepted.
    return query.check("raw_applications", days, key=source_id, version=updated_at, extra=template_checks, outputs=[
        ("source_id", t(opp.source_id.column)), ("source_updated_at", updated_at),
        ("search_by_value", query.text(search_by)), ("lead_fields", _json_object(lead, first_present=True)),
        ("fields", _json_object(fields, first_present=True)), ("owner_email", f"lower({t(opp.owner.column)})"),
        ("note", note),
        ("source_owned_fields", _json_object([(name, sql) for name, sql in fields if name not in crm_owned])
                                if crm_owned else "NULL")])


def _activity_check(mapping: Mapping, days: str) -> Check:
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
        type_fields = _json_object(pairs) if pairs else "'{}'"
        per_type.append(f"WHEN {literal(type_name)} THEN {type_fields}")
    fields = f"CASE lower({t_type}) {' '.join(per_type)} END"
    known = f"""CASE WHEN {source_id} IS NOT NULL AND {source_id} NOT IN (SELECT source_id FROM opportunity_records)
                THEN 'no accepted application with this id (on any day)' END"""
    return query.check("raw_events", days, key=event_id, version=None,
                             extra={events.source_id_column: [known]}, outputs=[
        ("event_id", query.text(event_id)), ("source_id", query.text(source_id)),
        ("activity_event", activity_event), ("owner_email", f"lower({_t(events.owner_column)})"),
        ("note", note), ("fields", fields), ("occurred_at", occurred_at)])


def transform_days(conn: duckdb.DuckDBPyConnection, days: list[date], mapping: Mapping) -> dict[str, int]:
    """Replace the days' rows in opportunity_records, activity_records and rejects, in one transaction.

    Per raw table: the latest versions are found from a narrow scan (key and version), the
    accepted rows are converted and inserted in one scan, and only the latest rows that were not
    accepted are checked again for their reasons. Returns counts: accepted / rejected
    application rows, superseded duplicates, accepted / rejected events, and reject rows (one
    per bad column).
    """
    days = sorted(set(days))
    if not days:
        return {}
    in_days = day_list_sql(days)
    counts: dict[str, int] = {"reject_rows": 0}
    with transaction(conn):
        for table in ("opportunity_records", "activity_records", "rejects"):
            conn.execute(f"DELETE FROM {table} WHERE day IN {in_days}")
        # Applications first: an event is accepted only if its application is in opportunity_records.
        for prefix, check, records, key, insert in (
            ("", _opportunity_check(mapping, in_days), "opportunity_records", "source_id", """
                INSERT INTO opportunity_records
                SELECT day, source_id, source_updated_at, search_by_value, lead_fields, fields,
                       owner_email, note, md5(CAST(coalesce(source_owned_fields, fields) AS VARCHAR))"""),
            ("events_", _activity_check(mapping, in_days), "activity_records", "event_id", """
                INSERT INTO activity_records
                SELECT day, event_id, source_id, activity_event, owner_email, note, fields, occurred_at"""),
        ):
            conn.execute(f"CREATE OR REPLACE TEMP TABLE _latest AS {check.latest}")
            is_latest = "(day, row_number) IN (SELECT (day, row_number) FROM _latest)"
            accepted = conn.execute(f"{insert} FROM ({check.rows(is_latest)}) WHERE errors IS NULL").fetchone()[0]
            not_accepted = f"""(day, row_number) IN (
                SELECT (day, row_number) FROM _latest WHERE key IS NULL OR (day, key) NOT IN (
                    SELECT (day, {key}) FROM {records} WHERE day IN {in_days}))"""
            counts["reject_rows"] += conn.execute(f"""
                INSERT INTO rejects
                SELECT day, source_file, row_number, source_id, e.field, e.reason, e.value
                FROM (SELECT *, unnest(errors) AS e FROM ({check.rows(not_accepted)}))""").fetchone()[0]
            rejected = conn.execute(f"""
                SELECT count(DISTINCT (day, source_file, row_number)) FROM rejects
                WHERE day IN {in_days} AND source_file IN (SELECT DISTINCT source_file FROM {check.table}
                                                           WHERE day IN {in_days})""").fetchone()[0]
            rows = conn.execute(f"SELECT count(*) FROM {check.table} WHERE day IN {in_days}").fetchone()[0]
            counts |= {f"{prefix}accepted": accepted, f"{prefix}rejected": rejected,
                       f"{prefix}superseded": rows - accepted - rejected}
        conn.execute("DROP TABLE _latest")
    return counts


def rejects_by_field(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> list[tuple[str, int]]:
    """(field, reject rows) of the days, most first: what a person fixes first."""
    return conn.execute(
        "SELECT field, count(*) AS rows FROM rejects WHERE day IN (SELECT unnest($1::DATE[])) "
        "GROUP BY field ORDER BY rows DESC, field",
        [list(days)],
    ).fetchall()


def rejected_rows(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> int:
    """Source rows (of either file) rejected on the days `first`..`last`."""
    return conn.execute(
        "SELECT count(DISTINCT (day, source_file, row_number)) FROM rejects WHERE day BETWEEN $1 AND $2",
        [first, last],
    ).fetchone()[0]
