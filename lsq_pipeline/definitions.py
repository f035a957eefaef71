"""The packaged `default` account's code location: `lsq_pipeline/defs/`, loaded from the package
wherever it is installed (its relative paths start in the current folder).

Named by this repository's `[tool.dg]` (dg dev), `[tool.dagster]` and `workspace.yaml` (dagster
dev), and used by the command line outside any dg project."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg


def quietly(load: Callable[[], dg.Definitions]) -> dg.Definitions:
    """dg's loader itself raises beta and preview warnings about its own metadata (code references); they are
    quieted here, where they are raised, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning, module=r"dagster\.")
        warnings.filterwarnings("ignore", category=dg.PreviewWarning, module=r"dagster\.")
        return load()


def packaged_tree() -> dg.ComponentTree:
    import lsq_pipeline.defs

    return dg.ComponentTree.from_module(defs_module=lsq_pipeline.defs, project_root=Path.cwd())


def load_packaged_account() -> dg.Definitions:
    return quietly(lambda: packaged_tree().build_defs())


@dg.definitions
def defs() -> dg.Definitions:
    return load_packaged_account()
