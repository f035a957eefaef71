"""The account's budget as LeadSquared enforces it: a sliding window per rate class and a daily count.

Two classes: `general` (the opportunity endpoints, and every endpoint not named a bulk API) and
`bulk` (LeadSquared's "Bulk APIs": lead bulk create, create-or-update, ...). A bulk call also
takes a start from the general window when `bulk_counts_against_general` (the pages do not
say; default true, the safe side). Every call, of any class, counts against the day's count
(UTC day). Presets follow the older table of LeadSquared's rate-limits page (NOTES.md).

The budget learns from refusals: a 429 whose message names a limit ("... the limit of 5 in 5
second(s)") lower than the one believed sets that class's window to it, here and, through
the store, in every process sharing it; one warning names the variables to set. A refusal
that names the day ends the day's sending: `DailyBudgetExhausted`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from lsq_pipeline.leadsquared.budget_store import BudgetStore, MemoryStore
from lsq_pipeline.leadsquared.errors import DailyBudgetExhausted
from lsq_pipeline.leadsquared.rate_limit import SlidingWindow

logger = logging.getLogger(__name__)

RateClass = Literal["general", "bulk"]


@dataclass(frozen=True)
class WindowLimit:
    """`calls` in any `seconds`; 0 calls = no window on the client."""

    calls: int
    seconds: float = 5.0

    def __str__(self) -> str:
        return f"{self.calls} in {self.seconds:g} s"


@dataclass(frozen=True)
class AccountLimits:
    """The limits the client keeps to. The default is 25 calls / 5 s for both classes, no daily count."""

    general: WindowLimit = WindowLimit(25, 5.0)
    bulk: WindowLimit = WindowLimit(25, 5.0)
    daily_calls: int = 0
    """Calls a UTC day, all classes; 0 = no daily limit (and no count)."""
    bulk_counts_against_general: bool = True


class Plan(StrEnum):
    """LeadSquared's plans, each a preset of the limits."""

    LITE = "lite"
    PRO = "pro"
    SUPER = "super"
    BASIC = "basic"
    STANDARD = "standard"
    ENTERPRISE = "enterprise"


_BULK_ON_EVERY_PLAN = WindowLimit(1, 5.0)
PLANS: dict[Plan, AccountLimits] = {
    Plan.LITE: AccountLimits(WindowLimit(2, 5.0), _BULK_ON_EVERY_PLAN, 34_560),
    Plan.PRO: AccountLimits(WindowLimit(5, 5.0), _BULK_ON_EVERY_PLAN, 86_400),
    Plan.SUPER: AccountLimits(WindowLimit(10, 5.0), _BULK_ON_EVERY_PLAN, 172_800),
    Plan.BASIC: AccountLimits(WindowLimit(10, 5.0), _BULK_ON_EVERY_PLAN, 172_800),
    Plan.STANDARD: AccountLimits(WindowLimit(15, 5.0), _BULK_ON_EVERY_PLAN, 259_200),
    Plan.ENTERPRISE: AccountLimits(WindowLimit(25, 5.0), _BULK_ON_EVERY_PLAN, 432_000),
}
"""LeadSquared's older table: calls per 5 s and per day; "Bulk APIs" 1 call in 5 s on every plan."""

SETTING_OF_CLASS = {
    "general": ("LSQ_RATE_LIMIT_CALLS", "LSQ_RATE_LIMIT_SECONDS"),
    "bulk": ("LSQ_BULK_RATE_LIMIT_CALLS", "LSQ_BULK_RATE_LIMIT_SECONDS"),
}

_WINDOW_LIMIT_MESSAGE = re.compile(r"limit of\s+(\d+)\s+in\s+(\d+(?:\.\d+)?)\s*second", re.IGNORECASE)
_DAILY_MESSAGE = re.compile(r"\b(daily|per day|a day|today)\b", re.IGNORECASE)


