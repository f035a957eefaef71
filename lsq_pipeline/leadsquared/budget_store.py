"""Where the account's budget is kept, so that every process spending it sees the same one.

A store holds, per rate class, the window's log of call starts (a pyrate-limiter bucket), the
limit learned from the server's refusal, and the count of calls per UTC day:
- `MemoryStore`: this process only;
- `SQLiteStore`: every process of the machine that names the same file, one budget per account
  in it (several accounts may share one file);
- `RedisStore`: every process on every machine that names the same Redis (pyrate-limiter's
  Redis bucket for the windows; a Lua script for the daily count, which a sliding rate of
  pyrate-limiter cannot express: the day is a calendar day, UTC).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from bisect import bisect_left, insort
from contextlib import AbstractContextManager, nullcontext
from operator import attrgetter
from pathlib import Path

from pyrate_limiter import AbstractBucket, InMemoryBucket, Rate, RateItem, RedisBucket, SQLiteBucket

from lsq_pipeline.extras import require

LEARNED_LIMIT_SECONDS = 24 * 3600
"""A limit learned from a refusal holds this long (a plan can be raised; the next refusal teaches again)."""
_NO_DAILY_LIMIT = 10**15
"""The daily count still counts when no daily limit is set; this stands for "no limit"."""
_DAY_KEY_SECONDS = 3 * 24 * 3600
"""Redis keeps a day's count this long, then drops it."""


class BudgetStore(ABC):
    """Windows, learned limits and daily counts of one account."""

    @abstractmethod
    def window_bucket(self, rate_class: str, rates: list[Rate]) -> AbstractBucket:
        """The log of call starts of `rate_class`, checked against `rates`."""

    def window_lock(self, rate_class: str, bucket: AbstractBucket) -> AbstractContextManager[object]:
        """Held by one process at a time around reading the clock and putting a start in the log.

        pyrate-limiter's buckets take the timestamp from the caller: a process that read the
        clock, then waited (for the file lock, for the CPU), would check the log without the
        starts other processes put in meanwhile, and overfill the window.
        """
        return nullcontext()

    @abstractmethod
    def move_start(self, bucket: AbstractBucket, from_ms: int, to_ms: int) -> None:
        """Move one start logged at `from_ms` to `to_ms`, when its call was sent (later); called under
        `window_lock`. No start at `from_ms` (left the log): nothing moves."""

    @abstractmethod
    def count_call(self, day: str, limit: int | None) -> bool:
        """Count one call on `day` (YYYY-MM-DD, UTC) unless `limit` calls were counted already; True if counted."""

    @abstractmethod
    def calls_on(self, day: str) -> int:
        """Calls counted on `day`."""

    @abstractmethod
    def learned_limit(self, rate_class: str) -> tuple[int, float] | None:
        """(calls, seconds) learned for `rate_class` in the last `LEARNED_LIMIT_SECONDS`, if any."""

    @abstractmethod
    def learn_limit(self, rate_class: str, calls: int, seconds: float) -> None:
        """Remember the limit the server named for `rate_class`, for every process of the store."""

    def close(self) -> None:
        """Release connections."""


