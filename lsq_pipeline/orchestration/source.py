"""The source side as a resource: where the daily exports are and how they map to LeadSquared."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from lsq_pipeline.mapping import Mapping, load_mapping
from lsq_pipeline.steps.reconcile import READ_BACK_GRACE_SECONDS


class SourceResource(dg.ConfigurableResource):
    """The daily export folder and the declarative mapping file."""

    source_dir: str = Field(description="folder of YYYY-MM-DD/ day folders (LSQ_SOURCE_DIR)")
    mapping_path: str = Field(description="the mapping YAML (LSQ_MAPPING)")
    max_reject_rate: float = Field(default=0.20, description="reject share above which the run stops before the push")
    max_change_share: float = Field(
        default=0.5, description="share of known opportunities a run may update before it stops (LSQ_MAX_CHANGE_SHARE)"
    )
    max_attempts: int = Field(default=5, description="sends of a transiently failed record before it waits (LSQ_MAX_ATTEMPTS)")
    read_back_grace_seconds: float = Field(
        default=READ_BACK_GRACE_SECONDS,
        description="how long a written record may stay unseen by the read-back before it is missing "
        "(LSQ_READ_BACK_GRACE_SECONDS)",
    )
    file_settle_seconds: float = Field(
        default=60.0, description="how long a day's files must stay unchanged before the sensor syncs them"
    )

    def source_path(self) -> Path:
        return Path(self.source_dir)

    def load_mapping(self) -> Mapping:
        """Load and validate the mapping; a mistake fails here, naming the key."""
        return load_mapping(Path(self.mapping_path))
