"""Answer builders: outcomes into LeadSquared's wire shapes, through the profile's switches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lsq_pipeline.sandbox.account import OWNER_FIELD
from lsq_pipeline.sandbox.exceptions import MXDuplicateEntryException, MXRecordNotFoundException, SandboxError
from lsq_pipeline.sandbox.outcomes import Captured, ReadGroup, RowDone, RowOutcome
from lsq_pipeline.sandbox.profiles import Profile
from lsq_pipeline.sandbox.rules import MissingLead
from lsq_pipeline.sandbox.state import AccountState, Opportunity, new_id

# Capture's documented action codes.
ACTION_NONE = 0
ACTION_CREATE_OPPORTUNITY = 1
ACTION_CAPTURED_ACTIVITY = 2
ACTION_DUPLICATE_DETECTED_ACTIVITY = 3
DEDUP_NONE = 0
DEDUP_CREATED = 1
DEDUP_DUPLICATE_DETECTED = 3

OPPORTUNITY_CREATED = "OpportunityCreated"
OPPORTUNITY_UPDATED = "OpportunityUpdated"
ACTIVITY_CREATED = "ActivityCreated"
LEAD_CREATED = "LeadCreated"


def format_lsq_datetime(moment: datetime) -> str:
    """`M/D/YYYY h:mm:ss AM`, as GetOpportunitiesById answers (UTC)."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d}:{moment.second:02d} {half}"


class Answers:
    """Builds every answer of one account under one profile."""

    def __init__(self, profile: Profile, state: AccountState):
        self.profile = profile
        self.state = state

    def error(self, error: SandboxError) -> SandboxError:
        """The error as this profile words it (a missing lead's message)."""
        if isinstance(error, MissingLead):
            return MXRecordNotFoundException(
                self.profile.missing_lead_message.format(field=error.field, value=error.value))
        return error

    def rows(self, outcomes: list[RowOutcome], flag: str, id_key: str) -> dict:
        """`{"Response":[{id_key, RowNumber, flag}, ...]}`; a refused row as the profile shapes it."""
        answers = []
        for number, outcome in enumerate(outcomes, start=1):
            if isinstance(outcome, RowDone):
                row = {id_key: outcome.record_id} if outcome.record_id else {}
                answers.append({**row, "RowNumber": number, flag: True})
                continue
            row = {"RowNumber": number, flag: False}
            if outcome.existing_id and self.profile.duplicate_answer_has_id:
                row = {id_key: outcome.existing_id, **row}
            says_why = isinstance(outcome.error, (MXDuplicateEntryException, MissingLead))
            if says_why or self.profile.row_failure_has_exception:
                row.update(self.error(outcome.error).row_fields())
            answers.append(row)
        return {"Response": answers}

    def lead_rows(self, outcomes: list[RowOutcome], *, upsert: bool) -> dict:
        """The lead bulk calls (undocumented shape): one entry per lead, or only a count."""
        if self.profile.lead_bulk_answer == "count":
            written = sum(isinstance(o, RowDone) for o in outcomes)
            return {"Status": "Success", "Message": {"AffectedRows": written}}
        answer = self.rows(outcomes, LEAD_CREATED, "LeadId")
        if upsert:
            for row, outcome in zip(answer["Response"], outcomes):
                done = isinstance(outcome, RowDone)
                row[LEAD_CREATED] = done and outcome.created
                row["LeadUpdated"] = done and not outcome.created
        return answer

    def captured(self, outcome: Captured) -> dict:
        """Capture's answer: created, or the duplicate with `ConflictedOpportunityId`."""
        answer: dict[str, Any] = {
            "AdditionalDetails": [{"ActivityId": outcome.captured_activity_id,
                                   "PostDeDupActionPerformed": DEDUP_CREATED}],
            "ConflictedOpportunityId": None,
            "CreatedOpportunityId": outcome.created_id,
            "ExceptionMessage": None,
            "ExceptionType": None,
            "IsUnique": True,
            "PrimaryAction": ACTION_CREATE_OPPORTUNITY,
            "RelatedProspectId": outcome.lead_id,
            "RequestId": new_id(),
            "SecondaryAction": ACTION_CAPTURED_ACTIVITY,
            "Status": 0,
        }
        if outcome.conflicted_id is None:
            return answer
        if outcome.duplicate_activity_id:
            answer["PrimaryAction"] = ACTION_DUPLICATE_DETECTED_ACTIVITY
            details = {"ActivityId": outcome.duplicate_activity_id, "PostDeDupActionPerformed": DEDUP_DUPLICATE_DETECTED}
        else:  # DoNotPostDuplicateActivity: nothing was created and no duplicate activity posted
            answer["PrimaryAction"] = ACTION_NONE
            details = {"ActivityId": outcome.captured_activity_id, "PostDeDupActionPerformed": DEDUP_NONE}
        answer.update(AdditionalDetails=[details], ConflictedOpportunityId=outcome.conflicted_id, IsUnique=False,
                      **outcome.duplicate.row_fields())
        return answer

    def read(self, groups: list[ReadGroup]) -> list[dict]:
        return [{"EventCode": group.event_code, "RecordCount": len(group.found),
                 "Opportunities": [self._read_opportunity(opp, group.columns) for opp in group.found]}
                for group in groups]

    def _read_opportunity(self, opp: Opportunity, columns: list[str]) -> dict:
        account = self.state.account
        lead = self.state.leads.get(opp.lead_id)
        owner = account.user_by_id(opp.fields.get(OWNER_FIELD, ""))
        row: dict[str, Any] = {
            "ProspectId": opp.lead_id,
            "EmailAddress": lead.fields.get("EmailAddress") if lead else None,
            "ProspectActivityId": opp.id,
        }
        system = {
            "CreatedOn": format_lsq_datetime(opp.created_on),
            "ModifiedOn": format_lsq_datetime(opp.modified_on),
            "CreatedBy": opp.created_by,
            "ModifiedBy": opp.modified_by,
            "OpportunityNote": opp.note,
        }
        opp_type = account.opportunity_type(opp.event_code)
        for column in columns:
            if column in row or column == "OwnerEmailAddress":
                continue
            if column in system:
                row[column] = system[column]
            elif opp_type is not None and opp_type.field(column) is not None:
                row[column] = opp.fields.get(column)
        row["OwnerEmailAddress"] = owner.email if owner else None
        return row
