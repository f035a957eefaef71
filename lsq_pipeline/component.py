"""`LeadSquaredSyncComponent`: one LeadSquared account and its source, as a dg Component.

Add one `defs.yaml` per account to any dg project (`dg scaffold defs
lsq_pipeline.LeadSquaredSyncComponent NAME`); each instance brings the account's assets, checks,
jobs, schedule, sensors, pools and resources, named after its `account`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import BaseModel, Field

from lsq_pipeline.settings import DEFAULT_ACCOUNT, AccountAttributes, AccountSettings, settings_from


class LeadSquaredSyncScaffolder(dg.Scaffolder):
    """`dg scaffold defs lsq_pipeline.LeadSquaredSyncComponent acme`: a starter `defs.yaml` whose
    account, paths and key variables are named after the folder."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        from dagster.components.component_scaffolding import scaffold_component

        account = request.target_path.name.lower().replace("-", "_")
        variable = account.upper()
        scaffold_component(request, {
            "account": account,
            "source_dir": f"data/{account}/source",
            "mapping": f"data/{account}/mapping.yaml",
            "warehouse": f"data/{account}/warehouse.duckdb",
            "sandbox_dir": f"data/{account}/sandbox",
            "rate_limit_db": "data/rate_limit.sqlite",
            "access_key_env": f"{variable}_LSQ_ACCESS_KEY",
            "secret_key_env": f"{variable}_LSQ_SECRET_KEY",
            "schedule": "0 3 * * *",
        })


@dg.scaffold_with(LeadSquaredSyncScaffolder)
class LeadSquaredSyncComponent(dg.Component, dg.Resolvable, AccountAttributes):
    """Keeps one LeadSquared account's opportunities in step with daily export files: extract,
    transform, plan, push and reconcile as daily-partitioned assets under the account's prefix.
    Omit `api_host` to sync against the embedded LeadSquared sandbox. Keys are never values here:
    `access_key_env` and `secret_key_env` name the variables that hold them."""

    env_prefix: str = Field("", description="read each attribute not given here from <env_prefix><ATTRIBUTE> "
                                            "when that variable is set (the shipped instance: LSQ_)")
    paths_relative_to: Literal["project", "working_directory"] = Field(
        "project", description="where relative paths start: the dg project root, or the folder a command "
                               "runs in (the shipped instance, as LSQ_* paths always did)")

    @classmethod
    def model(cls) -> type[BaseModel]:
        """The YAML schema dg derives, with each attribute's description (dg drops those of fields
        with defaults), so `dg utils inspect-component` and editors show them."""
        derived = super().model()
        for name, field in derived.model_fields.items():
            described = cls.model_fields.get(name)
            if described is not None and described.description and not field.description:
                field.description = described.description
        derived.model_rebuild(force=True)
        return derived

    def settings(self, project_root: Path) -> AccountSettings:
        """The account's settings, relative paths taken from `paths_relative_to`."""
        given = self.model_dump(exclude_unset=True, exclude={"env_prefix", "paths_relative_to"})
        root = project_root if self.paths_relative_to == "project" else Path.cwd()
        return settings_from({"account": DEFAULT_ACCOUNT, **given, "root": root}, self.env_prefix)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from lsq_pipeline.orchestration.definitions import build_definitions

        return build_definitions(self.settings(context.project_root))
