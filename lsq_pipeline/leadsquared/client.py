"""`LeadSquaredClient`: the five opportunity endpoints and the lead bulk creates as methods, run at
the account's limits.

Each method takes any number of items, splits them into calls of the API's maximum, sends the
calls concurrently (at most `max_in_flight` in the air, every start taken from the sliding
window of the endpoint's rate class, shared by all threads, and counted against the day),
retries what is safe to retry, and returns one `RowResult` per item in input order.

Retry rules:
- a 429, or a 200 with `MXAPIRateLimitExceededException`: nothing was written; the class's
  window learns the limit the message names (if lower), every call of the class pauses one
  window, then the call is sent again (counted as `rate_limited`); a refusal for the day
  raises `DailyBudgetExhausted`, as does the client's own daily count;
- 401, 400, 404, a 500 with an `MX...` body: permanent, raised as a typed error, never retried;
- timeouts, dropped connections, a 500 without an MX body, 502/503/504: transient, retried with
  exponential backoff and full jitter, up to `max_retries` times. Reads and updates are re-sent
  as they are. A Bulk Add whose outcome is unknown is re-sent only with `OverwriteFields: true`:
  if the first send landed, the type's duplicate rule answers with the existing opportunity,
  returned as `ok` with `already_existed`. A Capture or an activity call whose outcome is
  unknown is not re-sent (a Capture may not apply the duplicate rule; activities have no
  duplicate detection): its rows come back with `outcome_unknown`. A lead bulk create whose
  outcome is unknown is re-sent as it is: a lead whose unique field exists is not created again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from lsq_pipeline.leadsquared.errors import (
    AuthenticationError,
    BadRequestError,
    DailyBudgetExhausted,
    LeadSquaredAPIError,
    LeadSquaredError,
    NotFoundError,
    RateLimitedError,
    TransientError,
)
from lsq_pipeline.leadsquared.models import (
    BULK_ACTIVITIES,
    BULK_ADD,
    BULK_UPDATE,
    CAPTURE,
    DUPLICATE_EXCEPTION,
    ENDPOINTS,
    GET_BY_IDS,
    LEAD_BULK_CREATE,
    LEAD_BULK_CREATE_OR_UPDATE,
    RATE_LIMIT_EXCEPTION,
    ActivityAdd,
    ApiModel,
    BulkActivitiesResponse,
    BulkAddResponse,
    BulkUpdateResponse,
    CaptureRequest,
    CaptureResponse,
    ClientStats,
    Columns,
    Endpoint,
    EndpointStats,
    ErrorBody,
    GetOpportunitiesRequest,
    LeadAttribute,
    LeadBatchResult,
    OpportunityAdd,
    OpportunityGroup,
    OpportunityRecord,
    OpportunityUpdate,
    RowFailure,
    RowResult,
    SearchParameter,
)
from lsq_pipeline.leadsquared.budget import AccountBudget, account_limits, utc_today
from lsq_pipeline.leadsquared.budget_store import BudgetStore, MemoryStore, RedisStore, SQLiteStore

logger = logging.getLogger(__name__)

OUTCOME_UNKNOWN = "OutcomeUnknown"
"""`exception_type` of a row whose call was sent but never answered, and not re-sent."""
MISSING_ROW = "MissingRow"
"""`exception_type` of an item the answer had no row for."""

_TRANSIENT_STATUSES = {500, 502, 503, 504}
_NOT_CARRIED_OUT_STATUSES = {503}
"""Transient answers after which the server surely wrote nothing (service unavailable)."""

T = TypeVar("T")
M = TypeVar("M", bound=ApiModel)


@dataclass(frozen=True)
class _Answer:
    """A usable answer: the parsed JSON body."""

    body: Any


class _Transient(Exception):
    """A failed attempt worth retrying; `unknown`: the server may have carried it out."""

    def __init__(self, reason: str, *, unknown: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unknown = unknown


class _RateLimited(Exception):
    """A rate-limit refusal; `message` is the server's (it names the limit)."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message)
        self.message = message


