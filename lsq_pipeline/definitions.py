"""The code location: every `LeadSquaredSyncComponent` instance under `lsq_pipeline/defs/`.

Named by `[tool.dg]` (dg dev), `[tool.dagster]` and `workspace.yaml` (dagster dev)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The dg project's folder (this repo, installed editable): relative paths in a defs.yaml start here."""


def load_code_location() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)


@dg.definitions
def defs() -> dg.Definitions:
    return load_code_location()
