"""Dagster resources: the only doors from the assets to the outside world."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lsq_pipeline.leadsquared import AccountLimits, LeadSquaredClient
from lsq_pipeline.leadsquared.budget import limits_of
from lsq_pipeline.warehouse.connection import Warehouse

_SECRET_FIELDS = {"access_key", "secret_key"}
_clients: dict[str, LeadSquaredClient] = {}
_clients_lock = threading.Lock()


def normalize_api_host(api_host: str) -> str:
    """`api-in21.leadsquared.com` or `https://api-in21.leadsquared.com/` -> `https://api-in21.leadsquared.com`."""
    host = api_host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    return host


class LeadSquaredResource(dg.ConfigurableResource):
    """The LeadSquared account: a rate-limited, concurrent, retrying client that never doubles a record.

    `sandbox` true means the embedded sandbox (one local process shared by every process of this
    machine, state under `sandbox_dir`); otherwise `api_host` is required. Keys come from
    `dg.EnvVar`; they are sent in headers only and never appear in logs, errors or metadata.
    """

    api_host: str = Field(default="", description="e.g. https://api-in21.leadsquared.com (unless sandbox)")
    sandbox: bool = Field(default=False, description="talk to the embedded LeadSquared sandbox instead of api_host")
    access_key: str = Field(description="LeadSquared access key (use dg.EnvVar('LSQ_ACCESS_KEY'))")
    secret_key: str = Field(description="LeadSquared secret key (use dg.EnvVar('LSQ_SECRET_KEY'))")
    sandbox_dir: str = Field(default="data/sandbox", description="state folder of the embedded sandbox")
    plan: str = Field(default="", description="LeadSquared plan (lite, pro, super, basic, standard, enterprise): presets")
    rate_limit_calls: int | None = Field(default=None, description="general window: calls (0 = off); default the plan's, else 25")
    rate_limit_seconds: float | None = Field(default=None, description="general window: seconds; default the plan's, else 5")
    bulk_rate_limit_calls: int | None = Field(default=None, description="Bulk APIs window: calls; default the plan's")
    bulk_rate_limit_seconds: float | None = Field(default=None, description="Bulk APIs window: seconds")
    daily_call_limit: int | None = Field(default=None, description="calls a UTC day, all classes; default the plan's")
    bulk_counts_against_general: bool = Field(default=True, description="a bulk call also takes a general start")
    rate_limit_db: str = Field(
        default="", description="SQLite file shared by every process of the account, so they share one budget"
    )
    rate_limit_redis_env: str = Field(
        default="", description="NAME of the variable holding a redis://... URL, read when a run starts: the "
                                "budget is then shared across machines (overrides rate_limit_db)"
    )
    max_in_flight: int = Field(default=8, description="calls in the air at once")
    leads_in_bulk: bool = Field(
        default=True,
        description="create leads not known to exist with Create Leads in Bulk (the bulk window) before adding "
        "opportunities; false: Bulk Add first, Capture where the lead is missing",
    )
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = Field(default=5, description="re-sends of a transiently failed call")
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def base_url(self) -> str:
        """The API's base URL; starts (or joins) the embedded sandbox when `sandbox` is true."""
        if not self.sandbox:
            if not self.api_host.strip():
                raise ValueError("LeadSquaredResource: api_host is not set (sandbox: true for the embedded sandbox)")
            return normalize_api_host(self.api_host)
        from lsq_pipeline.sandbox.embedded import ensure_sandbox

        limits = self.account_limits()  # the embedded sandbox models the account as configured
        return ensure_sandbox(
            Path(self.sandbox_dir),
            access_key=self.access_key,
            secret_key=self.secret_key,
            rate_limit_calls=limits.general.calls,
            rate_limit_seconds=limits.general.seconds,
            bulk_rate_limit_calls=limits.bulk.calls,
            bulk_rate_limit_seconds=limits.bulk.seconds,
            daily_limit=limits.daily_calls,
        )

    def account_limits(self) -> AccountLimits:
        """The plan's preset with every field set explicitly put over it."""
        return limits_of(self)

    def get_client(self) -> LeadSquaredClient:
        """The client for this configuration, one per process (so one rate-limit window per process)."""
        cache_key = self._cache_key()
        with _clients_lock:
            client = _clients.get(cache_key)
            if client is None:
                limits = self.account_limits()
                client = LeadSquaredClient(
                    self.base_url(),
                    self.access_key,
                    self.secret_key,
                    rate_limit_calls=limits.general.calls,
                    rate_limit_seconds=limits.general.seconds,
                    bulk_rate_limit_calls=limits.bulk.calls,
                    bulk_rate_limit_seconds=limits.bulk.seconds,
                    daily_call_limit=limits.daily_calls,
                    bulk_counts_against_general=limits.bulk_counts_against_general,
                    max_in_flight=self.max_in_flight,
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    max_retries=self.max_retries,
                    backoff_base=self.backoff_base,
                    backoff_max=self.backoff_max,
                    rate_limit_db=self.rate_limit_db or None,
                    rate_limit_redis=self._redis_url(),
                )
                _clients[cache_key] = client
            return client

    def _redis_url(self) -> str | None:
        """The shared budget's Redis, decided when the run starts: a variable set only on the run
        workers counts."""
        return os.environ.get(self.rate_limit_redis_env) or None if self.rate_limit_redis_env else None

    def __repr_args__(self):  # used by pydantic for both repr() and str()
        for name, value in super().__repr_args__():
            yield name, ("<hidden>" if name in _SECRET_FIELDS and value else value)

    def _cache_key(self) -> str:
        """A digest of the configuration (keys included, hashed: the key never sits in a dict)."""
        parts = [str(os.getpid()), f"redis={self._redis_url()}"]
        parts += [f"{name}={getattr(self, name)}" for name in sorted(type(self).model_fields)]
        return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


class WarehouseResource(DuckDBResource):
    """The account's warehouse: dagster-duckdb's `DuckDBResource` whose `database` is a DuckDB file
    or a PostgreSQL database (`postgresql://` URL, no password) that DuckDB attaches; a file's lock
    held by another process is waited out (see `sync.connection`)."""

    warehouse_schema: str = Field(default="public", description="PostgreSQL schema of the account's tables")
    lock_timeout_seconds: float = Field(default=600.0, description="wait for another process's lock on the file")

    def location(self) -> Warehouse:
        return Warehouse(self.database, self.warehouse_schema, self.connection_config.get("memory_limit", Warehouse.memory_limit),
                         self.lock_timeout_seconds)

    def writer_lock(self) -> AbstractContextManager[None]:
        return self.location().writer_lock(dg.get_dagster_logger().info)

    @contextmanager
    def get_connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.location().connect(dg.get_dagster_logger().warning, read_only=read_only) as conn:
            yield conn
