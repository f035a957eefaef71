"""lsq_pipeline: keep LeadSquared opportunities in step with source records.

`lsq_pipeline.LeadSquaredSyncComponent` is imported on first use, so the sandbox and the client
(`lsq_pipeline.sandbox`, `lsq_pipeline.leadsquared`) import without Dagster."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsq_pipeline.component import LeadSquaredSyncComponent

__all__ = ["LeadSquaredSyncComponent"]


def __getattr__(name: str) -> object:
    if name == "LeadSquaredSyncComponent":
        from lsq_pipeline.component import LeadSquaredSyncComponent

        return LeadSquaredSyncComponent
    raise AttributeError(f"module 'lsq_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    """dg finds components by `dir()` of the registry module: list the lazy one too."""
    return sorted([*globals(), *__all__])
