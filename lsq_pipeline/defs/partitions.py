"""Daily partitions from the first day of the source exports."""

from __future__ import annotations

from datetime import date

import dagster as dg

from lsq_pipeline.settings import load_settings

DEFAULT_FIRST_DAY = "2026-11-01"


def first_source_day() -> str:
    """The oldest `YYYY-MM-DD` folder under LSQ_SOURCE_DIR, so partitions start where the data does."""
    source_dir = load_settings().source_dir
    days = []
    if source_dir.is_dir():
        for child in source_dir.iterdir():
            try:
                days.append(date.fromisoformat(child.name))
            except ValueError:
                continue
    return min(days).isoformat() if days else DEFAULT_FIRST_DAY


daily_partitions = dg.DailyPartitionsDefinition(start_date=first_source_day())
