"""One class of the account's rate limit on the client side: a sliding log of call starts.

LeadSquared counts call arrivals per account in a sliding window ("25 in 5 seconds"). The
window here is the same sliding log, a little longer (`safety_margin`) so that jitter between
the client's send and the server's arrival never trips the server, and paced: starts are at
least window / (2 x calls) apart, so that a client that believes a limit higher than the
account's learns the real one from the first refusal instead of a whole burst of them. The log is a
pyrate-limiter bucket given by a `BudgetStore` (in memory, SQLite or Redis), so that every
process sharing the store shares the window.

A start is logged when the window grants it, then moved to the time the call was really sent
(`sent`): between the two, a thread can stall for longer than the margin (the store's round
trips, the GIL, a busy CPU; 90-170 ms seen on a loaded 2-core machine), and a start logged that
much before its call left would let the call a window later reach the server inside its window.
The move is made as soon as the body is written (before the answer), so every process sharing the
window sees the real start while the call is in the air.

pyrate-limiter's own blocking `Limiter.try_acquire` is not used: while it waits it advances the
item's timestamp by the planned sleep instead of reading the clock, so a late wake-up records a
start earlier than the real one and the server can count one call more than the client did.
`SlidingWindow.acquire` asks the bucket without blocking, with a fresh timestamp each time,
and sleeps for the wait the bucket computes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyrate_limiter import Rate, RateItem

if TYPE_CHECKING:
    from lsq_pipeline.leadsquared.budget_store import BudgetStore

_ITEM_NAME = "lsq"
_YIELD_MS = 5
"""How long a caller steps back while a `first` caller waits for its start."""
_LEAK_EVERY = 64
"""Drop expired entries from the log every this many admitted calls."""


def window_with_margin(seconds: float, margin_fraction: float = 0.04, margin_min: float = 0.2) -> float:
    """The client's window: the server's plus max(4 %, 200 ms), capped at 5 % of the window.

    At 25 calls / 5 s this is 5.2 s, i.e. 0.96 of the ceiling. The margin absorbs the difference
    between two calls' delays from send to the server's count: 100 ms was not enough for two
    machines sharing one Redis window on a loaded 2-core CI machine (2 refusals in 77 calls).
    """
    margin = max(seconds * margin_fraction, margin_min)
    return seconds + min(margin, seconds * 0.05)  # 1 / 1.05 > 0.95 of the ceiling


PACE_FACTOR = 2
"""Starts go at most this many times the window's average rate: the first window takes half of it."""


def paced_rates(calls: int, window_seconds: float) -> list[Rate]:
    """`calls` per window, and starts at least window / (calls x PACE_FACTOR) apart.

    The ceiling is the window's; the pacing only spreads a window's starts over half of it, so a
    client that believes too high a limit is refused once, not once per call of a burst. The
    spacing rounds down: pyrate-limiter wants the shorter rate no stricter than the longer.
    """
    window_ms = max(1, round(window_seconds * 1000))
    spacing_ms = window_ms // (calls * PACE_FACTOR)
    if calls == 1 or spacing_ms < 1:
        return [Rate(calls, window_ms)]
    return [Rate(1, spacing_ms), Rate(calls, window_ms)]


