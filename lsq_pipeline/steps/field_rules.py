"""The SQL of one mapped value: how its trimmed source text is converted to the value sent to
LeadSquared (NULL when it cannot be), and the checks whose reasons reject it. The formula guard,
the phone, number, date and dropdown normal forms, owners and templates are decided here, so the
day's validation (`transform.py`) only assembles them per raw table."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from lsq_pipeline.mapping import FieldSpec
from lsq_pipeline.warehouse.sql import identifier, literal

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


def trimmed_column(column: str) -> str:
    """The quoted name of a source column's trimmed text."""
    return identifier(f"t_{column}")


def trimmed_text(column: str) -> str:
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


def field_rule(target: str, spec: FieldSpec, t: str) -> Rule:
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


def owner_rule(target: str, column: str, users: dict[str, str], required: bool, t: str) -> Rule:
    """The owner's email in `t` as the LeadSquared user id the mapping lists for it: an owner
    outside the list is refused, not sent to be guessed by LeadSquared."""
    whens = " ".join(f"WHEN {literal(email)} THEN {literal(user_id)}" for email, user_id in users.items())
    return Rule(
        target, column, f"CASE lower({t}) {whens} END",
        [(f"{{p}} IS NULL AND NOT regexp_full_match(lower({t}), {literal(EMAIL_RE)})", "'not a valid email address'"),
         ("{p} IS NULL", "'unknown owner: not one of the LeadSquared users in the mapping'")],
        required,
        plain=False,
    )


def template_sql(template: str, text_of_column: dict[str, str]) -> str:
    """A `{column}` template as SQL text, each column read through `text_of_column` (its normalised
    text) and an absent value left empty."""
    pieces = []
    for text, name, _, _ in string.Formatter().parse(template):
        if text:
            pieces.append(literal(text))
        if name:
            pieces.append(f"coalesce({text_of_column[name]}, '')")
    return "concat(" + ", ".join(pieces or ["''"]) + ")"
