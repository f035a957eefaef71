"""Reads that lag writes: what GetOpportunitiesById sees when it answers from an index that is
`seconds` behind the account's writes (field reports: "index-backed", "several seconds to propagate")."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # state.py holds a ReadLag
    from lsq_pipeline.sandbox.state import Opportunity


class ReadLag:
    """Each opportunity as it stood `seconds` ago: left out if created since, its earlier version
    (old values, old ModifiedOn) if updated since. Writes and the duplicate rule see the current
    version; only reads lag. With `seconds` = 0 nothing is kept and reads see every write at once."""

    def __init__(self, seconds: float, clock: Callable[[], datetime]):
        self.seconds = seconds
        self.clock = clock
        self._replaced: dict[str, deque[tuple[datetime, Opportunity | None]]] = {}
        """opportunity id -> (when it was replaced, the version replaced; None for a create), oldest first."""

    def clear(self) -> None:
        self._replaced.clear()

    def written(self, before: Opportunity | None, after: Opportunity) -> None:
        """`after` replaced `before` (None: `after` was created) now."""
        if self.seconds <= 0:
            return
        self._replaced.setdefault(after.id, deque()).append((self.clock(), before))
        self._forget(after.id)

    def visible(self, current: Opportunity) -> Opportunity | None:
        """The version a read sees now: the one in force `seconds` ago, or None if it did not exist yet."""
        if current.id not in self._replaced or not self._forget(current.id):
            return current
        return self._replaced[current.id][0][1]

    def _forget(self, opportunity_id: str) -> bool:
        """Drop the replacements older than the lag (reads see past them); True if some are left."""
        horizon = self.clock() - timedelta(seconds=self.seconds)
        replaced = self._replaced[opportunity_id]
        while replaced and replaced[0][0] <= horizon:
            replaced.popleft()
        if not replaced:
            del self._replaced[opportunity_id]
            return False
        return True
