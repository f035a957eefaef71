"""Progress of a running push, logged every ~10 s: records done and left per action, each rate
window's use against its ceiling, an ETA and the calls LeadSquared refused (429).

A 15-minute first sync should not be silent until it ends; a push shorter than one interval
logs nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lsq_pipeline.leadsquared import ClientStats, LeadSquaredClient
from lsq_pipeline.leadsquared.models import ENDPOINTS

REPORT_EVERY_SECONDS = 10.0
ACTIONS = ("leads", "creates", "updates", "activities")
"""`leads`: leads sent in bulk (not records); the other three are records or activities."""


class PushProgress:
    """Counters of one push per action (thread safe), and a reporter that logs them."""

    def __init__(self, client: LeadSquaredClient, log: Callable[[str], None], every: float = REPORT_EVERY_SECONDS) -> None:
        self.client = client
        self.log = log
        self.every = every
        self._lock = threading.Lock()
        self._planned = dict.fromkeys(ACTIONS, 0)
        self._done = dict.fromkeys(ACTIONS, 0)
        self._started = time.monotonic()
        self._first_stats = client.stats()
        self._last = (self._started, 0, self._first_stats)

    def plan(self, action: str, count: int) -> None:
        with self._lock:
            self._planned[action] += count

    def done(self, action: str, count: int = 1) -> None:
        with self._lock:
            self._done[action] += count

    @contextmanager
    def reporting(self) -> Iterator[PushProgress]:
        """Log a progress line every `every` seconds while the block runs."""
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(self.every):
                self.log(self.line())

        reporter = threading.Thread(target=report, name="lsq-push-progress", daemon=True)
        reporter.start()
        try:
            yield self
        finally:
            stop.set()
            reporter.join()

    def line(self) -> str:
        """One progress line, e.g. `push 40 s: creates 1,250 done, 3,750 left; ...; ETA 4 min 8 s`."""
        now = time.monotonic()
        stats = self.client.stats()
        with self._lock:
            planned, done = dict(self._planned), dict(self._done)
        records_done = sum(done[a] for a in ACTIONS if a != "leads")
        records_left = sum(max(planned[a] - done[a], 0) for a in ACTIONS if a != "leads")
        since, records_before, stats_before = self._last
        self._last = (now, records_done, stats)
        seconds = max(now - since, 1e-9)
        rate = (records_done - records_before) / seconds
        actions = ", ".join(
            f"{action} {done[action]:,} done, {max(planned[action] - done[action], 0):,} left"
            for action in ACTIONS
            if planned[action]
        )
        windows = "; ".join(
            _window_use(rate_class, stats_before, stats, seconds, self.client.rate_ceiling(rate_class))
            for rate_class in sorted({endpoint.rate_class for endpoint in ENDPOINTS})
        )
        eta = _duration(records_left / rate) if rate > 0 else "unknown"
        refused = stats.rate_limited - self._first_stats.rate_limited
        return (
            f"push {now - self._started:,.0f} s: {actions or 'nothing planned'}; {rate:,.1f} records/s; "
            f"{windows}; ETA {eta}; refused calls (429) {refused}"
        )


def _window_use(rate_class: str, before: ClientStats, after: ClientStats, seconds: float, ceiling: float | None) -> str:
    """`general 4.9 calls/s of 5.0 (98%)`: the calls of one rate class over the last interval."""
    names = [endpoint.name for endpoint in ENDPOINTS if endpoint.rate_class == rate_class]
    calls = sum(after.per_endpoint[name].calls - before.per_endpoint[name].calls for name in names)
    rate = calls / seconds
    if not ceiling:
        return f"{rate_class} {rate:.1f} calls/s (no limit)"
    return f"{rate_class} {rate:.1f} calls/s of {ceiling:.1f} ({rate / ceiling:.0%})"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
