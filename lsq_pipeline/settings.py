"""One LeadSquared account's settings: the attributes of a `LeadSquaredSyncComponent`, each
declared once, in the group one resource takes as its fields (`LeadSquaredSettings`,
`SourceSettings`, `AlertSettings`; `WarehouseSettings` through its `Warehouse`). The packaged
`default` account's YAML reads each of them from an `LSQ_*` variable (attribute = variable
without `LSQ_`), so its errors name the variable.

Secrets are never values here: `access_key_env` and the other `*_env` settings NAME the variables
that hold them, read when a run starts."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lsq_pipeline.leadsquared.budget import BudgetSettings
from lsq_pipeline.sources import Sources
from lsq_pipeline.warehouse.connection import Warehouse, is_postgres, postgres_url_problem, schema_problem
from lsq_pipeline.steps.reconcile import READ_BACK_GRACE_SECONDS

SANDBOX_ACCESS_KEY = "sandbox-access-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"
DEFAULT_ACCOUNT = "default"
ENV_PREFIX = "LSQ_"
ExecutorName = Literal["in_process", "multiprocess", "inherit"]
_PATHS = frozenset({"source_dir", "mapping", "sandbox_dir", "sandbox_account", "rate_limit_db"})
"""The path settings a resource takes, relative ones from the account's `root`; an empty one means none."""


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable (default account) or the
    account and the attribute, never a secret."""


class LeadSquaredSettings(BudgetSettings):
    """Where the account's LeadSquared is and how its client spends the budget: the settings the
    `leadsquared` resource takes (its keys apart: the resource takes them by variable)."""

    sandbox: bool = Field(False, description="true: sync against the embedded LeadSquared sandbox (a local "
                                             "HTTP server the run starts) instead of api_host")
    sandbox_dir: str = Field("data/sandbox", description="state folder of the embedded sandbox")
    sandbox_account: str = Field("", description="account definition YAML (users, opportunity and activity "
                                                 "types) the embedded sandbox starts with (empty: the packaged one)")
    api_host: str = Field("", description="LeadSquared API host, e.g. https://api-in21.leadsquared.com "
                                          "(required unless sandbox is true)")
    rate_limit_db: str = Field("data/rate_limit.sqlite",
                               description="SQLite file of the budget, shared by the machine's processes "
                                           "(empty: each process its own)")
    rate_limit_redis_env: str = Field("", description="NAME of the variable holding a redis:// URL, read when "
                                                      "a run starts, that shares the budget across machines "
                                                      "(overrides rate_limit_db)")
    max_in_flight: int = Field(8, ge=1, description="calls in the air at once")
    max_retries: int = Field(5, ge=0, description="re-sends of a call that failed transiently (timeout, 5xx)")
    retry_backoff_seconds: float = Field(0.5, ge=0, description="first backoff; doubled each retry, with jitter")
    leads_in_bulk: bool = Field(True, description="create leads not known to exist with Create Leads in Bulk "
                                                  "(the bulk window) before adding opportunities; false: Bulk "
                                                  "Add first, Capture where the lead is missing")


class SourceSettings(BaseModel):
    """Where the daily exports are, how they map to LeadSquared, and the guards a run keeps to: the
    settings the `source` resource takes."""

    source_dir: str = Field("data/source", description="folder of YYYY-MM-DD/ export folders")
    mapping: str = Field("data/mapping.yaml", description="the declarative mapping YAML")
    max_reject_rate: float = Field(0.20, ge=0, le=1, description="reject share above which the run stops "
                                                                 "before the push")
    max_change_share: float = Field(0.5, ge=0, le=1, description="share of known opportunities a run may "
                                                                 "update before it stops")
    max_gone_share: float = Field(0.2, ge=0, le=1, description="share of known records a snapshot may lose at "
                                                               "once before the run stops (a broken upstream)")
    max_attempts: int = Field(5, ge=1, description="sends of a transiently failed record before it waits")
    read_back_grace_seconds: float = Field(
        READ_BACK_GRACE_SECONDS, ge=0,
        description="how long a written record may stay unseen by the read-back (pending) before it is missing",
    )
    file_settle_seconds: float = Field(60.0, ge=0, description="how long an export file must stay unchanged "
                                       "before source_files_arrived reports it")


class WarehouseSettings(BaseModel):
    """Where the account's tables are and how a run opens them: `warehouse_location()` turns them
    into the `Warehouse` the `warehouse` resource takes."""

    warehouse: str = Field("data/warehouse.duckdb", description="the DuckDB file, or postgresql://user@host:5432/db "
                                                                "(no password: libpq's PGPASSWORD or ~/.pgpass)")
    warehouse_schema: str | None = Field(None, description="PostgreSQL schema of the account's tables; default the "
                                                           "account's name ('public' for the default account)")
    warehouse_lock_timeout_seconds: float = Field(
        Warehouse.lock_timeout_seconds, ge=0,
        description="how long a run waits while another process holds the DuckDB file's lock")
    duckdb_memory_limit: str = Field(Warehouse.memory_limit, description="DuckDB fills its buffer pool up to it: "
                                     "with Python, a step stays under 1 GB")

    @field_validator("warehouse")
    @classmethod
    def _no_password(cls, value: str) -> str:
        problem = postgres_url_problem(value) if is_postgres(value) else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("warehouse_schema")
    @classmethod
    def _a_schema(cls, value: str | None) -> str | None:
        problem = schema_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value or None


class AlertSettings(BaseModel):
    """Where a failed or blocked run's alert goes: the setting the `alert_webhook` resource takes."""

    alert_webhook_env: str = Field("", description="NAME of the variable holding the alert webhook URL, read "
                                                   "when an alert is sent")


