"""`LeadSquaredClient`: the five opportunity endpoints and the lead bulk creates as methods, run at
the account's limits.

Each method takes any number of items, splits them into calls of the API's maximum, sends the
calls concurrently (at most `max_in_flight` in the air, every start taken from the sliding
window of the endpoint's rate class, shared by all threads, and counted against the day),
retries what is safe to retry (`transport`), and returns one `RowResult` per item in input order.

What a write whose outcome is unknown becomes, per endpoint: reads and updates are re-sent as
they are. A Bulk Add is re-sent only with `OverwriteFields: true`: if the first send landed, the
type's duplicate rule answers with the existing opportunity, returned as `ok` with
`already_existed`. A Capture or an activity call is not re-sent (a Capture may not apply the
duplicate rule; activities have no duplicate detection): its rows come back with
`outcome_unknown`. A lead bulk create is re-sent as it is: a lead whose unique field exists is
not created again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from lsq_pipeline.leadsquared.errors import (
    AuthenticationError,
    DailyBudgetExhausted,
    LeadSquaredAPIError,
    LeadSquaredError,
    RateLimitedError,
    TransientError,
)
from lsq_pipeline.leadsquared.models import (
    BULK_ACTIVITIES,
    BULK_ADD,
    BULK_UPDATE,
    CAPTURE,
    DUPLICATE_EXCEPTION,
    GET_BY_IDS,
    LEAD_BULK_CREATE,
    LEAD_BULK_CREATE_OR_UPDATE,
    ActivityAdd,
    ApiModel,
    BulkActivitiesResponse,
    BulkAddResponse,
    BulkUpdateResponse,
    CaptureRequest,
    CaptureResponse,
    Columns,
    Endpoint,
    ErrorBody,
    GetOpportunitiesRequest,
    LeadAttribute,
    LeadBatchResult,
    LeadCallStatus,
    OpportunityAdd,
    OpportunityGroup,
    OpportunityRecord,
    OpportunityUpdate,
    RowFailure,
    RowResult,
    SearchParameter,
)
from lsq_pipeline.leadsquared.transport import Answer, OutcomeUnknown, Transport

logger = logging.getLogger(__name__)

OUTCOME_UNKNOWN = "OutcomeUnknown"
"""`exception_type` of a row whose call was sent but never answered, and not re-sent."""
MISSING_ROW = "MissingRow"
"""`exception_type` of an item the answer had no row for."""

M = TypeVar("M", bound=ApiModel)


class LeadSquaredClient(Transport):
    """A thread-safe client for one LeadSquared account (one host, one key pair); its limits,
    budget and counters are the `Transport`'s."""

    # --- the five endpoints -------------------------------------------------------------------

    def add_opportunities(self, search_by: str, items: Sequence[OpportunityAdd | dict[str, Any]]) -> list[RowResult]:
        """Add opportunities to leads found by `search_by` (e.g. "EmailAddress"), 25 a call.

        A row refused as a duplicate under the type's rule is `ok` with `already_existed` and
        the existing opportunity's id.
        """

        def run(batch: Sequence[OpportunityAdd]) -> list[RowResult]:
            answer = self._call_create(BULK_ADD, batch, lambda b: [i.to_api() for i in b], {"SearchBy": search_by})
            rows = _rows_by_number(BulkAddResponse.model_validate(answer.body).rows, len(batch))
            return [_add_result(row) for row in rows]

        return self._run_batches(BULK_ADD, _as_models(OpportunityAdd, items), run)

    def update_opportunities(self, items: Sequence[OpportunityUpdate | dict[str, Any]]) -> list[RowResult]:
        """Update opportunities by id, 25 a call. Safe to retry."""

        def run(batch: Sequence[OpportunityUpdate]) -> list[RowResult]:
            answer = self._call(BULK_UPDATE, [i.to_api() for i in batch], {}, len(batch), resend_unknown=True)
            rows = _rows_by_number(BulkUpdateResponse.model_validate(answer.body).rows, len(batch))
            return [
                RowResult(ok=row.updated, opportunity_id=item.opportunity_id, **_failure(row, row.updated))
                for item, row in zip(batch, rows)
            ]

        return self._run_batches(BULK_UPDATE, _as_models(OpportunityUpdate, items), run)

    def capture_opportunities(self, items: Sequence[CaptureRequest | dict[str, Any]]) -> list[RowResult]:
        """Create or update each lead and create its opportunity (Capture), one call per item.

        A capture refused with a business error (500 with an MX body, e.g. a mandatory field
        missing) is that item's failed result, since the call carries only that item; a
        duplicate under the type's rule is `ok` with `already_existed`. A capture whose answer
        was lost is not re-sent (`outcome_unknown`): integrators report Capture creating a
        second opportunity when no duplicate rule covers the fields sent. Resolve it with Bulk
        Add, which finds the lead the capture made and answers the existing opportunity.
        """

        def run(batch: Sequence[CaptureRequest]) -> list[RowResult]:
            try:
                answer = self._call(CAPTURE, batch[0].to_api(), {}, 1, resend_unknown=False)
            except LeadSquaredAPIError as error:
                return [RowResult(ok=False, exception_type=error.exception_type, exception_message=error.exception_message)]
            except OutcomeUnknown as unknown:
                return [
                    RowResult(
                        ok=False,
                        outcome_unknown=True,
                        exception_type=OUTCOME_UNKNOWN,
                        exception_message=f"the capture was sent but not answered ({unknown}); not re-sent",
                    )
                ]
            return [_capture_result(CaptureResponse.model_validate(answer.body))]

        return self._run_batches(CAPTURE, _as_models(CaptureRequest, items), run)

    def get_opportunities(self, event_code: int | str, ids: Sequence[str], columns: Iterable[str] | str) -> list[OpportunityRecord]:
        """Read opportunities of one type by id, 2,000 a call; returns those found, in `ids` order."""
        include_csv = columns if isinstance(columns, str) else ",".join(columns)
        unique_ids = list(dict.fromkeys(ids))

        def run(batch: Sequence[str]) -> list[OpportunityRecord]:
            request = GetOpportunitiesRequest(
                search_parameters=[
                    SearchParameter(event_code=str(event_code), opportunity_ids=list(batch), columns=Columns(include_csv=include_csv))
                ]
            )
            answer = self._call(GET_BY_IDS, request.to_api(), {}, len(batch), resend_unknown=True)
            groups = [OpportunityGroup.model_validate(group) for group in (answer.body or [])]
            found = {record.opportunity_id: record for group in groups for record in group.opportunities}
            return [found.get(opportunity_id) for opportunity_id in batch]

        return [record for record in self._run_batches(GET_BY_IDS, unique_ids, run) if record is not None]

    def add_activities(self, opportunity_id: str, items: Sequence[ActivityAdd | dict[str, Any]]) -> list[RowResult]:
        """Post activities on one opportunity, 25 a call.

        A call whose answer was lost is not re-sent (LeadSquared would post the activities
        twice): its rows come back with `outcome_unknown`.
        """

        def run(batch: Sequence[ActivityAdd]) -> list[RowResult]:
            try:
                answer = self._call(
                    BULK_ACTIVITIES, [i.to_api() for i in batch], {"opportunityId": opportunity_id}, len(batch), resend_unknown=False
                )
            except OutcomeUnknown as unknown:
                return [
                    RowResult(
                        ok=False,
                        opportunity_id=opportunity_id,
                        outcome_unknown=True,
                        exception_type=OUTCOME_UNKNOWN,
                        exception_message=f"the call was sent but not answered ({unknown}); not re-sent",
                    )
                    for _ in batch
                ]
            rows = _rows_by_number(BulkActivitiesResponse.model_validate(answer.body).rows, len(batch))
            return [
                RowResult(ok=row.created, opportunity_id=opportunity_id, activity_id=row.activity_id, **_failure(row, row.created))
                for row in rows
            ]

        return self._run_batches(BULK_ACTIVITIES, _as_models(ActivityAdd, items), run)

    def create_leads(self, leads: Sequence[Mapping[str, Any] | Sequence[LeadAttribute | dict[str, Any]]]) -> list[LeadBatchResult]:
        """Create leads in bulk (the bulk rate class), 50 a call; one `LeadBatchResult` per call.

        A lead is a dict of attribute -> value (`{"EmailAddress": ..., "Phone": ...}`) or a list of
        `LeadAttribute`s, with at least one unique field. A lead whose unique field already exists
        is not created again, so a call whose answer was lost is re-sent. A refused or unanswered
        call is reported, not raised (only wrong keys raise): the next Bulk Add tells, row by row,
        whether each lead exists.
        """
        return self._send_leads(LEAD_BULK_CREATE, leads, search_by=None)

    def create_or_update_leads(
        self, leads: Sequence[Mapping[str, Any] | Sequence[LeadAttribute | dict[str, Any]]], search_by: str | None = None
    ) -> list[LeadBatchResult]:
        """Create or update leads in bulk (the bulk rate class), 25 a call, matched on `search_by`
        (e.g. "EmailAddress"; LeadSquared's default when `None`: email, then phone). Outcomes as
        `create_leads`; re-sending an update is safe."""
        return self._send_leads(LEAD_BULK_CREATE_OR_UPDATE, leads, search_by=search_by)

    def _send_leads(
        self, endpoint: Endpoint, leads: Sequence[Mapping[str, Any] | Sequence[LeadAttribute | dict[str, Any]]], search_by: str | None
    ) -> list[LeadBatchResult]:
        numbered = [(number, _lead_attributes(lead, search_by)) for number, lead in enumerate(leads)]

        def run(batch: Sequence[tuple[int, list[LeadAttribute]]]) -> list[LeadBatchResult]:
            span = {"first": batch[0][0], "count": len(batch)}
            body = [[attribute.to_api() for attribute in lead] for _, lead in batch]
            try:
                answer = self._call(endpoint, body, {}, len(batch), resend_unknown=True)
            except (AuthenticationError, DailyBudgetExhausted):
                raise
            except (TransientError, RateLimitedError) as error:
                return [LeadBatchResult(status=LeadCallStatus.UNKNOWN, **span, **_error_fields(error))]
            except LeadSquaredError as error:
                return [LeadBatchResult(status=LeadCallStatus.REFUSED, **span, **_error_fields(error))]
            refusal = ErrorBody.model_validate(answer.body) if isinstance(answer.body, dict) else ErrorBody()
            if refusal.status == "Error":
                return [LeadBatchResult(status=LeadCallStatus.REFUSED, **span, exception_type=refusal.exception_type,
                                        exception_message=refusal.exception_message)]
            return [LeadBatchResult(status=LeadCallStatus.ANSWERED, **span)]

        return self._run_batches(endpoint, numbered, run)

    # --- creates whose outcome is unknown -----------------------------------------------------

    def _call_create(
        self, endpoint: Endpoint, batch: Sequence[Any], encode: Callable[[Sequence[Any]], Any], params: dict[str, str]
    ) -> Answer:
        """Send a create; if its outcome is unknown, re-send it only with OverwriteFields true (or
        with the flags the caller chose, see `_with_overwrite`)."""
        try:
            return self._call(endpoint, encode(batch), params, len(batch), resend_unknown=False)
        except OutcomeUnknown as unknown:
            safe_batch = [_with_overwrite(item) for item in batch]
            logger.debug(
                "leadsquared %s: outcome unknown (%s), re-sending %d items with OverwriteFields true",
                endpoint.name,
                unknown,
                len(batch),
            )
            self._count(endpoint, retries=1)
            time.sleep(self._backoff(1))
            return self._call(endpoint, encode(safe_batch), params, len(batch), resend_unknown=True, attempts_used=1)


