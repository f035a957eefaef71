"""Normalise and validate raw rows against the mapping, in SQL: accepted records and rejects with reasons.

The SQL is generated from the mapping: for every mapped value one conversion expression (the
value exactly as sent to the API, or NULL when it cannot be converted) and one reason
expression (NULL when the value is fine), both from `field_rules.py`. A row with problems gives
one reject row per bad source column (the first problem found on that column); a row superseded
by a later version of the same id in the same day is neither accepted nor rejected.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb

from lsq_pipeline.mapping import FieldSpec, Mapping, template_columns
from lsq_pipeline.steps.field_rules import Rule, field_rule, owner_rule, template_sql, trimmed_column, trimmed_text
from lsq_pipeline.warehouse.connection import NUL_STORED_AS
from lsq_pipeline.warehouse.sql import day_list_sql, identifier, literal, on_days, transaction


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
        t = trimmed_column(rule.column)
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
        trimmed = ", ".join(f"{trimmed_text(column)} AS {trimmed_column(column)}" for column in columns)
        values = ", ".join(f"{self.rules[i].value} AS p{i}" for i in indices)
        return f"""
            SELECT *, {values} FROM (
                SELECT *, {trimmed} FROM {table} WHERE day IN {days}) WHERE {where}"""

    def check(self, table: str, days: str, key: str, version: str | None,
              outputs: list[tuple[str, str]], extra: dict[str, list[str]] | None = None) -> Check:
        """The check of `table`'s rows: the latest version of a key in a day wins (a NULL key
        never supersedes), ordered by `version` then by row. A row the extract gave a
        `source_problem` neither supersedes nor is superseded: it is rejected with that reason,
        under its key's column."""
        narrow = [int(key[1:])] + ([int(version[1:])] if version else [])
        key_column = self.rules[int(key[1:])].column
        extra = {**(extra or {}), key_column: [*(extra or {}).get(key_column, []), "source_problem"]}
        # A hash aggregate, not a window: the winner of each (day, key) is the row with a NULL
        # version if any (it is rejected), else the highest version, then the last row.
        winner = (f"arg_max(row_number, ({version} IS NULL, coalesce({version}, TIMESTAMP '-infinity'), row_number))"
                  if version else "max(row_number)")
        latest = f"""
            SELECT day, {winner} AS row_number, {key} AS key FROM ({self._converted_sql(table, days, narrow)})
            GROUP BY day, {key}, CASE WHEN {key} IS NULL OR source_problem IS NOT NULL THEN row_number END"""
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
        return trimmed_column(column)

    def add_field(target: str, spec: FieldSpec) -> str:
        return query.add(field_rule(target, spec, t(spec.column)))

    source_id = add_field(opp.source_id.field, FieldSpec(
        column=opp.source_id.column, required=True, max_length=opp.source_id.max_length))
    updated_at = add_field("source_updated_at", FieldSpec(
        column=opp.updated_at_column, type="datetime", required=True))
    search_by = add_field(opp.lead.search_by.field, FieldSpec(
        column=opp.lead.search_by.column, type=opp.lead.search_by.type, required=True))
    lead = [(opp.lead.search_by.field, query.text(search_by))]
    lead += [(name, query.text(add_field(name, spec))) for name, spec in opp.lead.capture_fields.items()]
    column_fields = {name: add_field(name, spec) for name, spec in opp.fields.items() if spec.column is not None}
    owner = query.add(owner_rule(opp.owner.field, opp.owner.column, opp.owner.users, opp.owner.required,
                                 t(opp.owner.column)))

    # A template's {column} is the column's normalised text (that of its first plain rule).
    text_of_column: dict[str, str] = {}
    for index, rule in enumerate(query.rules):
        if rule.column and rule.plain:
            text_of_column.setdefault(rule.column, query.text(f"p{index}"))
    template_checks: dict[str, list[str]] = {}

    def template_value(target: str, template: str, max_length: int | None) -> str:
        for column in template_columns(template):
            text_of_column.setdefault(column, trimmed_text(column))
        sql = template_sql(template, text_of_column)
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
    t_type = trimmed_column(events.type_column)
    event_id = query.add(field_rule("event_id", FieldSpec(column=events.id_column, required=True, max_length=50),
                                    trimmed_column(events.id_column)))
    source_id = query.add(field_rule("source_id", FieldSpec(
        column=events.source_id_column, required=True, max_length=opp.source_id.max_length),
        trimmed_column(events.source_id_column)))
    codes = " ".join(f"WHEN {literal(name)} THEN {spec.activity_event}" for name, spec in events.types.items())
    activity_event = query.add(Rule(
        "activity_event", events.type_column, f"CASE lower({t_type}) {codes} END",
        [("{p} IS NULL", literal(f"unknown event type (known: {', '.join(events.types)})"))], True))
    occurred_at = query.add(field_rule("occurred_at", FieldSpec(
        column=events.occurred_at_column, type="datetime", required=True),
        trimmed_column(events.occurred_at_column)))
    query.add(owner_rule("owner_email", events.owner_column, opp.owner.users, True,
                         trimmed_column(events.owner_column)))
    note = "NULL"
    if events.note is not None:
        note = query.text(query.add(field_rule("note", events.note, trimmed_column(events.note.column))))
    per_type: list[str] = []
    for type_name, activity in events.types.items():
        pairs = []
        for name, spec in activity.fields.items():
            index = query.add(field_rule(name, spec, trimmed_column(spec.column)))
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
        ("activity_event", activity_event), ("owner_email", f"lower({trimmed_column(events.owner_column)})"),
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
        f"SELECT field, count(*) AS rows FROM rejects WHERE {on_days(days)} GROUP BY field ORDER BY rows DESC, field"
    ).fetchall()


def rejected_rows(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> int:
    """Source rows (of either file) rejected on the days `first`..`last`."""
    return conn.execute(
        "SELECT count(DISTINCT (day, source_file, row_number)) FROM rejects WHERE day BETWEEN $1 AND $2",
        [first, last],
    ).fetchone()[0]