class AccountAttributes(AlertSettings, LeadSquaredSettings, WarehouseSettings, SourceSettings):
    """Where one account's source, warehouse and LeadSquared are, its limits and its guards: the
    attributes of a `LeadSquaredSyncComponent`, each declared once, in the group its resource takes."""

    model_config = ConfigDict(extra="forbid")

    source: Sources | None = Field(None, description="applications and events: each files, table or query "
                                                     "(with database, asset, day_column); none: source_dir")
    account: str = Field(DEFAULT_ACCOUNT, pattern=r"^[a-z][a-z0-9_]*$",
                         description="asset-key prefix; names the jobs, schedule, sensors, pools ('default': none)")
    access_key_env: str = Field("", description="NAME of the variable holding the access key")
    secret_key_env: str = Field("", description="NAME of the variable holding the secret key")
    automation_condition: Literal["eager"] | None = Field(
        None, description="eager: a day syncs once its export files are reported, any day a late one "
                          "included (the account's automation sensor, off until turned on); none: the "
                          "schedule and hand-launched runs only")
    max_runtime_seconds: int = Field(24 * 3600, ge=0, description="a run still going after this long is "
                                     "stopped by run monitoring as hung (0: never); a retry picks it up")
    schedule: str = Field("0 3 * * *", description="cron (UTC) of the daily sync of the day that ended")
    first_day: str | None = Field(None, description="the first daily partition, YYYY-MM-DD (required): "
                                                     "partitions never move with what is on disk")
    owners: list[str] = Field(default_factory=list, description="asset owners, e.g. team:crm-data")
    executor: ExecutorName = Field("in_process", description="in_process (default), multiprocess, or inherit "
                                                             "the deployment's executor")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: object) -> object:
        """A blank value (`{{ env('X', '') }}` of a variable not set) leaves a non-text attribute
        at its default; text attributes keep it (an empty `rate_limit_db` means none)."""
        if not isinstance(values, dict):
            return values
        return {name: value for name, value in values.items()
                if not (isinstance(value, str) and not value.strip() and _is_optional_non_text(cls, name))}

    @field_validator("owners", mode="before")
    @classmethod
    def _owners_as_text(cls, value: object) -> object:
        """`owners` from a variable: a JSON list, or names separated by commas."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        return [owner.strip() for owner in value.split(",") if owner.strip()]

    @field_validator("first_day")
    @classmethod
    def _a_day(cls, value: str | None) -> str | None:
        return None if value is None else date.fromisoformat(value).isoformat()  # ValueError names the text


def _is_optional_non_text(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    return field is not None and not field.is_required() and str not in (field.annotation, *get_args(field.annotation))


class AccountSettings(AccountAttributes):
    """An account's attributes, checked, with the folder its relative paths are taken from (the
    dg project root): names, paths, limits and the checks a run makes when it starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(Path("."), description="folder relative paths are taken from (the dg project root)")

    @model_validator(mode="after")
    def _one_leadsquared(self) -> AccountSettings:
        """The sandbox only when asked for: a production account that forgets `api_host` must not
        run green against a fake."""
        if self.sandbox and self.api_host.strip():
            raise ValueError(f"account {self.account}: api_host is set and sandbox is true: give one of them")
        if not self.sandbox and not self.api_host.strip():
            raise ValueError(f"account {self.account}: api_host is not set: give the account's API host, "
                             "or sandbox: true for the embedded sandbox")
        return self

    @model_validator(mode="after")
    def _one_source_form(self) -> AccountSettings:
        if self.source is not None and "source_dir" in self.model_fields_set:
            raise ValueError(f"account {self.account}: source and source_dir are both set: source_dir is the "
                             "short form of source: {applications: {files: ...}, events: {files: ...}}")
        return self

    # --- names -------------------------------------------------------------------------------

    @property
    def is_default(self) -> bool:
        return self.account == DEFAULT_ACCOUNT

    def name(self, base: str) -> str:
        """A job, schedule, sensor or pool name: today's for the default account, prefixed by the
        account otherwise (`acme_sync_job`)."""
        return base if self.is_default else f"{self.account}_{base}"

    def resource_key(self, role: str) -> str:
        """A resource's key, prefixed by the account whichever it is (`default_warehouse`,
        `acme_warehouse`), so a project's own `warehouse` resource never collides with it."""
        return f"{self.account}_{role}"

    def key_prefix(self) -> list[str]:
        return [] if self.is_default else [self.account]

    def setting_name(self, attribute: str) -> str:
        """How an error names a setting: `LSQ_SOURCE_DIR` (default account), `account acme: source_dir`."""
        return _setting_name(self.account, attribute)

    # --- values ------------------------------------------------------------------------------

    def path(self, attribute: str) -> Path:
        """A path setting, relative ones taken from `root`."""
        value = Path(getattr(self, attribute))
        return value if value.is_absolute() else self.root / value

    def values_of(self, group: type[BaseModel]) -> dict[str, object]:
        """One group's settings (`LeadSquaredSettings`, `SourceSettings`, ...), relative paths taken
        from `root`: what the resource built on that group takes."""
        return {name: str(self.path(name)) if name in _PATHS and getattr(self, name) else getattr(self, name)
                for name in group.model_fields}

    def warehouse_location(self) -> Warehouse:
        """Where the account's tables are: a PostgreSQL URL as it is, a file's path from `root`."""
        on_postgres = is_postgres(self.warehouse)
        return Warehouse(
            target=self.warehouse if on_postgres else str(self.path("warehouse")),
            schema=self.warehouse_schema or ("public" if self.is_default else self.account),
            memory_limit=self.duckdb_memory_limit,
            lock_timeout_seconds=self.warehouse_lock_timeout_seconds,
        )

    @property
    def uses_sandbox(self) -> bool:
        return self.sandbox

    def sources(self) -> Sources:
        """Where the records come from (`source`, else the short form `source_dir`), relative paths
        taken from `root`."""
        return (self.source or Sources.of_folder(self.source_dir)).resolved(self.root)

    @property
    def daily(self) -> bool:
        """Daily partitions (files, or a day column); otherwise each run reads a snapshot."""
        return self.sources().daily

    def first_partition_day(self) -> date:
        """`first_day`: required, so the partitions never move with the folders on disk."""
        if not self.first_day:
            raise SettingsError(f"{self.setting_name('first_day')} is not set: the first daily partition "
                                "(YYYY-MM-DD) is required")
        return date.fromisoformat(self.first_day)

    # --- checks, when a run starts -------------------------------------------------------------

    def check_keys(self) -> None:
        """With a real host, both key variables must be named and set (their values are never shown)."""
        if self.uses_sandbox:
            return
        unset = [
            self.setting_name(attribute) if not variable else variable
            for attribute, variable in (("access_key_env", self.access_key_env), ("secret_key_env", self.secret_key_env))
            if not (variable and os.environ.get(variable))
        ]
        if unset:
            raise SettingsError(f"{self.setting_name('api_host')} is set, so {' and '.join(unset)} must be set too")

    def check_paths(self) -> None:
        """Fail, naming the setting, when the source's folders, the mapping or the sandbox's
        account definition are not there."""
        sources = self.sources()
        for record_set in ("applications", "events"):
            source = sources.of(record_set)
            if source is not None and source.kind == "files" and not Path(source.files).is_dir():
                setting = "source_dir" if self.source is None else f"source.{record_set}.files"
                raise SettingsError(f"{self.setting_name(setting)}: {source.files} is not a folder")
        if not self.path("mapping").is_file():
            raise SettingsError(f"{self.setting_name('mapping')}: {self.path('mapping')} is not a file")
        if not is_postgres(self.warehouse) and self.path("warehouse").is_dir():
            raise SettingsError(f"{self.setting_name('warehouse')}: {self.path('warehouse')} is a folder, "
                                "not a DuckDB file")
        if self.uses_sandbox and self.sandbox_account:
            self.check_sandbox_account()

    def check_sandbox_account(self) -> None:
        """The embedded sandbox's account definition must load: a bad one fails the run naming the
        attribute, not as a server that did not start."""
        from lsq_pipeline.sandbox.account import account_file_problem

        path = self.path("sandbox_account")
        problem = f"{path} is not a file" if not path.is_file() else account_file_problem(path)
        if problem:
            raise SettingsError(f"{self.setting_name('sandbox_account')}: {problem}")

    def check_ready(self) -> None:
        """Everything a run needs from the disk and the environment."""
        self.check_keys()
        self.check_paths()