class MemoryStore(BudgetStore):
    """One process's budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._daily: dict[str, int] = {}
        self._learned: dict[str, tuple[int, float, float]] = {}

    def window_bucket(self, rate_class: str, rates: list[Rate]) -> AbstractBucket:
        return InMemoryBucket(rates)

    def move_start(self, bucket: AbstractBucket, from_ms: int, to_ms: int) -> None:
        assert isinstance(bucket, InMemoryBucket)
        timestamp = attrgetter("timestamp")
        index = bisect_left(bucket.items, from_ms, key=timestamp)
        if index < len(bucket.items) and bucket.items[index].timestamp == from_ms:
            moved = bucket.items.pop(index)
            insort(bucket.items, RateItem(moved.name, to_ms), key=timestamp)  # the log stays sorted

    def count_call(self, day: str, limit: int | None) -> bool:
        with self._lock:
            used = self._daily.get(day, 0)
            if limit is not None and used >= limit:
                return False
            self._daily[day] = used + 1
            return True

    def calls_on(self, day: str) -> int:
        with self._lock:
            return self._daily.get(day, 0)

    def learned_limit(self, rate_class: str) -> tuple[int, float] | None:
        with self._lock:
            learned = self._learned.get(rate_class)
        if learned is None or learned[2] < time.time() - LEARNED_LIMIT_SECONDS:
            return None
        return learned[0], learned[1]

    def learn_limit(self, rate_class: str, calls: int, seconds: float) -> None:
        with self._lock:
            self._learned[rate_class] = (calls, seconds, time.time())

    def __repr__(self) -> str:
        return "MemoryStore()"


class SQLiteStore(BudgetStore):
    """Shared by the processes of one machine through a SQLite file (and its `.lock` file); the
    rows of each account are kept apart by `account` (a digest of host and access key)."""

    def __init__(self, db_path: str | Path, account: str = "default") -> None:
        self.db_path = str(db_path)
        self.account = account
        Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._buckets: list[SQLiteBucket] = []
        self._conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS lsq_account_daily_calls "
                "(account TEXT NOT NULL, day TEXT NOT NULL, calls INTEGER NOT NULL, PRIMARY KEY (account, day))"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS lsq_account_learned_limits (account TEXT NOT NULL, rate_class TEXT NOT NULL, "
                "calls INTEGER NOT NULL, seconds REAL NOT NULL, learned_at REAL NOT NULL, PRIMARY KEY (account, rate_class))"
            )

    def window_bucket(self, rate_class: str, rates: list[Rate]) -> AbstractBucket:
        bucket = SQLiteBucket.init_from_file(rates, table=f"lsq_window_{self.account}_{rate_class}", db_path=self.db_path, use_file_lock=True)
        self._buckets.append(bucket)
        return bucket

    def window_lock(self, rate_class: str, bucket: AbstractBucket) -> AbstractContextManager[object]:
        return bucket.lock  # the bucket's file lock (re-entrant): its put takes it again

    def move_start(self, bucket: AbstractBucket, from_ms: int, to_ms: int) -> None:
        assert isinstance(bucket, SQLiteBucket)
        bucket.conn.execute(
            f"UPDATE '{bucket.table}' SET item_timestamp = ?1 "
            f"WHERE rowid = (SELECT rowid FROM '{bucket.table}' WHERE item_timestamp = ?2 LIMIT 1)",
            (to_ms, from_ms),
        )
        bucket.conn.commit()

    def count_call(self, day: str, limit: int | None) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO lsq_account_daily_calls (account, day, calls) VALUES (?1, ?2, 1) "
                "ON CONFLICT (account, day) DO UPDATE SET calls = calls + 1 WHERE calls < ?3",
                (self.account, day, _NO_DAILY_LIMIT if limit is None else limit),
            )
            return cursor.rowcount == 1

    def calls_on(self, day: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT calls FROM lsq_account_daily_calls WHERE account = ? AND day = ?", (self.account, day)
            ).fetchone()
        return row[0] if row else 0

    def learned_limit(self, rate_class: str) -> tuple[int, float] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT calls, seconds FROM lsq_account_learned_limits "
                "WHERE account = ? AND rate_class = ? AND learned_at >= ?",
                (self.account, rate_class, time.time() - LEARNED_LIMIT_SECONDS),
            ).fetchone()
        return (row[0], row[1]) if row else None

    def learn_limit(self, rate_class: str, calls: int, seconds: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO lsq_account_learned_limits VALUES (?, ?, ?, ?, ?)",
                (self.account, rate_class, calls, seconds, time.time()),
            )

    def close(self) -> None:
        for bucket in self._buckets:
            bucket.close()
        self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.db_path!r}, account={self.account!r})"


_COUNT_CALL_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
"""Count one call unless the day's limit is reached, atomically (Redis runs a script alone)."""

_MOVE_START_SCRIPT = """
local member = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1)[1]
if member then redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member) end
"""
"""Give one start logged at ARGV[1] the time ARGV[2] (pyrate-limiter names the members at random)."""


class RedisStore(BudgetStore):
    """Shared by every process, on any machine, that names the same Redis and account.

    Keys start with `namespace` (the client derives it from the host and the access key, hashed),
    so two accounts can share one Redis. Window timestamps are each machine's clock: keep the
    machines' clocks in sync (NTP), as pyrate-limiter's Redis bucket assumes.
    """

    def __init__(self, url: str, namespace: str) -> None:
        redis = require("redis", "redis", "a call budget shared through Redis (rate_limit_redis_env)")

        self.url_host = redis.connection.parse_url(url).get("host", "?")
        self.namespace = namespace
        self._redis = redis.Redis.from_url(url)
        self._count_call = self._redis.register_script(_COUNT_CALL_SCRIPT)
        self._move_start = self._redis.register_script(_MOVE_START_SCRIPT)

    def window_bucket(self, rate_class: str, rates: list[Rate]) -> AbstractBucket:
        return RedisBucket.init(rates, self._redis, f"{self.namespace}:window:{rate_class}")

    def window_lock(self, rate_class: str, bucket: AbstractBucket) -> AbstractContextManager[object]:
        # redis-py's lock (SET NX PX, released by a script); it expires if its holder dies.
        return self._redis.lock(f"{self.namespace}:window-lock:{rate_class}", timeout=10, sleep=0.002)

    def move_start(self, bucket: AbstractBucket, from_ms: int, to_ms: int) -> None:
        assert isinstance(bucket, RedisBucket)
        self._move_start(keys=[bucket.bucket_key], args=[from_ms, to_ms])

    def count_call(self, day: str, limit: int | None) -> bool:
        limit_value = _NO_DAILY_LIMIT if limit is None else limit
        return bool(self._count_call(keys=[f"{self.namespace}:day:{day}"], args=[limit_value, _DAY_KEY_SECONDS]))

    def calls_on(self, day: str) -> int:
        return int(self._redis.get(f"{self.namespace}:day:{day}") or 0)

    def learned_limit(self, rate_class: str) -> tuple[int, float] | None:
        value = self._redis.get(f"{self.namespace}:learned:{rate_class}")
        if not value:
            return None
        calls, seconds = value.decode().split("/")
        return int(calls), float(seconds)

    def learn_limit(self, rate_class: str, calls: int, seconds: float) -> None:
        self._redis.set(f"{self.namespace}:learned:{rate_class}", f"{calls}/{seconds}", ex=LEARNED_LIMIT_SECONDS)

    def close(self) -> None:
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisStore(host={self.url_host!r}, namespace={self.namespace!r})"
