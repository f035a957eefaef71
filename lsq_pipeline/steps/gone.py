"""Records gone from a snapshot source: synced records (they hold an opportunity) that the run's
snapshot no longer has. The plan counts them, so the gone-share check can stop the run before
anything changes; the reconcile step marks them `gone_from_source` once the push is done, and a
later snapshot that has one again brings it back. Nothing is sent to LeadSquared for a gone record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb

from lsq_pipeline.tables import opportunities
from lsq_pipeline.tables.statuses import RecordStatus
from lsq_pipeline.warehouse.sql import literal, on_days


@dataclass(frozen=True)
class GoneShare:
    """What a snapshot lost: the synced records it lacks among those known before it."""

    gone: int
    known: int
    """Records holding an opportunity and not already gone (the share's base)."""

    @property
    def share(self) -> float:
        return self.gone / self.known if self.known else 0.0


@dataclass(frozen=True)
class GoneSummary:
    """What the reconcile step made of a snapshot's membership."""

    gone_from_source: int = 0
    """Records newly marked gone."""
    back_in_source: int = 0
    """Gone records the snapshot has again, left for the read-back to confirm."""


def _in_snapshot(days: Sequence[date]) -> str:
    """The source ids the days' snapshot holds: accepted records and rejected rows alike (a row
    the transform rejected is still in the source)."""
    return f"""SELECT source_id FROM opportunity_records WHERE {on_days(days)}
               UNION SELECT source_id FROM rejects WHERE {on_days(days)} AND source_id IS NOT NULL"""


def _known(alias: str = "s") -> str:
    """A state row of a synced record not already gone."""
    return (f"{alias}.opportunity_id IS NOT NULL "
            f"AND {alias}.status IS DISTINCT FROM {literal(RecordStatus.GONE_FROM_SOURCE)}")


def lacked_sql(days: Sequence[date]) -> str:
    """SELECT of the synced records (gone already or not) that the days' snapshot lacks."""
    return f"""SELECT s.source_id FROM opportunity_state s
               LEFT JOIN ({_in_snapshot(days)}) AS present USING (source_id)
               WHERE s.opportunity_id IS NOT NULL AND present.source_id IS NULL"""


def _gone_sql(days: Sequence[date]) -> str:
    """SELECT of the synced records, not already gone, that the days' snapshot lacks."""
    return f"SELECT source_id FROM opportunity_state s WHERE {_known()} AND source_id IN ({lacked_sql(days)})"


def gone_records(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> list[str]:
    """Synced records, not already gone, that the days' snapshot lacks, by source id."""
    return [source_id for (source_id,) in conn.execute(f"{_gone_sql(days)} ORDER BY source_id").fetchall()]


def back_in_source(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> list[str]:
    """Gone records that the days' snapshot has again, by source id."""
    rows = conn.execute(
        f"""SELECT s.source_id FROM opportunity_state s JOIN ({_in_snapshot(days)}) AS present USING (source_id)
            WHERE s.status = {literal(RecordStatus.GONE_FROM_SOURCE)}
            ORDER BY s.source_id"""
    ).fetchall()
    return [source_id for (source_id,) in rows]


def gone_share(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> GoneShare:
    """How many known records the days' snapshot lacks, and how many were known: an empty snapshot
    loses them all, which the gone-share check stops instead of marking every record gone."""
    gone_count = f"SELECT count(*) FROM ({_gone_sql(days)}) AS gone"
    gone, known = conn.execute(
        f"SELECT ({gone_count}), count(*) FROM opportunity_state s WHERE {_known()}").fetchone()
    return GoneShare(gone, known)


def settle_gone(conn: duckdb.DuckDBPyConnection, days: Sequence[date]) -> GoneSummary:
    """After the push (the plan's check passed): records the snapshot lacks become
    `gone_from_source`, and gone ones it has again, unless this run wrote them, `pending` for the
    read-back. A snapshot run has one day, the snapshot's."""
    gone, back = gone_records(conn, days), back_in_source(conn, days)
    opportunities.mark_gone_from_source(conn, gone, back, max(days))
    return GoneSummary(len(gone), len(back))
