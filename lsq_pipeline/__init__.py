"""lsq_pipeline: keep LeadSquared opportunities in step with source records.

`lsq_pipeline.LeadSquaredSyncComponent` is imported on first use, so the sandbox and the client
(`lsq_pipeline.sandbox`, `lsq_pipeline.leadsquared`) import without Dagster."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

# dg's loader re-makes a component's asset-check definitions as plain AssetsDefinitions (adding code
# references); Dagster converts them back when it builds the repository, and warns that a parameter
# it passes itself is beta. Exactly that warning is quieted, in any process that imports the package.
warnings.filterwarnings("ignore", message=r"Parameter `execution_type` of function `AssetsDefinition\.__init__`")

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
