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

from lsq_pipeline.leadsquared import LeadSquaredClient
from lsq_pipeline.settings import LeadSquaredSettings
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


class LeadSquaredResource(dg.ConfigurableResource, LeadSquaredSettings):
    """The LeadSquared account: a rate-limited, concurrent, retrying client that never doubles a record.

    Its settings are the account's `LeadSquaredSettings`. `sandbox` true means the embedded sandbox
    (one local process shared by every process of this machine, state under `sandbox_dir`, account
    definition `sandbox_account` or the packaged one);
    otherwise `api_host` is required. Keys come from `dg.EnvVar`; they are sent in headers only and
    never appear in logs, errors or metadata.
    """

    access_key: str = Field(description="LeadSquared access key (use dg.EnvVar('LSQ_ACCESS_KEY'))")
    secret_key: str = Field(description="LeadSquared secret key (use dg.EnvVar('LSQ_SECRET_KEY'))")
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
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
            account=Path(self.sandbox_account) if self.sandbox_account else None,
        )

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
                    backoff_base=self.retry_backoff_seconds,
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
    held by another process is waited out (see `warehouse.connection`). Built from the account's
    `Warehouse` by `at`."""

    warehouse_schema: str = Field(description="PostgreSQL schema of the account's tables")
    lock_timeout_seconds: float = Field(description="wait for another process's lock on the file")

    @classmethod
    def at(cls, location: Warehouse) -> WarehouseResource:
        return cls(database=location.target, warehouse_schema=location.schema,
                   connection_config={"memory_limit": location.memory_limit},
                   lock_timeout_seconds=location.lock_timeout_seconds)

    def location(self) -> Warehouse:
        return Warehouse(self.database, self.warehouse_schema, self.connection_config.get("memory_limit", Warehouse.memory_limit),
                         self.lock_timeout_seconds)

    def writer_lock(self) -> AbstractContextManager[None]:
        return self.location().writer_lock(dg.get_dagster_logger().info)

    @contextmanager
    def get_connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.location().connect(dg.get_dagster_logger().warning, read_only=read_only) as conn:
            yield conn