def settings_from(attributes: dict[str, object]) -> AccountSettings:
    """Validate an account's attributes. A bad value raises SettingsError naming the account and
    the attribute (the variable, for the default account)."""
    try:
        return AccountSettings.model_validate(attributes)
    except ValidationError as error:
        raise settings_error(error, str(attributes.get("account", DEFAULT_ACCOUNT))) from None


def settings_error(error: ValidationError, account: str) -> SettingsError:
    """A validation error as one line naming each bad setting, never a value."""
    problems = "; ".join(
        f"{_setting_name(account, '.'.join(str(part) for part in e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
        if e["loc"] else e["msg"].removeprefix("Value error, ")
        for e in error.errors(include_input=False)
    )
    return SettingsError(f"bad configuration: {problems}")


def _setting_name(account: str, attribute: str) -> str:
    return f"{ENV_PREFIX}{attribute.upper()}" if account == DEFAULT_ACCOUNT else f"account {account}: {attribute}"


def source_days(source_dir: Path) -> list[date]:
    """The `YYYY-MM-DD` folders under `source_dir`, oldest first; none if it is not a folder."""
    days = []
    for child in sorted(source_dir.iterdir()) if source_dir.is_dir() else []:
        try:
            days.append(date.fromisoformat(child.name))
        except ValueError:
            continue
    return days
