"""The packaged default account as the command line loads it outside any dg project."""

from __future__ import annotations

from dagster.components.core.component_tree import ComponentTreeException

from lsq_pipeline.orchestration.jobs import settings_of
from lsq_pipeline.project import load_definitions
from lsq_pipeline.settings import AccountSettings, SettingsError


def default_account() -> AccountSettings:
    """Its settings from today's `LSQ_*` variables; a bad one raises the SettingsError that dg's
    loader wraps (naming the variable)."""
    try:
        definitions = load_definitions(None)
    except ComponentTreeException as error:
        if isinstance(error.__cause__, SettingsError):
            raise error.__cause__ from None
        raise
    return next(settings for settings in map(settings_of, definitions.jobs) if settings)