def account_limits(
    plan: str | None = None,
    *,
    rate_limit_calls: int | None = None,
    rate_limit_seconds: float | None = None,
    bulk_rate_limit_calls: int | None = None,
    bulk_rate_limit_seconds: float | None = None,
    daily_call_limit: int | None = None,
    bulk_counts_against_general: bool = True,
) -> AccountLimits:
    """A plan's preset (or the default) with every value given explicitly put over it."""
    if plan and plan.lower() not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; one of {', '.join(PLANS)}")
    base = PLANS[plan.lower()] if plan else AccountLimits()
    general = WindowLimit(
        base.general.calls if rate_limit_calls is None else rate_limit_calls,
        base.general.seconds if rate_limit_seconds is None else rate_limit_seconds,
    )
    bulk = base.bulk if plan else general  # no plan: bulk calls keep to the general limit
    bulk = WindowLimit(
        bulk.calls if bulk_rate_limit_calls is None else bulk_rate_limit_calls,
        bulk.seconds if bulk_rate_limit_seconds is None else bulk_rate_limit_seconds,
    )
    return replace(
        base,
        general=general,
        bulk=bulk,
        daily_calls=base.daily_calls if daily_call_limit is None else daily_call_limit,
        bulk_counts_against_general=bulk_counts_against_general,
    )


