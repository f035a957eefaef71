"""The account's API rate limit: one sliding-window log shared by every endpoint."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class SlidingWindowLimiter:
    """Admits a call unless `calls` calls were counted in the last `seconds`.

    `calls == 0` turns the limit off. Refused calls take a place in the window only with `count_refused`
    (a profile switch: the pages do not say whether LeadSquared counts them).
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

    def try_acquire(self) -> bool:
        if self.calls == 0:
            return True
        with self._lock:
            now = self._clock()
            while self._admitted and self._admitted[0] <= now - self.seconds:
                self._admitted.popleft()
            if len(self._admitted) >= self.calls:
                if self.count_refused:
                    self._admitted.append(now)
                return False
            self._admitted.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._admitted.clear()
