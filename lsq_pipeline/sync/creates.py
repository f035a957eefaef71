"""The creates of one push as work for two lanes that spend two rate windows at once.

The bulk lane creates the leads not known to exist with Create Leads in Bulk (the bulk window),
taking them from the front of the queue. The general lane (the general window) adds opportunities
with Bulk Add to records whose lead exists or was just sent, captures records whose Bulk Add found
no lead, and, when nothing else is ready, captures records whose lead nobody has sent yet, taking
them from the back. Neither lane waits for the other while there is work it can do.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from lsq_pipeline.leadsquared.models import MAX_ITEMS_PER_WRITE, MAX_LEADS_PER_BULK_CREATE

CAPTURES_PER_UNIT = 2
"""Captures one general worker sends together (the client runs them concurrently): fewer journal
writes per record, while the other workers keep the general window busy."""


def lead_key(search_by_value: str | None) -> str:
    """Unique lead fields (email, phone) match case-insensitively."""
    return (search_by_value or "").strip().lower()


def known_leads(conn: duckdb.DuckDBPyConnection, search_by_values: Sequence[str]) -> set[str]:
    """The leads (by `lead_key`) among `search_by_values` that exist or may: the state holds an
    opportunity or a lead id of one of their records, or a create or Capture of one of their
    records is unanswered (`unknown`, or `sent` by a run still going): it may have made the lead
    and an opportunity, so such a record goes Bulk Add first (the duplicate rule answers), never
    straight to Capture. LeadSquared is asked only about the others."""
    if not search_by_values:
        return set()
    rows = conn.execute(
        """
        SELECT DISTINCT lower(trim(r.search_by_value))
        FROM opportunity_records r
        WHERE lower(trim(r.search_by_value)) IN (SELECT unnest($1::VARCHAR[]))
          AND (r.source_id IN (SELECT source_id FROM opportunity_state
                               WHERE opportunity_id IS NOT NULL OR lead_id IS NOT NULL)
               OR r.source_id IN (SELECT source_id FROM push_journal
                                  WHERE kind IN ('create', 'capture') AND status IN ('unknown', 'sent')))
        """,
        [sorted({lead_key(value) for value in search_by_values})],
    ).fetchall()
    return {key for (key,) in rows}


@dataclass
class Work:
    """One unit of the general lane: `add` (Bulk Add, up to 25 records), `capture` (records Bulk
    Add could not create, e.g. no lead) or `capture_lead` (unsent leads' first records; the rest of their
    records go to Bulk Add once the captures answer)."""

    kind: str
    rows: list[dict]
    rest: list[dict]


class CreateQueue:
    """The create rows of one push, shared by the bulk lane and the general lane's workers."""

    def __init__(self, rows: Sequence[dict], known: set[str]) -> None:
        self._changed = threading.Condition()
        self._ready: deque[dict] = deque()
        groups: dict[str, list[dict]] = {}
        for row in rows:
            key = lead_key(row["search_by_value"])
            if key in known or not key:
                self._ready.append(row)
            else:
                groups.setdefault(key, []).append(row)
        self._unsent: deque[list[dict]] = deque(groups.values())
        self._to_capture: deque[dict] = deque()
        self._bulk_busy = 0
        self._general_busy = 0
        self._aborted = False
        self.unknown_leads = len(self._unsent)

    # -- the bulk lane --------------------------------------------------------------------------
    def take_leads(self, limit: int = MAX_LEADS_PER_BULK_CREATE) -> list[list[dict]]:
        """Up to `limit` unsent leads from the front (each a list of its records); [] when none is left."""
        with self._changed:
            if self._aborted:
                return []
            taken = [self._unsent.popleft() for _ in range(min(limit, len(self._unsent)))]
            if taken:
                self._bulk_busy += 1
            return taken

    def leads_sent(self, groups: list[list[dict]]) -> None:
        """The bulk call for these leads ended (however it ended): their records go to Bulk Add,
        whose per-row answer tells whether each lead exists."""
        with self._changed:
            self._ready.extend(row for group in groups for row in group)
            self._bulk_busy -= 1
            self._changed.notify_all()

    # -- the general lane -----------------------------------------------------------------------
    def take_work(self) -> Work | None:
        """The next unit for a general worker, waiting while the only work left is in flight;
        None when every create is done."""
        with self._changed:
            while not self._aborted:
                if self._to_capture:
                    count = min(CAPTURES_PER_UNIT, len(self._to_capture))
                    return self._start(Work("capture", [self._to_capture.popleft() for _ in range(count)], []))
                if len(self._ready) >= MAX_ITEMS_PER_WRITE:
                    return self._start(Work("add", self._pop_ready(MAX_ITEMS_PER_WRITE), []))
                if self._unsent:
                    groups = [self._unsent.pop() for _ in range(min(CAPTURES_PER_UNIT, len(self._unsent)))]
                    return self._start(Work("capture_lead", [g[0] for g in groups], [r for g in groups for r in g[1:]]))
                if self._ready and not self._bulk_busy:
                    return self._start(Work("add", self._pop_ready(MAX_ITEMS_PER_WRITE), []))
                if not self._bulk_busy and not self._general_busy:
                    self._changed.notify_all()
                    return None
                self._changed.wait()
            return None

    def abort(self) -> None:
        """A lane failed: the others stop taking work."""
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def work_done(self, work: Work, to_capture: Sequence[dict] = (), to_add: Sequence[dict] = ()) -> None:
        """A unit ended: `to_capture` rows (Bulk Add could not create them, e.g. no lead) go to
        Capture; `to_add` rows (a capture whose answer was lost) and a captured lead's other
        records go to Bulk Add."""
        with self._changed:
            self._to_capture.extend(to_capture)
            self._ready.extend([*to_add, *work.rest])
            self._general_busy -= 1
            self._changed.notify_all()

    def left(self) -> int:
        """Records not yet taken by either lane."""
        with self._changed:
            return len(self._ready) + len(self._to_capture) + sum(len(group) for group in self._unsent)

    def _start(self, work: Work) -> Work:
        self._general_busy += 1
        return work

    def _pop_ready(self, limit: int) -> list[dict]:
        return [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
