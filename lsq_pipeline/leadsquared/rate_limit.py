"""The account's rate limit on the client side: a sliding log of call starts, shared by threads.

LeadSquared counts call arrivals per account in a sliding window ("25 in 5 seconds"). The
window here is the same sliding log, a little longer (`safety_margin`) so that jitter between
the client's send and the server's arrival never trips the server. The log is a
pyrate-limiter bucket: in memory (one budget per process), or a SQLite file with a file lock
(`db_path`: one budget shared by every process that names the same file).

pyrate-limiter's own blocking `Limiter.try_acquire` is not used: while it waits it advances the
item's timestamp by the planned sleep instead of reading the clock, so a late wake-up records a
start earlier than the real one and the server can count one call more than the client did.
`SlidingWindow.acquire` asks the bucket without blocking, with a fresh timestamp each time,
and sleeps for the wait the bucket computes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pyrate_limiter import InMemoryBucket, Rate, RateItem, SQLiteBucket

_ITEM_NAME = "lsq"
_LEAK_EVERY = 64
"""Drop expired entries from the log every this many admitted calls."""


def window_with_margin(seconds: float, margin_fraction: float = 0.02, margin_min: float = 0.1) -> float:
    """The client's window: the server's plus max(2 %, 100 ms), capped at 5 % of the window.

    At 25 calls / 5 s this is 5.1 s, i.e. 0.98 of the ceiling.
    """
    margin = max(seconds * margin_fraction, margin_min)
    return seconds + min(margin, seconds * 0.05)  # 1 / 1.05 > 0.95 of the ceiling


class SlidingWindow:
    """At most `calls` call starts in any window of `seconds` (+ safety margin). Thread safe.

    `acquire()` blocks until a start is allowed and returns the seconds it waited.
    `pause(seconds)` holds back every caller (the server refused a call: another client of the
    account is spending the budget).
    """

    def __init__(
        self,
        calls: int,
        seconds: float,
        *,
        db_path: str | None = None,
        safety_margin: bool = True,
    ) -> None:
        if calls < 1 or seconds <= 0:
            raise ValueError("rate limit needs calls >= 1 and seconds > 0")
        self.calls = calls
        self.seconds = seconds
        self.window_seconds = window_with_margin(seconds) if safety_margin else seconds
        self.db_path = db_path
        rates = [Rate(calls, max(1, round(self.window_seconds * 1000)))]
        if db_path:
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            table = f"lsq_window_{calls}_{rates[0].interval}"
            self._bucket: InMemoryBucket | SQLiteBucket = SQLiteBucket.init_from_file(
                rates, table=table, db_path=db_path, use_file_lock=True
            )
        else:
            self._bucket = InMemoryBucket(rates)
        self._lock = threading.Lock()
        self._paused_until = 0.0  # time.monotonic()
        self._admitted = 0

    def acquire(self) -> float:
        """Block until one more call may start now; record it; return the seconds waited."""
        started = time.monotonic()
        while True:
            pause_left = self._paused_until - time.monotonic()
            if pause_left > 0:
                time.sleep(pause_left)
                continue
            with self._lock:
                now_ms = self._bucket.now()
                decision = self._bucket.put_decision(RateItem(_ITEM_NAME, now_ms))
                if decision.allowed:
                    self._admitted += 1
                    if self._admitted % _LEAK_EVERY == 0:
                        self._bucket.leak(now_ms)
                    return time.monotonic() - started
                wait_ms = decision.retry_after_ms
                if wait_ms is None:
                    wait_ms = self._bucket.waiting(RateItem(_ITEM_NAME, now_ms))
            # Sleep outside the lock; +1 ms so the oldest start has surely left the window.
            time.sleep(min(max(wait_ms, 1) + 1, self.window_seconds * 1000) / 1000)

    def pause(self, seconds: float) -> None:
        """Hold back every call of this process for `seconds` from now (extends, never shortens)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def close(self) -> None:
        self._bucket.close()

    def __repr__(self) -> str:
        shared = f", db_path={self.db_path!r}" if self.db_path else ""
        return f"SlidingWindow({self.calls} calls / {self.seconds:g} s, window {self.window_seconds:g} s{shared})"