class LeadSquaredClient:
    """A thread-safe client for one LeadSquared account (one host, one key pair)."""

    def __init__(
        self,
        base_url: str,
        access_key: str,
        secret_key: str,
        *,
        rate_limit_calls: int = 25,
        rate_limit_seconds: float = 5.0,
        bulk_rate_limit_calls: int | None = None,
        bulk_rate_limit_seconds: float | None = None,
        daily_call_limit: int = 0,
        bulk_counts_against_general: bool = True,
        max_in_flight: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_rate_limited_retries: int = 20,
        rate_limit_db: str | None = None,
        rate_limit_redis: str | None = None,
        today: Callable[[], date] = utc_today,
    ) -> None:
        """`rate_limit_calls=0` turns the client-side general window off; the bulk window keeps
        to the general limit unless `bulk_rate_limit_*` are given. `daily_call_limit`: calls a
        UTC day, all classes (0 = none). The budget is shared by every process naming the same
        `rate_limit_redis` URL (across machines) or else the same `rate_limit_db` SQLite file
        (one machine). `today`: the UTC day the daily count is kept under."""
        if not access_key or not secret_key:
            raise ValueError("LeadSquaredClient needs both an access key and a secret key")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.base_url = base_url.rstrip("/")
        self._secrets = (access_key, secret_key)
        self.max_in_flight = max_in_flight
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_rate_limited_retries = max_rate_limited_retries
        limits = account_limits(
            rate_limit_calls=rate_limit_calls,
            rate_limit_seconds=rate_limit_seconds,
            bulk_rate_limit_calls=bulk_rate_limit_calls,
            bulk_rate_limit_seconds=bulk_rate_limit_seconds,
            daily_call_limit=daily_call_limit,
            bulk_counts_against_general=bulk_counts_against_general,
        )
        needs_store = limits.daily_calls > 0 or limits.general.calls > 0 or limits.bulk.calls > 0
        store = self._budget_store(rate_limit_db, rate_limit_redis) if needs_store else MemoryStore()
        self.budget = AccountBudget(limits, store, today=today)

        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_in_flight, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "x-LSQ-AccessKey": access_key,
                "x-LSQ-SecretKey": secret_key,
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
            }
        )
        # One pool per rate class, so calls waiting on the bulk window never hold a general call's slot.
        self._pools = {
            rate_class: ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix=f"lsq-{rate_class}")
            for rate_class in sorted({endpoint.rate_class for endpoint in ENDPOINTS})
        }
        self._stats_lock = threading.Lock()
        self._endpoint_stats = {endpoint.name: EndpointStats() for endpoint in ENDPOINTS}
        self._seconds_waiting = 0.0

    def _budget_store(self, db_path: str | None, redis_url: str | None) -> BudgetStore:
        """The budget is LeadSquared's: keyed by the account (host and access key, hashed), so two
        configurations of one account share it and two accounts never do."""
        account = hashlib.sha256(f"{self.base_url}\0{self._secrets[0]}".encode()).hexdigest()[:16]
        if redis_url:
            return RedisStore(redis_url, f"lsq:{account}")
        return SQLiteStore(db_path, account) if db_path else MemoryStore()

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
            except _OutcomeUnknown as unknown:
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
            except _OutcomeUnknown as unknown:
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
                return [LeadBatchResult(status="unknown", **span, **_error_fields(error))]
            except LeadSquaredError as error:
                return [LeadBatchResult(status="refused", **span, **_error_fields(error))]
            refusal = ErrorBody.model_validate(answer.body) if isinstance(answer.body, dict) else ErrorBody()
            if refusal.status == "Error":
                return [LeadBatchResult(status="refused", **span, exception_type=refusal.exception_type,
                                        exception_message=refusal.exception_message)]
            return [LeadBatchResult(status="answered", **span)]

        return self._run_batches(endpoint, numbered, run)

    # --- observability ------------------------------------------------------------------------

    def stats(self) -> ClientStats:
        """A snapshot of the counters since the client was made (for asset metadata)."""
        with self._stats_lock:
            per_endpoint = {name: stats.model_copy() for name, stats in self._endpoint_stats.items()}
            waiting = self._seconds_waiting
        totals = {
            field: sum(getattr(stats, field) for stats in per_endpoint.values())
            for field in EndpointStats.model_fields
        }
        return ClientStats(**totals, window_wait_seconds=waiting, per_endpoint=per_endpoint)

    def rate_ceiling(self, rate_class: str = "general") -> float | None:
        """Calls per second the client's window for `rate_class` allows; None when it has none."""
        window = self.budget.windows.get(rate_class)
        return window.calls / window.seconds if window is not None else None

    def close(self) -> None:
        """Stop the call threads and close the connection pool."""
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        self._session.close()
        self.budget.close()

    def __enter__(self) -> "LeadSquaredClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LeadSquaredClient(base_url={self.base_url!r}, keys=<hidden>, max_in_flight={self.max_in_flight}, budget={self.budget!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("LeadSquaredClient holds credentials and a connection pool; it is not picklable")

    # --- batching -----------------------------------------------------------------------------

    def _run_batches(self, endpoint: Endpoint, items: list[Any], run: Callable[[Sequence[Any]], list[T]]) -> list[T]:
        """Split `items` into calls of `endpoint.max_items`, run them concurrently, keep order.

        If a call fails permanently, the others still finish; the first error is raised with
        `error.results` holding what the other calls answered (`None` for the failed ones).
        Once the day's budget is spent, the calls not yet sent are not sent.
        """
        if not items:
            return []
        size = endpoint.max_items
        batches = [items[start : start + size] for start in range(0, len(items), size)]
        if len(batches) == 1:
            return run(batches[0])
        day_spent: list[DailyBudgetExhausted] = []

        def run_unless_day_spent(batch: Sequence[Any]) -> list[T]:
            if day_spent:
                raise day_spent[0]
            try:
                return run(batch)
            except DailyBudgetExhausted as error:
                day_spent.append(error)
                raise

        pool = self._pools[endpoint.rate_class]
        futures: list[Future[list[T]]] = [pool.submit(run_unless_day_spent, batch) for batch in batches]
        results: list[T | None] = []
        first_error: BaseException | None = None
        for batch, future in zip(batches, futures):
            try:
                results.extend(future.result())
            except BaseException as error:  # noqa: BLE001 - re-raised below, after the others finish
                first_error = first_error or error
                results.extend([None] * len(batch))
        if first_error is not None:
            if isinstance(first_error, LeadSquaredError):
                first_error.results = results
            raise first_error
        return results  # type: ignore[return-value]

    # --- one call, with its retries -----------------------------------------------------------

    def _call_create(
        self, endpoint: Endpoint, batch: Sequence[Any], encode: Callable[[Sequence[Any]], Any], params: dict[str, str]
    ) -> _Answer:
        """Send a create; if its outcome is unknown, re-send it only with OverwriteFields true (or
        with the flags the caller chose, see `_with_overwrite`)."""
        try:
            return self._call(endpoint, encode(batch), params, len(batch), resend_unknown=False)
        except _OutcomeUnknown as unknown:
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

    def _call(
        self,
        endpoint: Endpoint,
        body: Any,
        params: dict[str, str],
        item_count: int,
        *,
        resend_unknown: bool,
        attempts_used: int = 0,
    ) -> _Answer:
        """POST one call until it gets a usable answer, a permanent error, or runs out of retries.

        `resend_unknown=False`: a transient failure after which the server may have carried the
        call out raises `_OutcomeUnknown` instead of re-sending.
        """
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        url = self.base_url + endpoint.path
        attempt = attempts_used
        rate_limited = 0
        while True:
            attempt += 1
            waited = self.budget.acquire(endpoint.rate_class, endpoint.name)
            if waited:
                with self._stats_lock:
                    self._seconds_waiting += waited
            try:
                body_out = self._attempt(endpoint, url, data, params, item_count, attempt)
                return _Answer(body_out)
            except _RateLimited as refusal:
                paused = self.budget.refused(endpoint.rate_class, endpoint.name, self._redact(refusal.message or ""))
                rate_limited += 1
                attempt -= 1  # a refused call is not a failed attempt
                if rate_limited > self.max_rate_limited_retries:
                    raise RateLimitedError.for_call(
                        endpoint.name,
                        exception_type=RATE_LIMIT_EXCEPTION,
                        detail=f"still refused after {rate_limited} pauses",
                    ) from None
                if not paused:
                    time.sleep(self._backoff(rate_limited))
                self._count(endpoint, retries=1)
            except _Transient as failure:
                if failure.unknown and not resend_unknown:
                    raise _OutcomeUnknown(failure.reason) from None
                if attempt > self.max_retries:
                    raise TransientError.for_call(
                        endpoint.name, detail=f"{failure.reason}; gave up after {attempt} attempts"
                    ) from None
                self._count(endpoint, retries=1)
                time.sleep(self._backoff(attempt))

    def _attempt(self, endpoint: Endpoint, url: str, data: bytes, params: dict[str, str], item_count: int, attempt: int) -> Any:
        """One HTTP POST: the parsed body of a usable answer, or a classified exception."""
        started = time.monotonic()
        status: int | str = "-"
        body = _SentBody(data, on_sent=lambda at: self.budget.sent(endpoint.rate_class, at))
        try:
            response = self._session.post(url, params=params, data=body, timeout=self.timeout)
            status = response.status_code
            return self._classify(endpoint, response, item_count)
        except requests.RequestException as error:
            status = type(error).__name__
            raise _Transient(_describe_network_error(error), unknown=not _surely_not_sent(error)) from None
        finally:
            duration = time.monotonic() - started
            self._count(endpoint, calls=1, seconds_in_calls=duration)
            logger.debug(
                "leadsquared call endpoint=%s items=%d status=%s duration=%.3fs attempt=%d",
                endpoint.name,
                item_count,
                status,
                duration,
                attempt,
            )

    def _classify(self, endpoint: Endpoint, response: requests.Response, item_count: int) -> Any:
        status = response.status_code
        body = _json_or_none(response)
        error = ErrorBody.model_validate(body) if isinstance(body, dict) else ErrorBody()
        if error.exception_type == RATE_LIMIT_EXCEPTION or status == 429:
            self._count(endpoint, rate_limited=1)
            logger.debug("leadsquared rate limited endpoint=%s status=%d", endpoint.name, status)
            raise _RateLimited(error.exception_message)
        if status == 200:
            if body is None:
                self._count(endpoint, transient_failures=1)
                raise _Transient("HTTP 200 with a body that is not JSON", unknown=True)
            self._count(endpoint, items=item_count)
            return body
        text = self._redact(error.exception_message or (response.text or "")[:300])
        kind: type[LeadSquaredError] | None = {
            401: AuthenticationError,
            400: BadRequestError,
            404: NotFoundError,
        }.get(status)
        if kind is None and status == 500 and error.is_mx_error:
            kind = LeadSquaredAPIError
        if kind is None and (status in _TRANSIENT_STATUSES or status > 500):
            self._count(endpoint, transient_failures=1)
            raise _Transient(f"HTTP {status}", unknown=status not in _NOT_CARRIED_OUT_STATUSES)
        self._count(endpoint, permanent_failures=1)
        raise (kind or LeadSquaredError).for_call(
            endpoint.name,
            status_code=status,
            exception_type=self._redact(error.exception_type) if error.exception_type else None,
            exception_message=text or None,
        )

    # --- helpers ------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1)))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<hidden>")
        return text

    def _count(self, endpoint: Endpoint, **increments: float) -> None:
        with self._stats_lock:
            stats = self._endpoint_stats.setdefault(endpoint.name, EndpointStats())  # any endpoint, of any class
            for field, increment in increments.items():
                setattr(stats, field, getattr(stats, field) + increment)


