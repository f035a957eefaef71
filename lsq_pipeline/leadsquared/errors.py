"""Typed errors of the LeadSquared client.

Messages name the endpoint, the HTTP status, the `MX...` exception type and message; they never
carry the access or secret key (the client sends keys in headers and redacts them from any
text it puts in an error).
"""

from __future__ import annotations

from typing import Any


class LeadSquaredError(Exception):
    """Base of every error the client raises.

    `results`: when a method sent several calls and one failed permanently, the per-item
    results of the calls that did get an answer (`None` for the items of failed calls), so
    that records already created are never lost.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status_code: int | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.results: list[Any] | None = None

    @classmethod
    def for_call(
        cls,
        endpoint: str,
        *,
        status_code: int | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
        detail: str | None = None,
    ) -> "LeadSquaredError":
        """Build the error with its standard message: `endpoint: HTTP 500 MXType: message`."""
        parts = [f"{endpoint}:"]
        if status_code is not None:
            parts.append(f"HTTP {status_code}")
        if exception_type:
            parts.append(f"{exception_type}:")
        parts.append(exception_message or detail or "no message")
        return cls(
            " ".join(parts),
            endpoint=endpoint,
            status_code=status_code,
            exception_type=exception_type,
            exception_message=exception_message,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthenticationError(LeadSquaredError):
    """HTTP 401: the access key or secret key is wrong or missing. Never retried."""


class BadRequestError(LeadSquaredError):
    """HTTP 400: the body is not what the API expects (shape, encoding). Never retried."""


class NotFoundError(LeadSquaredError):
    """HTTP 404: unknown API path (wrong host or version). Never retried."""


class LeadSquaredAPIError(LeadSquaredError):
    """HTTP 500 with an `MX...` body: a business or validation error. Never retried."""


class RateLimitedError(LeadSquaredError):
    """The account's rate limit kept refusing a call after the configured number of pauses."""


class TransientError(LeadSquaredError):
    """Timeouts, dropped connections, 5xx without an MX body: still failing after every retry."""


class DailyBudgetExhausted(LeadSquaredError):
    """The account's calls for the day are spent: the client's daily count (`LSQ_DAILY_CALL_LIMIT`)
    is reached, or LeadSquared refused a call for the day. Nothing of the refused call was
    written; send the rest after 00:00 UTC. Never retried."""