def _as_models(model: type[M], items: Iterable[M | dict[str, Any]]) -> list[M]:
    """Items may be given as models or as dicts (API names or Python names)."""
    return [item if isinstance(item, model) else model.model_validate(item) for item in items]


def _lead_attributes(lead: Mapping[str, Any] | Sequence[LeadAttribute | dict[str, Any]], search_by: str | None) -> list[LeadAttribute]:
    """A lead as the API's list of Attribute/Value pairs, with the SearchBy pair when asked for."""
    if isinstance(lead, Mapping):
        attributes = [LeadAttribute(attribute=name, value=value) for name, value in lead.items()]
    else:
        attributes = _as_models(LeadAttribute, lead)
    if search_by is not None:
        attributes = [a for a in attributes if a.attribute != "SearchBy"] + [LeadAttribute(attribute="SearchBy", value=search_by)]
    return attributes


def _error_fields(error: LeadSquaredError) -> dict[str, str | None]:
    return {"exception_type": error.exception_type or type(error).__name__, "exception_message": error.exception_message or str(error)}


def _with_overwrite(item: OpportunityAdd) -> OpportunityAdd:
    """The same create with OverwriteFields true (and UpdateEmptyFields unset: both true is refused),
    unless the caller chose how a duplicate is merged (OverwriteFields false, or UpdateEmptyFields):
    then it goes again as it is, since the same values under the same flags leave an opportunity
    as one send would, whether the first send created it or met one that existed."""
    if item.overwrite_fields is False or item.update_empty_fields:
        return item
    return item.model_copy(update={"overwrite_fields": True, "update_empty_fields": None})