class _SentBody(io.BytesIO):
    """A call's body that says when it was read to its end: urllib3 reads a body as it writes it,
    so by then the call is sent, and `on_sent` moves its start in the window there at once
    (`AccountBudget.sent`, from the calling thread), before the answer: every process sharing the
    window sees the real start while the call is still in the air."""

    def __init__(self, data: bytes, on_sent: Callable[[float], None]) -> None:
        super().__init__(data)
        self._on_sent = on_sent

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if not chunk:  # a second end read (a rewound send) finds no start left to move
            self._on_sent(time.monotonic())
        return chunk


class _OutcomeUnknown(Exception):
    """A write was sent and not answered; the caller decides how to resolve it."""


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


def _surely_not_sent(error: requests.RequestException) -> bool:
    """True when the request never reached the server (no connection could be made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    if isinstance(error, requests.ConnectionError):
        reason = error.args[0] if error.args else None
        inner = getattr(reason, "reason", None)
        return isinstance(inner, NewConnectionError) or isinstance(reason, NewConnectionError)
    return False


def _describe_network_error(error: requests.RequestException) -> str:
    """A short description without URLs (they carry no keys, but they are noise)."""
    if isinstance(error, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(error, requests.ReadTimeout):
        return "read timeout"
    if _surely_not_sent(error):
        return "connection refused or unreachable"
    if isinstance(error, requests.ConnectionError):
        return "connection dropped"
    return type(error).__name__


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


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
