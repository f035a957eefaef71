"""`LeadSquaredSyncComponent`: one LeadSquared account and its source, as a dg Component.

Add one `defs.yaml` per account to any dg project (`dg scaffold defs
lsq_pipeline.LeadSquaredSyncComponent NAME`); each instance brings the account's assets, checks,
jobs, schedule, sensors, pools and resources, named after its `account`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import dagster as dg
from dagster.components.utils.translation import ResolvedTranslationFn
from pydantic import BaseModel, Field, ValidationError, create_model

from lsq_pipeline.orchestration.assets import Step
from lsq_pipeline.orchestration.translator import StepAsset
from lsq_pipeline.settings import (
    DEFAULT_ACCOUNT,
    AccountAttributes,
    AccountSettings,
    SettingsError,
    settings_error,
    settings_from,
    source_days,
)


class LeadSquaredSyncScaffolder(dg.Scaffolder):
    """`dg scaffold defs lsq_pipeline.LeadSquaredSyncComponent acme`: a starter `defs.yaml` whose
    account, paths and key variables are named after the folder, on the embedded sandbox until
    `api_host` replaces `sandbox: true`."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        from dagster.components.component_scaffolding import scaffold_component

        account = request.target_path.name.lower().replace("-", "_")
        variable = account.upper()
        source_dir = f"data/{account}/source"
        project_root = request.project_root or Path.cwd()
        keys = [f"{variable}_LSQ_ACCESS_KEY", f"{variable}_LSQ_SECRET_KEY"]
        scaffold_component(request, {
            "account": account,
            "sandbox": True,
            "source_dir": source_dir,
            "first_day": first_day_for(project_root / source_dir).isoformat(),
            "mapping": f"data/{account}/mapping.yaml",
            "warehouse": f"data/{account}/warehouse.duckdb",
            "sandbox_dir": f"data/{account}/sandbox",
            "rate_limit_db": "data/rate_limit.sqlite",
            "access_key_env": keys[0],
            "secret_key_env": keys[1],
            "schedule": "0 3 * * *",
        })
        defs_yaml = request.target_path / "defs.yaml"
        defs_yaml.write_text(defs_yaml.read_text().rstrip() + "\n\nrequirements:\n  env: [" + ", ".join(keys) + "]\n")


def first_day_for(source_dir: Path) -> date:
    """The oldest day folder under `source_dir`, else yesterday (UTC): today's partition exists
    only once the day is over."""
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    return min(source_days(source_dir), default=yesterday)


@dg.scaffold_with(LeadSquaredSyncScaffolder)
class LeadSquaredSyncComponent(dg.Component, dg.Resolvable, AccountAttributes):
    """Keeps one LeadSquared account's opportunities in step with daily export files: extract,
    transform, plan, push and reconcile as daily-partitioned assets under the account's prefix.
    Give `api_host` for a real account, or `sandbox: true` for the embedded LeadSquared sandbox.
    Keys are never values here: `access_key_env` and `secret_key_env` name the variables that hold
    them."""

    paths_relative_to: Literal["project", "working_directory"] = Field(
        "project", description="where relative paths start: the dg project root, or the folder a command "
                               "runs in (the packaged default account)")
    translation: ResolvedTranslationFn[StepAsset] = Field(
        None, description="AssetSpec fields applied to every asset of the account (group_name, owners, tags, "
                          "kinds, key / key_prefix, automation_condition, description, metadata); templates see "
                          "the step as {{ data.step }} (source, extract, transform, plan, push, reconcile) and the "
                          "asset's name as {{ data.name }}")

    @classmethod
    def model(cls) -> type[BaseModel]:
        """The YAML schema dg derives, each attribute also taking text, so `{{ env('X', '') }}`
        templates fit any of them (the account's own validation checks the value), with each
        attribute's description (dg drops those of fields with defaults)."""
        derived = super().model()
        fields = {}
        for name, field in derived.model_fields.items():
            described = cls.model_fields.get(name)
            description = field.description or (described.description if described else None)
            annotation = field.annotation if field.annotation is str else field.annotation | str
            fields[name] = (annotation, Field(default=field.default, description=description))
        return create_model(derived.__name__, __config__=derived.model_config, **fields)

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> LeadSquaredSyncComponent:
        """A bad value fails the load in one line naming the file and the setting."""
        try:
            return super().load(attributes, context)
        except ValidationError as error:
            account = str(getattr(attributes, "account", None) or DEFAULT_ACCOUNT)
            raise SettingsError(f"{context.path / 'defs.yaml'}: {settings_error(error, account)}") from None

    def settings(self, project_root: Path) -> AccountSettings:
        """The account's settings, relative paths taken from `paths_relative_to`."""
        given = self.model_dump(exclude_unset=True, exclude={"paths_relative_to", "translation"})
        root = project_root if self.paths_relative_to == "project" else Path.cwd()
        return settings_from({"account": DEFAULT_ACCOUNT, **given, "root": root})

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from lsq_pipeline.orchestration.definitions import build_definitions

        try:
            settings = self.settings(context.project_root)
            if settings.daily:  # a snapshot account has no partitions, so no first day
                settings.first_partition_day()
        except SettingsError as error:
            raise SettingsError(f"{context.path / 'defs.yaml'}: {error}") from None
        return build_definitions(settings, translate=self.get_asset_spec, execute=self.execute)

    def get_asset_spec(self, step: StepAsset) -> dg.AssetSpec:
        """The spec of one asset of a step: the account's own, through `translation`. Override it
        to change any asset's spec; jobs, deps, sensors and the command line follow its key."""
        return self.translation(step.spec, step) if self.translation else step.spec

    def execute(self, context: dg.AssetExecutionContext, step: Step) -> object:
        """Run one step (`step.name`) for the run's days: `step.run()` does its work and returns its
        results. Override it to do something around a step."""
        return step.run()
