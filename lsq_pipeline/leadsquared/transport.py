"""`Transport`: the plumbing every LeadSquared call goes through, one account at a time: the HTTP
session, a thread pool per rate class, the account's budget, the counters, and one call with its
retries.

Retry rules:
- a 429, or a 200 with `MXAPIRateLimitExceededException`: nothing was written; the class's
  window learns the limit the message names (if lower), every call of the class pauses one
  window, then the call is sent again (counted as `rate_limited`); a refusal for the day
  raises `DailyBudgetExhausted`, as does the client's own daily count;
- 401, 400, 404, a 500 with an `MX...` body: permanent, raised as a typed error, never retried;
- timeouts, dropped connections, a 500 without an MX body, 502/503/504: transient, retried with
  exponential backoff and full jitter, up to `max_retries` times, unless the caller asks not to
  re-send a call the server may have carried out (`OutcomeUnknown`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Self, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from lsq_pipeline.leadsquared.budget import AccountBudget, account_limits, utc_today
from lsq_pipeline.leadsquared.budget_store import BudgetStore, MemoryStore, RedisStore, SQLiteStore
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
    ENDPOINTS,
    RATE_LIMIT_EXCEPTION,
    ClientStats,
    Endpoint,
    EndpointStats,
    ErrorBody,
)

logger = logging.getLogger(__name__)

_TRANSIENT_STATUSES = {500, 502, 503, 504}
_NOT_CARRIED_OUT_STATUSES = {503}
"""Transient answers after which the server surely wrote nothing (service unavailable)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    """A usable answer: the parsed JSON body."""

    body: Any


class OutcomeUnknown(Exception):
    """A write was sent and not answered; the caller decides how to resolve it."""


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


class Transport:
    """A thread-safe connection to one LeadSquared account (one host, one key pair), kept within
    the account's limits; `LeadSquaredClient` puts the endpoints on it."""

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

    # --- observability and lifetime -------------------------------------------------------------

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.base_url!r}, keys=<hidden>, max_in_flight={self.max_in_flight}, "
                f"budget={self.budget!r})")

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds credentials and a connection pool; it is not picklable")

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
    def _call(
        self,
        endpoint: Endpoint,
        body: Any,
        params: dict[str, str],
        item_count: int,
        *,
        resend_unknown: bool,
        attempts_used: int = 0,
    ) -> Answer:
        """POST one call until it gets a usable answer, a permanent error, or runs out of retries.

        `resend_unknown=False`: a transient failure after which the server may have carried the
        call out raises `OutcomeUnknown` instead of re-sending.
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
                return Answer(body_out)
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
                    raise OutcomeUnknown(failure.reason) from None
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

