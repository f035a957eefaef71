"""The pipeline's configuration, read once from `LSQ_*` environment variables and checked early."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lsq_pipeline.leadsquared import AccountLimits
from lsq_pipeline.leadsquared.budget import PlanName, limits_of
from lsq_pipeline.sync.reconcile import READ_BACK_GRACE_SECONDS

SANDBOX_ACCESS_KEY = "sandbox-access-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the environment variable."""


class PipelineSettings(BaseSettings):
    """Where the source, the warehouse and LeadSquared are. Relative paths are taken from the
    current directory, so run commands from the project folder."""

    model_config = SettingsConfigDict(env_prefix="LSQ_", extra="ignore")

    api_host: str = Field("", description="LeadSquared API host; empty means the embedded sandbox")
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    source_dir: Path = Path("data/source")
    warehouse: Path = Path("data/warehouse.duckdb")
    mapping: Path = Path("data/mapping.yaml")
    sandbox_dir: Path = Path("data/sandbox")
    plan: PlanName | None = Field(None, description="LeadSquared plan: presets of the limits below")
    rate_limit_calls: int | None = Field(None, ge=0, description="general window; default the plan's, else 25")
    rate_limit_seconds: float | None = Field(None, gt=0)
    bulk_rate_limit_calls: int | None = Field(None, ge=0, description="Bulk APIs window; default the plan's")
    bulk_rate_limit_seconds: float | None = Field(None, gt=0)
    daily_call_limit: int | None = Field(None, ge=0, description="calls a UTC day; default the plan's, else none")
    bulk_counts_against_general: bool = True
    rate_limit_db: str = "data/rate_limit.sqlite"
    rate_limit_redis: str = Field("", description="redis://... shares the budget across machines")
    max_in_flight: int = Field(8, ge=1)
    max_retries: int = Field(5, ge=0, description="re-sends of a call that failed transiently (timeout, 5xx)")
    retry_backoff_seconds: float = Field(0.5, ge=0, description="first backoff; doubled each retry, with full jitter")
    leads_in_bulk: bool = True
    max_reject_rate: float = Field(0.20, ge=0, le=1)
    max_change_share: float = Field(0.5, ge=0, le=1)
    max_attempts: int = Field(5, ge=1)
    read_back_grace_seconds: float = Field(
        READ_BACK_GRACE_SECONDS, ge=0,
        description="how long a written record may stay unseen by the read-back (pending) before it is missing",
    )
    alert_webhook: str = ""
    file_settle_seconds: float = Field(60.0, ge=0)
    duckdb_memory_limit: str = "768MB"  # DuckDB fills its buffer pool up to it: + Python, a step stays under 1 GB

    @field_validator("plan", mode="before")
    @classmethod
    def _plan_in_any_case(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _keys_with_a_real_host(self) -> PipelineSettings:
        if self.api_host and not (self.access_key and self.secret_key):
            missing = [
                name
                for name, value in (("LSQ_ACCESS_KEY", self.access_key), ("LSQ_SECRET_KEY", self.secret_key))
                if not value
            ]
            raise ValueError(f"LSQ_API_HOST is set, so {' and '.join(missing)} must be set too")
        return self

    def account_limits(self) -> AccountLimits:
        """The plan's preset with every variable set explicitly put over it."""
        return limits_of(self)

    @property
    def uses_sandbox(self) -> bool:
        return not self.api_host

    def access_key_value(self) -> str:
        return self.access_key.get_secret_value() if self.access_key else SANDBOX_ACCESS_KEY

    def secret_key_value(self) -> str:
        return self.secret_key.get_secret_value() if self.secret_key else SANDBOX_SECRET_KEY

    def check_paths(self) -> None:
        """Fail early, naming the variable, when the source or the mapping is not there."""
        if not self.source_dir.is_dir():
            raise SettingsError(f"LSQ_SOURCE_DIR: {self.source_dir} is not a folder")
        if not self.mapping.is_file():
            raise SettingsError(f"LSQ_MAPPING: {self.mapping} is not a file")
        if self.warehouse.exists() and self.warehouse.is_dir():
            raise SettingsError(f"LSQ_WAREHOUSE: {self.warehouse} is a folder, not a DuckDB file")


def load_settings() -> PipelineSettings:
    """Read the environment; a bad value raises SettingsError naming the variable, never a key."""
    try:
        return PipelineSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"LSQ_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"].removeprefix("Value error, ")
            for e in error.errors(include_input=False)
        )
        raise SettingsError(f"bad configuration: {problems}") from None
