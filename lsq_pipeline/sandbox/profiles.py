"""Behaviour profiles: one table of switches for everything the pages leave open, read by the answer builders."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

DropdownValidation = Literal["account", "always", "never"]
LeadBulkAnswer = Literal["rows", "count"]


@dataclass(frozen=True)
class Profile:
    """What this LeadSquared does where the five pages and NOTES.md are silent (sandbox README, "Profiles")."""

    name: str
    # Bulk Add: a duplicate row names the existing opportunity in `ProspectOpportunityId`.
    duplicate_answer_has_id: bool
    # Other failed bulk rows carry `ExceptionType` and `ExceptionMessage`, or only `RowNumber` and the
    # flag. A duplicate row and a row whose lead does not exist always say why.
    row_failure_has_exception: bool
    # Bulk Add: the message of a row whose lead does not exist (`{field}`, `{value}`).
    missing_lead_message: str
    # A call refused by the rate limit takes a place in the window.
    refused_calls_count: bool
    # A bad value (type, length, option) in one row refuses the whole batch call with a 500 MX error.
    bad_value_fails_batch: bool
    # Capture applies the type's duplicate rule; when off, no rule covers the fields sent, so a second
    # Capture creates a second opportunity and answers `IsUnique: true`.
    capture_applies_duplicate_rule: bool
    # Drop-down values outside the options: refused per the account's setting, always, or never.
    dropdown_validation: DropdownValidation
    # The HTTP status of the rate-limit answer (its body is the same).
    rate_limit_status: Literal[429, 200]
    # The lead bulk calls answer one entry per lead, or only how many leads were written.
    lead_bulk_answer: LeadBulkAnswer
    # GetOpportunitiesById reads an index that lags writes by this many seconds: an opportunity
    # created since is left out, one updated since comes back as it was (old values, old ModifiedOn).
    read_lag_seconds: float


DOCUMENTED = Profile(
    name="documented",
    duplicate_answer_has_id=True,
    row_failure_has_exception=True,
    missing_lead_message="Lead with {field} '{value}' does not exist.",
    refused_calls_count=False,
    bad_value_fails_batch=False,
    capture_applies_duplicate_rule=True,
    dropdown_validation="account",
    rate_limit_status=429,
    lead_bulk_answer="rows",
    read_lag_seconds=0.0,
)

# The other profiles name only what they change.
TERSE = replace(
    DOCUMENTED,
    name="terse",
    duplicate_answer_has_id=False,
    row_failure_has_exception=False,
    missing_lead_message="No prospect matches {field} = {value}.",
    refused_calls_count=True,
    bad_value_fails_batch=True,
    dropdown_validation="always",
    lead_bulk_answer="count",
)

FIELD = replace(
    DOCUMENTED,
    name="field",
    capture_applies_duplicate_rule=False,
    dropdown_validation="never",
    rate_limit_status=200,
    read_lag_seconds=3.0,
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (DOCUMENTED, TERSE, FIELD)}
ProfileName = Literal["documented", "terse", "field"]


def get_profile(name: str) -> Profile:
    """The profile called `name`; a ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown sandbox profile {name!r}; known: {', '.join(PROFILES)}") from None
