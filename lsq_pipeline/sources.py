"""Where an account's records come from: for applications and for events, daily export folders
(`files`), a table or a query (`table`, `query`) in a DuckDB file, a PostgreSQL database or the
warehouse itself (`database`), optionally produced by an upstream Dagster asset (`asset`) and
split into days by a column (`day_column`)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lsq_pipeline.warehouse.connection import is_postgres, postgres_url_problem

SourceKind = Literal["files", "table", "query"]
RecordSet = Literal["applications", "events"]


def snapshot_day(at: datetime | None = None) -> date:
    """The day a snapshot run works on: the UTC date of `at` (the run's creation; default now).
    The warehouse's tables stay keyed by day, so a snapshot is filed under the day it was taken."""
    return (at or datetime.now(timezone.utc)).astimezone(timezone.utc).date()


class SourceTable(BaseModel):
    """One record set's source: one of `files`, `table` or `query` (or `asset` alone, whose
    `dagster/table_name` names the table), read where `database` says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: str | None = Field(None, description="folder of YYYY-MM-DD/ export folders (CSV or Parquet)")
    table: str | None = Field(None, description="a table or view, e.g. analytics.loan_applications")
    query: str | None = Field(None, description="any SELECT, in the source database's dialect")
    database: str | None = Field(None, description="a DuckDB file (attached read-only under its file's stem) or "
                                                   "postgresql://user@host:port/db (no password); none: the warehouse")
    asset: str | None = Field(None, description="the upstream Dagster asset that produces it, e.g. loan_applications")
    day_column: str | None = Field(None, description="daily partitions by this column's UTC day (DATE, TIMESTAMP "
                                                     "or TIMESTAMPTZ); none: each run reads a snapshot")

    @model_validator(mode="after")
    def _one_kind(self) -> SourceTable:
        given = [name for name in ("files", "table", "query") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"give one of files, table or query, not {' and '.join(given)}")
        if not given and not self.asset:
            raise ValueError("give files, table or query (or asset, whose dagster/table_name names the table)")
        if self.files and (self.database or self.day_column):
            raise ValueError("files are daily folders: database and day_column are for a table or a query")
        if not given and not self.database:
            raise ValueError("asset without table: database is required, it says where to read the asset's table")
        if self.database and is_postgres(self.database) and (problem := postgres_url_problem(self.database)):
            raise ValueError(f"database: {problem}")
        return self

    @property
    def kind(self) -> SourceKind:
        return "files" if self.files else "query" if self.query else "table"

    @property
    def daily(self) -> bool:
        """Daily partitions (files, or a day column); otherwise each run reads the whole source."""
        return bool(self.files or self.day_column)

    def on_postgres(self) -> bool:
        return bool(self.database) and is_postgres(self.database)

    def resolved(self, root: Path) -> SourceTable:
        """Relative paths (files, a DuckDB database) taken from the project's `root`."""
        def absolute(path: str | None) -> str | None:
            return path if path is None or Path(path).is_absolute() else str(root / path)
        return self.model_copy(update={
            "files": absolute(self.files),
            "database": self.database if self.database is None or is_postgres(self.database) else absolute(self.database),
        })


class Sources(BaseModel):
    """An account's `source:`: applications, and optionally events (no events: no activities).
    Both daily or both snapshots: a mix is refused at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    applications: SourceTable
    events: SourceTable | None = None

    @model_validator(mode="after")
    def _one_partitioning(self) -> Sources:
        if self.events is not None and self.events.daily != self.applications.daily:
            daily, snapshot = ("applications", "events") if self.applications.daily else ("events", "applications")
            raise ValueError(f"{daily} are daily (files or day_column) but {snapshot} are a snapshot (no "
                             "day_column): applications and events share their partitioning")
        return self

    @property
    def daily(self) -> bool:
        return self.applications.daily

    def of(self, record_set: RecordSet) -> SourceTable | None:
        return self.applications if record_set == "applications" else self.events

    def resolved(self, root: Path) -> Sources:
        return Sources(applications=self.applications.resolved(root),
                       events=self.events.resolved(root) if self.events else None)

    @classmethod
    def of_folder(cls, source_dir: str) -> Sources:
        """The short form `source_dir:`: both record sets from its daily folders."""
        return cls(applications=SourceTable(files=source_dir), events=SourceTable(files=source_dir))
