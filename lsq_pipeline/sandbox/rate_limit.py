"""The account's API budget as LeadSquared enforces it: a sliding window per rate class and a daily count.

Rate classes: the "Bulk APIs" of LeadSquared's rate-limits page (here the lead bulk routes) are
`bulk`; every other route is `general`. A bulk call also counts against the general window
when `bulk_counts_against_general` (the pages do not say; the default is the safe side). The
daily count covers every class and restarts with `new_day()` (`POST /sandbox/day`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from lsq_pipeline.sandbox.exceptions import MXAPIRateLimitExceededException

BULK_ROUTES = frozenset({"LeadBulkCreate", "LeadBulkCreateOrUpdate"})
"""Route names in LeadSquared's "Bulk APIs" class; every other route is `general`."""

PLANS: dict[str, tuple[int, int, int]] = {
    "lite": (2, 1, 34_560),
    "pro": (5, 1, 86_400),
    "super": (10, 1, 172_800),
    "basic": (10, 1, 172_800),
    "standard": (15, 1, 259_200),
    "enterprise": (25, 1, 432_000),
}
"""The older table of LeadSquared's rate-limits page: general calls / 5 s, bulk calls / 5 s, calls a day."""
PLAN_SECONDS = 5.0


def rate_class_of(route: str) -> str:
    return "bulk" if route in BULK_ROUTES else "general"


class SlidingWindowLimiter:
    """Admits a call unless `calls` calls were counted in the last `seconds`.

    `calls == 0` turns the limit off. `record()` logs a call without asking (a refused call
    that still counts, or a bulk call counted against the general window). Refused calls take
    a place in the window only with `count_refused` (a profile switch: the pages do not say
    whether LeadSquared counts them).
    """

    def __init__(self, calls: int, seconds: float, clock: Callable[[], float] = time.monotonic,
                 count_refused: bool = False):
        if calls < 0 or seconds <= 0:
            raise ValueError("rate limit needs calls >= 0 and seconds > 0")
        self.calls = calls
        self.seconds = seconds
        self.count_refused = count_refused
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def _forget_old(self, now: float) -> None:
        while self._admitted and self._admitted[0] <= now - self.seconds:
            self._admitted.popleft()

    def has_room(self) -> bool:
        if self.calls == 0:
            return True
        with self._lock:
            self._forget_old(self._clock())
            return len(self._admitted) < self.calls

    def record(self) -> None:
        if self.calls == 0:
            return
        with self._lock:
            self._admitted.append(self._clock())

    def try_acquire(self) -> bool:
        if self.calls == 0:
            return True
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            if len(self._admitted) >= self.calls:
                if self.count_refused:
                    self._admitted.append(now)
                return False
            self._admitted.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._admitted.clear()


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: `reason` is "window" or "daily"; `error` is the answer to send."""

    rate_class: str
    reason: str
    error: MXAPIRateLimitExceededException


class AccountLimiter:
    """The windows of both classes and the daily count; counts what it refuses, per class and reason.

    Refused calls do not count against a window (nor the day) unless `counts_refused` (the
    profile's `refused_calls_count` switch, or `SandboxOptions.rate_limit_refused_count`).
    """

    def __init__(
        self,
        general: tuple[int, float],
        bulk: tuple[int, float],
        daily_limit: int = 0,
        *,
        bulk_counts_against_general: bool = True,
        counts_refused: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        if daily_limit < 0:
            raise ValueError("daily limit needs calls >= 0")
        self.windows = {
            "general": SlidingWindowLimiter(*general, clock=clock),
            "bulk": SlidingWindowLimiter(*bulk, clock=clock),
        }
        self.daily_limit = daily_limit
        self.bulk_counts_against_general = bulk_counts_against_general
        self.counts_refused = counts_refused
        self._lock = threading.Lock()
        self._calls_today = 0
        self._refused: Counter[tuple[str, str]] = Counter()

    def admit(self, route: str) -> Refusal | None:
        """Admit a call of `route` (and count it), or say why not."""
        rate_class = rate_class_of(route)
        windows = [self.windows[rate_class]]
        if rate_class == "bulk" and self.bulk_counts_against_general:
            windows.append(self.windows["general"])
        with self._lock:
            if self.daily_limit and self._calls_today >= self.daily_limit:
                return self._refuse(rate_class, "daily", MXAPIRateLimitExceededException.daily(self.daily_limit), [])
            full = next((window for window in windows if not window.has_room()), None)
            if full is not None:
                error = MXAPIRateLimitExceededException(full.calls, full.seconds)
                return self._refuse(rate_class, "window", error, windows)
            for window in windows:
                window.record()
            self._calls_today += 1
            return None

    def _refuse(self, rate_class: str, reason: str, error, windows: list[SlidingWindowLimiter]) -> Refusal:
        self._refused[(rate_class, reason)] += 1
        if self.counts_refused:
            for window in windows:
                window.record()
            self._calls_today += 1
        return Refusal(rate_class, reason, error)

    def new_day(self) -> None:
        """Start a new day: the daily count restarts; windows and counters stay."""
        with self._lock:
            self._calls_today = 0

    def reset(self) -> None:
        with self._lock:
            self._calls_today = 0
            self._refused.clear()
            for window in self.windows.values():
                window.reset()

    def as_dict(self) -> dict:
        """For `/sandbox/stats`: refused calls per class and reason, and the day's count."""
        with self._lock:
            refused = {
                rate_class: {reason: self._refused[(rate_class, reason)] for reason in ("window", "daily")}
                for rate_class in self.windows
            }
            return {"Refused": refused, "CallsToday": self._calls_today, "DailyLimit": self.daily_limit}