class BudgetSettings(BaseModel):
    """The budget as an account configures it: a plan's preset and the limits set over it
    (`LSQ_<NAME>` in the environment). The account's settings and its LeadSquared resource both
    take these fields from here."""

    plan: Plan | None = Field(None, description="LeadSquared plan (lite, pro, super, basic, standard, "
                                                "enterprise): presets of the limits below")
    rate_limit_calls: int | None = Field(None, ge=0, description="general window: calls (0 = off); default "
                                                                 "the plan's, else 25")
    rate_limit_seconds: float | None = Field(None, gt=0, description="general window: seconds; default the "
                                                                     "plan's, else 5")
    bulk_rate_limit_calls: int | None = Field(None, ge=0, description="Bulk APIs window: calls; default the "
                                                                      "plan's")
    bulk_rate_limit_seconds: float | None = Field(None, gt=0, description="Bulk APIs window: seconds")
    daily_call_limit: int | None = Field(None, ge=0, description="calls a UTC day, all classes; default the "
                                                                 "plan's, else none")
    bulk_counts_against_general: bool = Field(True, description="a bulk call also takes a general start")

    @field_validator("plan", mode="before")
    @classmethod
    def _plan_in_any_case(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value

    def account_limits(self) -> AccountLimits:
        """The plan's preset with every limit set explicitly put over it."""
        overrides = set(BudgetSettings.model_fields) - {"plan"}
        return account_limits(self.plan, **{name: getattr(self, name) for name in overrides})


def limit_named_in(message: str | None) -> WindowLimit | None:
    """The window limit a refusal names ("... the limit of 25 in 5 second(s)"), if it names one."""
    match = _WINDOW_LIMIT_MESSAGE.search(message or "")
    return WindowLimit(int(match.group(1)), float(match.group(2))) if match else None


def is_daily_refusal(message: str | None) -> bool:
    """True when a rate-limit refusal is about the day's count, not the window."""
    return bool(_DAILY_MESSAGE.search(message or "")) and limit_named_in(message) is None


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


class AccountBudget:
    """What the client spends: one `SlidingWindow` per class, the day's count, kept in a `BudgetStore`.

    `acquire(rate_class)` counts the call against the day (when a daily limit is set) or
    raises `DailyBudgetExhausted`, then blocks for the windows; `sent(rate_class, at)`, from the
    same thread, moves its starts to when the call was sent. `refused(rate_class, message)`
    takes in a server refusal.
    """

    def __init__(
        self,
        limits: AccountLimits = AccountLimits(),
        store: BudgetStore | None = None,
        *,
        today: Callable[[], date] = utc_today,
    ) -> None:
        self.limits = limits
        self.store = store or MemoryStore()
        self.today = today
        self.windows: dict[str, SlidingWindow] = {
            rate_class: SlidingWindow(limit.calls, limit.seconds, store=self.store, rate_class=rate_class)
            for rate_class, limit in (("general", limits.general), ("bulk", limits.bulk))
            if limit.calls > 0
        }
        self._warned: set[str] = set()
        self._together = threading.Lock()
        self._lock = threading.Lock()

    def windows_of(self, rate_class: str) -> list[SlidingWindow]:
        """The windows a call of `rate_class` takes a start from, its own first."""
        classes = [rate_class]
        if rate_class == "bulk" and self.limits.bulk_counts_against_general:
            classes.append("general")
        return [self.windows[name] for name in classes if name in self.windows]

    def acquire(self, rate_class: str, endpoint: str) -> float:
        """Count the call against the day, then wait for its windows; the seconds waited."""
        limit = self.limits.daily_calls
        day = self.today().isoformat()
        if limit and not self.store.count_call(day, limit):
            raise DailyBudgetExhausted.for_call(
                endpoint,
                detail=f"daily call budget spent: {limit} calls on {day} (UTC, LSQ_DAILY_CALL_LIMIT); "
                "the next call waits for 00:00 UTC",
            )
        windows = self.windows_of(rate_class)
        for window in windows:
            self._take_learned(window)
        if len(windows) < 2:
            return sum(window.acquire() for window in windows)
        # A bulk call also takes a general start. Its starts are taken together, just before it
        # is sent: wait for its own window without taking a start, then the general start, then
        # its own (free by then). Taken one after the other, the first start would be recorded
        # before a wait for the second, earlier than the call reaches LeadSquared, and the
        # server could count one call more in that window than the client did. The general start
        # goes first, ahead of general calls, so the bulk window is not left idle behind them.
        with self._together:
            waited = windows[0].wait_until_free()
            for window in windows[1:]:
                waited += window.acquire(first=True)
            return waited + windows[0].acquire()

    def sent(self, rate_class: str, at: float) -> None:
        """The call this thread acquired last was sent at `at` (`time.monotonic()`). Never raises:
        the call is out and its answer matters more; a start not moved stays where it was granted."""
        try:
            for window in self.windows_of(rate_class):
                window.sent(at)
        except Exception:  # noqa: BLE001 - e.g. Redis unreachable: the next acquire will say so
            logger.warning("could not move a %s call's start to its send", rate_class, exc_info=True)

    def calls_today(self) -> int:
        return self.store.calls_on(self.today().isoformat())

    def refused(self, rate_class: str, endpoint: str, message: str | None) -> bool:
        """A rate-limit refusal: a daily one raises; a window one may teach the limit and pauses
        the class's window for one window. False when there is no window to pause."""
        if is_daily_refusal(message):
            raise DailyBudgetExhausted.for_call(endpoint, exception_type="MXAPIRateLimitExceededException",
                                                exception_message=message)
        window = self.windows.get(rate_class)
        if window is None:
            return False
        named = limit_named_in(message)
        if named is not None and _lower(named, window):
            self.store.learn_limit(rate_class, named.calls, named.seconds)
            self._apply(window, named, learned_here=True)
        window.pause(window.seconds)
        return True

    def _take_learned(self, window: SlidingWindow) -> None:
        learned = self.store.learned_limit(window.rate_class)
        if learned is not None and _lower(WindowLimit(*learned), window):
            self._apply(window, WindowLimit(*learned), learned_here=False)

    def _apply(self, window: SlidingWindow, limit: WindowLimit, *, learned_here: bool) -> None:
        believed = WindowLimit(window.calls, window.seconds)
        window.set_limit(limit.calls, limit.seconds)
        with self._lock:
            first = window.rate_class not in self._warned
            self._warned.add(window.rate_class)
        if first and learned_here:
            calls_var, seconds_var = SETTING_OF_CLASS[window.rate_class]
            logger.warning(
                "LeadSquared refused a %s call at its limit of %s; the client believed %s and keeps to %s "
                "from now on (every process sharing the budget). Set %s=%d and %s=%g to start there.",
                window.rate_class, limit, believed, limit, calls_var, limit.calls, seconds_var, limit.seconds,
            )
        elif first:
            logger.info("%s window: %s, learned by another process from a refusal", window.rate_class, limit)

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        windows = ", ".join(repr(window) for window in self.windows.values()) or "no windows"
        daily = self.limits.daily_calls or "none"
        return f"AccountBudget({windows}; daily limit {daily})"


def _lower(named: WindowLimit, window: SlidingWindow) -> bool:
    """The server's limit differs from the one believed and allows no more calls per second."""
    if (named.calls, named.seconds) == (window.calls, window.seconds):
        return False
    return named.calls / named.seconds <= window.calls / window.seconds