def _rows_by_number(rows: Sequence[RowFailure], count: int) -> list[Any]:
    """Align answer rows with the items sent, by `RowNumber` (1-based) or else by position."""
    aligned: list[Any] = [None] * count
    for position, row in enumerate(rows):
        index = (row.row_number - 1) if row.row_number else position
        if 0 <= index < count and aligned[index] is None:
            aligned[index] = row
    return [row if row is not None else _MissingRow() for row in aligned]


class _MissingRow(RowFailure):
    """Stands in for a row the answer left out."""

    opportunity_id: str | None = None
    activity_id: str | None = None
    created: bool = False
    updated: bool = False
    exception_type: str | None = MISSING_ROW
    exception_message: str | None = "the answer had no row for this item"


def _failure(row: RowFailure, ok: bool) -> dict[str, str | None]:
    if ok:
        return {}
    return {
        "exception_type": row.exception_type or "RowFailed",
        "exception_message": row.exception_message,
    }


def _add_result(row: Any) -> RowResult:
    if row.created:
        return RowResult(ok=True, opportunity_id=row.opportunity_id)
    if row.exception_type == DUPLICATE_EXCEPTION and row.opportunity_id:
        return RowResult(ok=True, opportunity_id=row.opportunity_id, already_existed=True)
    return RowResult(ok=False, opportunity_id=row.opportunity_id, **_failure(row, False))


def _capture_result(answer: CaptureResponse) -> RowResult:
    if answer.is_unique is False and answer.conflicted_opportunity_id:
        return RowResult(ok=True, opportunity_id=answer.conflicted_opportunity_id, lead_id=answer.lead_id, already_existed=True)
    if answer.created_opportunity_id and answer.status != 1:
        return RowResult(ok=True, opportunity_id=answer.created_opportunity_id, lead_id=answer.lead_id)
    return RowResult(
        ok=False,
        lead_id=answer.lead_id,
        exception_type=answer.exception_type or "CaptureFailed",
        exception_message=answer.exception_message or f"Capture answered Status {answer.status}",
    )