class SlidingWindow:
    """At most `calls` call starts in any window of `seconds` (+ safety margin). Thread safe.

    `acquire()` blocks until a start is allowed and returns the seconds it waited; `sent(at)`,
    from the same thread, moves that start to when the call was really sent.
    `pause(seconds)` holds back every caller (the server refused a call: another client of the
    account is spending the budget). `set_limit(calls, seconds)` changes the limit in place,
    keeping the log (a limit learned from the server's refusal).
    """

    def __init__(
        self,
        calls: int,
        seconds: float,
        *,
        store: BudgetStore | None = None,
        rate_class: str = "general",
        safety_margin: bool = True,
    ) -> None:
        if calls < 1 or seconds <= 0:
            raise ValueError("rate limit needs calls >= 1 and seconds > 0")
        if store is None:
            from lsq_pipeline.leadsquared.budget_store import MemoryStore

            store = MemoryStore()
        self.rate_class = rate_class
        self.safety_margin = safety_margin
        self.store = store
        self._lock = threading.Lock()
        self._paused_until = 0.0  # time.monotonic()
        self._admitted = 0
        self._first_waiting = 0
        self._granted = threading.local()  # ms: the start this thread was granted last, not yet sent
        self.calls, self.seconds = calls, seconds
        self.window_seconds = self._window(seconds)
        self._bucket = store.window_bucket(rate_class, paced_rates(calls, self.window_seconds))

    def _window(self, seconds: float) -> float:
        return window_with_margin(seconds) if self.safety_margin else seconds

    def set_limit(self, calls: int, seconds: float) -> None:
        """Use `calls` in `seconds` from now on, on the same log of starts."""
        with self._lock:
            if (calls, seconds) == (self.calls, self.seconds):
                return
            self.calls, self.seconds = calls, seconds
            self.window_seconds = self._window(seconds)
            self._bucket.rates = paced_rates(calls, self.window_seconds)

    def acquire(self, first: bool = False) -> float:
        """Block until one more call may start now; record it; return the seconds waited.

        `first`: ahead of every caller that is not (a bulk call's general start: the bulk start
        it waited for is not lost to a queue of general calls)."""
        if not first:
            return self._wait(self._take_start)
        with self._lock:
            self._first_waiting += 1
        try:
            return self._wait(lambda now_ms: self._take_start(now_ms, first=True))
        finally:
            with self._lock:
                self._first_waiting -= 1

    def sent(self, at: float) -> None:
        """The call of this thread's last start was sent at `at` (`time.monotonic()`): its start moves there."""
        granted_ms = getattr(self._granted, "ms", None)
        self._granted.ms = None
        if granted_ms is None:
            return
        with self._lock, self.store.window_lock(self.rate_class, self._bucket):
            sent_ms = self._bucket.now() - int((time.monotonic() - at) * 1000)  # rounded later, never earlier
            if sent_ms > granted_ms:
                self.store.move_start(self._bucket, granted_ms, sent_ms)

    def wait_until_free(self) -> float:
        """Block until a start would be admitted now, without taking one; the seconds waited."""
        return self._wait(self._free_in)

    def _wait(self, wait_ms_at: Callable[[int], int]) -> float:
        """Sleep until `wait_ms_at(now_ms)`, asked under the locks (this process's and the store's,
        so processes sharing the window never miss each other's starts) with a fresh clock each
        time, answers 0 or less; the seconds waited."""
        started = time.monotonic()
        while True:
            pause_left = self._paused_until - time.monotonic()
            if pause_left > 0:
                time.sleep(pause_left)
                continue
            with self._lock, self.store.window_lock(self.rate_class, self._bucket):
                wait_ms = wait_ms_at(self._bucket.now())
                window_seconds = self.window_seconds
            if wait_ms <= 0:
                return time.monotonic() - started
            # Sleep outside the lock; +1 ms so the oldest start has surely left the window.
            time.sleep(min(wait_ms + 1, window_seconds * 1000) / 1000)

    def _take_start(self, now_ms: int, first: bool = False) -> int:
        """Record a start at `now_ms` if the window admits it (0); else the ms to wait (> 0)."""
        if self._first_waiting and not first:
            return _YIELD_MS
        decision = self._bucket.put_decision(RateItem(_ITEM_NAME, now_ms))
        if decision.allowed:
            self._granted.ms = now_ms
            self._admitted += 1
            if self._admitted % _LEAK_EVERY == 0:
                self._bucket.leak(now_ms)
            return 0
        wait_ms = decision.retry_after_ms
        if wait_ms is None:
            wait_ms = self._bucket.waiting(RateItem(_ITEM_NAME, now_ms))
        return max(wait_ms, 1)

    def _free_in(self, now_ms: int) -> int:
        """The ms until the window would admit a start, from the starts that block it (a peek)."""
        wait_ms = 0
        for rate in self._bucket.rates:
            blocking = self._bucket.peek(rate.limit - 1)  # the limit-th latest start
            if blocking is not None:
                wait_ms = max(wait_ms, blocking.timestamp + rate.interval - now_ms)
        return wait_ms

    def pause(self, seconds: float) -> None:
        """Hold back every call of this process for `seconds` from now (extends, never shortens)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def close(self) -> None:
        self._bucket.close()

    def __repr__(self) -> str:
        return (
            f"SlidingWindow({self.rate_class}: {self.calls} calls / {self.seconds:g} s, "
            f"window {self.window_seconds:g} s, {self.store!r})"
        )
