"""The account's API budget as LeadSquared enforces it: a sliding window per rate class and a daily count.

Rate classes: the "Bulk APIs" of LeadSquared's rate-limits page are `bulk`, every other route
`general`, as the routing table (`routes.py`) says for each route. A bulk call also counts against the general window
when `bulk_counts_against_general` (the pages do not say; the default is the safe side). The
daily count covers every class and restarts with `new_day()` (`POST /sandbox/day`).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from lsq_pipeline.sandbox.exceptions import MXAPIRateLimitExceededException
from lsq_pipeline.sandbox.routes import BULK_ROUTES

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
    """The rate class of the API call named `route`."""
    return "bulk" if route in BULK_ROUTES else "general"


class SlidingWindowLimiter:
    """Admits a call unless `calls` calls were counted in the last `seconds`.

    `calls == 0` turns the limit off. `record()` logs a call without asking (a refused call
    that still counts, or a bulk call counted against the general window). Refused calls take
    a place in the window only with `count_refused` (a profile switch: the pages do not say
    whether LeadSquared counts them).

    Each method takes the call's arrival time `at` (default: the clock now). Calls may be asked
    about out of their arrival order (threads), so the log is kept sorted and a call is admitted
    when every window of `seconds` that holds it, before or after calls already logged, has room.
    """

    def __init__(self, calls: int, seconds: float, clock: Callable[[], float] = time.monotonic,
                 count_refused: bool = False):
        if calls < 0 or seconds <= 0:
            raise ValueError("rate limit needs calls >= 0 and seconds > 0")
        self.calls = calls
        self.seconds = seconds
        self.count_refused = count_refused
        self._clock = clock
        self._admitted: list[float] = []
        self._lock = threading.Lock()

    def _in_window(self, at: float) -> int:
        """The most calls in one window of `seconds` that would also hold a call at `at`: windows
        ending at `at` or at a call logged after it (asked about first) less than `seconds` later.
        Forgets calls no window can count any more (one more second for calls asked about late)."""
        log = self._admitted
        del log[:bisect_right(log, at - self.seconds - 1.0)]
        ends = [at, *log[bisect_right(log, at):bisect_left(log, at + self.seconds)]]
        return max(bisect_right(log, end) - bisect_right(log, end - self.seconds) for end in ends)

    def has_room(self, at: float | None = None) -> bool:
        if self.calls == 0:
            return True
        with self._lock:
            return self._in_window(self._clock() if at is None else at) < self.calls

    def record(self, at: float | None = None) -> None:
        if self.calls == 0:
            return
        with self._lock:
            insort(self._admitted, self._clock() if at is None else at)

    def try_acquire(self, at: float | None = None) -> bool:
        if self.calls == 0:
            return True
        with self._lock:
            at = self._clock() if at is None else at
            full = self._in_window(at) >= self.calls
            if not full or self.count_refused:
                insort(self._admitted, at)
            return not full

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

    def admit(self, route: str, at: float | None = None) -> Refusal | None:
        """Admit a call of `route` that arrived at `at` (`time.monotonic()`, default now) and count it,
        or say why not."""
        rate_class = rate_class_of(route)
        windows = [self.windows[rate_class]]
        if rate_class == "bulk" and self.bulk_counts_against_general:
            windows.append(self.windows["general"])
        with self._lock:
            if self.daily_limit and self._calls_today >= self.daily_limit:
                return self._refuse(rate_class, "daily", MXAPIRateLimitExceededException.daily(self.daily_limit), [])
            full = next((window for window in windows if not window.has_room(at)), None)
            if full is not None:
                error = MXAPIRateLimitExceededException(full.calls, full.seconds)
                return self._refuse(rate_class, "window", error, windows, at)
            for window in windows:
                window.record(at)
            self._calls_today += 1
            return None

    def _refuse(self, rate_class: str, reason: str, error, windows: list[SlidingWindowLimiter],
                at: float | None = None) -> Refusal:
        self._refused[(rate_class, reason)] += 1
        if self.counts_refused:
            for window in windows:
                window.record(at)
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
