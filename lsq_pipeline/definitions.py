"""The code location: every `LeadSquaredSyncComponent` instance under `lsq_pipeline/defs/`.

Named by `[tool.dg]` (dg dev), `[tool.dagster]` and `workspace.yaml` (dagster dev)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The dg project's folder (this repo, installed editable): relative paths in a defs.yaml start here."""


def load_code_location() -> dg.Definitions:
    """Every instance of the defs folder. dg's loader itself raises beta warnings about its own
    metadata (code references); they are quieted here, where they are raised, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning, module=r"dagster\.")
        return dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)


@dg.definitions
def defs() -> dg.Definitions:
    return load_code_location()
