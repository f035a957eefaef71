"""The source side as a resource: where the daily exports are and how they map to LeadSquared."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lsq_pipeline.mapping import Mapping, load_mapping
from lsq_pipeline.settings import SourceSettings


class SourceResource(dg.ConfigurableResource, SourceSettings):
    """The daily export folder, the declarative mapping file and the run's guards: the account's
    `SourceSettings`."""

    def source_path(self) -> Path:
        return Path(self.source_dir)

    def load_mapping(self) -> Mapping:
        """Load and validate the mapping; a mistake fails here, naming the key."""
        return load_mapping(Path(self.mapping))
