"""The sandbox backend: one account's state, its rules and its answers behind the endpoints' methods, no HTTP.

Each endpoint method parses its request once (`payloads`), applies the rules under the lock
(`rules`, which return outcomes), and builds the answer (`answers`, through the profile).
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from lsq_pipeline.sandbox.account import Account, OpportunityType, load_account
from lsq_pipeline.sandbox.answers import (
    ACTIVITY_CREATED,
    OPPORTUNITY_CREATED,
    OPPORTUNITY_UPDATED,
    Answers,
)
from lsq_pipeline.sandbox.exceptions import MXInvalidFieldValueException, MXInvalidInputException, MXRecordNotFoundException
from lsq_pipeline.sandbox.outcomes import RowOutcome, RowRefused
from lsq_pipeline.sandbox.payloads import (
    MAX_ITEMS_PER_WRITE,
    MAX_LEADS_PER_CREATE,
    MAX_LEADS_PER_UPSERT,
    ActivityRow,
    BulkAddRow,
    BulkUpdateRow,
    CaptureRequest,
    GetByIdsRequest,
    parse,
    parse_batch,
    parse_lead_rows,
)
from lsq_pipeline.sandbox.profiles import DOCUMENTED, Profile, get_profile
from lsq_pipeline.sandbox.rules import Rules
from lsq_pipeline.sandbox.state import SENT_DATETIME_FORMAT, AccountState, Opportunity, utc_now


def format_sent_datetime(moment: datetime) -> str:
    return moment.strftime(SENT_DATETIME_FORMAT)


@dataclass
class SandboxStats:
    """Counters for `/sandbox/stats`."""

    calls: Counter = field(default_factory=Counter)
    rate_limited: int = 0
    faults: Counter = field(default_factory=Counter)
    lost_responses: int = 0
    rows_failed: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, counter: str, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                setattr(self, counter, getattr(self, counter) + 1)
            else:
                getattr(self, counter)[key] += 1

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "Calls": dict(self.calls),
                "TotalCalls": sum(self.calls.values()),
                "RateLimited": self.rate_limited,
                "Faults": dict(self.faults),
                "TotalFaults": sum(self.faults.values()),
                "LostResponses": self.lost_responses,
                "RowsFailed": dict(self.rows_failed),
            }

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.faults.clear()
            self.rows_failed.clear()
            self.rate_limited = 0
            self.lost_responses = 0


class SandboxBackend:
    """State, rules and answers of one LeadSquared account under one profile. Thread-safe: one lock."""

    def __init__(
        self,
        account: Account | str | Path | None = None,
        state_path: str | Path | None = None,
        clock: Callable[[], datetime] = utc_now,
        profile: Profile | str = DOCUMENTED,
        read_lag_seconds: float | None = None,
    ):
        """`read_lag_seconds`: how far GetOpportunitiesById lags writes; None = the profile's."""
        self.account = account if isinstance(account, Account) else load_account(account)
        self.profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.stats = SandboxStats()
        self._lock = threading.RLock()
        lag = self.profile.read_lag_seconds if read_lag_seconds is None else read_lag_seconds
        self.state = AccountState(self.account, state_path, clock, lag)
        self.rules = Rules(self.state, self._validates_dropdowns, self.profile.capture_applies_duplicate_rule)
        self.answers = Answers(self.profile, self.state)

    def _validates_dropdowns(self, opp_type: OpportunityType | None) -> bool:
        """The profile's drop-down switch; `account` defers to the type's, else the account's, setting."""
        if self.profile.dropdown_validation != "account":
            return self.profile.dropdown_validation == "always"
        if opp_type is not None and opp_type.validate_dropdowns is not None:
            return opp_type.validate_dropdowns
        return self.account.validate_dropdowns

    @property
    def leads(self):
        return self.state.leads

    @property
    def opportunities(self) -> dict[str, Opportunity]:
        return self.state.opportunities

    @property
    def activities(self):
        return self.state.activities

    @property
    def api_user_id(self) -> str:
        return self.state.api_user_id

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Under the lock; what was written is durable before the answer goes out."""
        with self._lock:
            try:
                yield
            finally:
                self.state.sync()

    def close(self) -> None:
        with self._lock:
            self.state.close()

    def reset(self) -> None:
        """Back to the account's seed state; the journal is compacted to it."""
        with self._lock:
            self.state.reset()
            self.stats.clear()

    # ----- the endpoints ----------------------------------------------------------------

    def _batch(self, rows: list[Any], one_row: Callable[[Any], RowOutcome]) -> list[RowOutcome]:
        """The rows of one batch call; under a profile where a bad value fails the call, nothing is written."""
        if self.profile.bad_value_fails_batch:
            bad = self.rules.bad_values(rows)
            if bad:
                number, error = bad[0]
                raise MXInvalidFieldValueException(f"Row {number}: {error.message}")
        outcomes = self.rules.run_rows(rows, one_row)
        for outcome in outcomes:
            if isinstance(outcome, RowRefused):
                self.stats.count("rows_failed", outcome.error.exception_type)
        return outcomes

    def bulk_add(self, search_by: str | None, body: Any) -> dict:
        """`Bulk/Add/ByLeadField?SearchBy=`: up to 25 opportunities on leads found by a unique field."""
        rows = parse_batch(BulkAddRow, body, MAX_ITEMS_PER_WRITE, "opportunity")
        search_field = self.rules.search_by_field(search_by)
        with self._writing():
            outcomes = self._batch(rows, lambda row: self.rules.add_opportunity(search_field, row))
            return self.answers.rows(outcomes, OPPORTUNITY_CREATED, "ProspectOpportunityId")

    def bulk_update(self, body: Any) -> dict:
        """`Bulk/Update/ByOpportunityId`: up to 25 opportunities updated by id."""
        rows = parse_batch(BulkUpdateRow, body, MAX_ITEMS_PER_WRITE, "opportunity")
        with self._writing():
            outcomes = self._batch(rows, self.rules.update_opportunity)
            return self.answers.rows(outcomes, OPPORTUNITY_UPDATED, "ProspectOpportunityId")

    def bulk_add_activities(self, opportunity_id: str | None, body: Any) -> dict:
        """`Bulk/CustomActivity/Add/ByOpportunityId?opportunityId=`: up to 25 activities on one opportunity."""
        rows = parse_batch(ActivityRow, body, MAX_ITEMS_PER_WRITE, "activity")
        with self._writing():
            opp = self.rules.opportunity_for_activities(opportunity_id)
            outcomes = self._batch(rows, lambda row: self.rules.add_activity(opportunity_id, opp, row))
            return self.answers.rows(outcomes, ACTIVITY_CREATED, "ProspectActivityId")

    def capture(self, body: Any) -> dict:
        """`Capture`: create or update the lead from LeadDetails, then create the opportunity or detect the duplicate."""
        request = parse(CaptureRequest, body)
        with self._writing():
            return self.answers.captured(self.rules.capture(request))

    def get_opportunities_by_id(self, body: Any) -> list[dict]:
        """`GetOpportunitiesById`: one result group per search parameter."""
        request = parse(GetByIdsRequest, body)
        with self._lock:
            return self.answers.read(self.rules.read(request))

    def bulk_create_leads(self, body: Any) -> dict:
        """`Lead/Bulk/Create`: up to 50 leads; one whose unique value exists already is not created."""
        rows = parse_lead_rows(body, MAX_LEADS_PER_CREATE)
        with self._writing():
            return self.answers.lead_rows(self._batch(rows, self.rules.create_lead), upsert=False)

    def bulk_create_or_update_leads(self, body: Any) -> dict:
        """`Lead/Bulk/CreateOrUpdate`: up to 25 leads, each matched on its SearchBy field."""
        rows = parse_lead_rows(body, MAX_LEADS_PER_UPSERT)
        with self._writing():
            return self.answers.lead_rows(self._batch(rows, self.rules.create_or_update_lead), upsert=True)

    # ----- inspection (/sandbox/) -------------------------------------------------------

    def list_leads(self) -> list[dict]:
        with self._lock:
            return [{"ProspectId": lead.id, "Fields": dict(lead.fields),
                     "CreatedOn": format_sent_datetime(lead.created_on),
                     "ModifiedOn": format_sent_datetime(lead.modified_on)} for lead in self.leads.values()]

    def list_opportunities(self) -> list[dict]:
        with self._lock:
            return [self._describe_opportunity(opp) for opp in self.opportunities.values()]

    @staticmethod
    def _describe_opportunity(opp: Opportunity) -> dict:
        return {"ProspectOpportunityId": opp.id, "ProspectId": opp.lead_id, "EventCode": opp.event_code,
                "Fields": dict(opp.fields), "OpportunityNote": opp.note,
                "CreatedOn": format_sent_datetime(opp.created_on),
                "ModifiedOn": format_sent_datetime(opp.modified_on)}

    def list_activities(self) -> list[dict]:
        with self._lock:
            return [{"ProspectActivityId": a.id, "Kind": a.kind, "ActivityEvent": a.event_code,
                     "ProspectId": a.lead_id, "OpportunityId": a.opportunity_id, "OwnerId": a.owner_id,
                     "ActivityNote": a.note, "Fields": dict(a.fields),
                     "CreatedOn": format_sent_datetime(a.created_on)} for a in self.activities.values()]

    def edit_opportunity(self, opportunity_id: str, fields: Any) -> dict:
        """Change an opportunity's fields behind the pipeline's back (drift tests); no validation, ModifiedOn moves."""
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise MXInvalidInputException('The body must be {"Fields": {"<SchemaName>": "<value>", ...}}.')
        with self._writing():
            opp = self.opportunities.get(opportunity_id.strip().lower())
            if opp is None:
                raise MXRecordNotFoundException(f"Opportunity with id '{opportunity_id}' does not exist.")
            self.rules.update_fields(opp, {k: "" if v is None else str(v) for k, v in fields.items()})
            return self._describe_opportunity(self.opportunities[opp.id])
