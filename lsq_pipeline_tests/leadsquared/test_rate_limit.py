"""The client-side sliding window: never more than N starts in any window, paced, shared by threads
and processes, and its limit changed in place."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pyrate_limiter import Rate, RateItem

from lsq_pipeline.leadsquared.budget_store import BudgetStore, MemoryStore, SQLiteStore
from lsq_pipeline.leadsquared.rate_limit import SlidingWindow, window_with_margin


def _max_in_any_window(starts: list[float], seconds: float) -> int:
    starts = sorted(starts)
    best = 0
    first = 0
    for last, start in enumerate(starts):
        while starts[first] <= start - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_margin_keeps_at_least_095_of_the_ceiling() -> None:
    assert window_with_margin(5.0) == 5.2
    for seconds in (0.5, 1, 5, 60):
        assert seconds < window_with_margin(seconds) <= seconds / 0.95


def test_many_threads_never_exceed_the_window() -> None:
    window = SlidingWindow(10, 0.5)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            window.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(10)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    assert len(starts) == 30
    assert _max_in_any_window(starts, 0.5) <= 10
    spacing = window.window_seconds / 20  # a window's 10 starts spread over its first half
    assert min(b - a for a, b in zip(sorted(starts), sorted(starts)[1:])) >= spacing - 0.01  # paced, no burst
    assert elapsed < 2 * window.window_seconds + 10 * spacing + 0.5  # 30 starts = 3 windows: waits about two and a half


def test_pause_holds_back_every_caller() -> None:
    window = SlidingWindow(100, 1.0)
    window.pause(0.3)
    waited = window.acquire()
    assert 0.25 <= waited < 0.6


def test_sqlite_window_is_shared_between_instances(tmp_path) -> None:
    db = str(tmp_path / "rate.sqlite")
    first, second = SlidingWindow(4, 0.5, store=SQLiteStore(db)), SlidingWindow(4, 0.5, store=SQLiteStore(db))
    try:
        began = time.monotonic()
        for _ in range(2):
            first.acquire()
            second.acquire()
        first.acquire()  # the shared budget of 4 is spent: waits for the first start to leave the window
        assert time.monotonic() - began >= 0.5
    finally:
        first.close()
        second.close()


def _spend(db_path: str, count: int, out: str) -> None:
    window = SlidingWindow(6, 0.5, store=SQLiteStore(db_path))
    starts = []
    for _ in range(count):
        window.acquire()
        starts.append(time.time())
    window.close()
    with open(out, "w") as handle:
        handle.write("\n".join(map(repr, starts)))


def test_sqlite_window_is_shared_between_processes(tmp_path) -> None:
    import multiprocessing

    db = str(tmp_path / "rate.sqlite")
    context = multiprocessing.get_context("fork")
    outs = [str(tmp_path / f"starts{n}.txt") for n in range(3)]
    processes = [context.Process(target=_spend, args=(db, 6, out)) for out in outs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    starts = [float(line) for out in outs for line in open(out).read().split()]
    assert len(starts) == 18
    assert _max_in_any_window(starts, 0.5) <= 6


def test_set_limit_keeps_the_log_of_starts() -> None:
    window = SlidingWindow(20, 1.0)
    for _ in range(3):
        window.acquire()
    window.set_limit(3, 1.0)  # the three starts already made fill the new limit
    assert (window.calls, window.seconds) == (3, 1.0)
    assert window.acquire() >= 0.9


def check_move_start(store: BudgetStore) -> None:
    """One start of three moves later, the log stays in order (for every store)."""
    bucket = store.window_bucket("general", [Rate(3, 10_000)])
    for timestamp in (100, 200, 300):
        assert bucket.put(RateItem("lsq", timestamp))
    store.move_start(bucket, 100, 250)
    store.move_start(bucket, 150, 400)  # no start there: nothing moves
    assert [bucket.peek(index).timestamp for index in range(3)] == [300, 250, 200]


@pytest.fixture(params=["memory", "sqlite"])
def local_store(request, tmp_path) -> Iterator[BudgetStore]:
    """Each store kept on this machine (Redis has its own tests)."""
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "rate.sqlite")
    yield store
    store.close()


def test_a_start_moves_later_in_the_log(local_store) -> None:
    check_move_start(local_store)


def test_a_call_sent_late_holds_the_window_from_its_send(local_store) -> None:
    window = SlidingWindow(1, 0.5, store=local_store, safety_margin=False)
    window.acquire()
    time.sleep(0.3)  # held up between its start and its send
    window.sent(time.monotonic())
    assert window.acquire() >= 0.45  # a window from the send, not 0.2 s from the start
