"""Fixtures of the chaos tests: a faulty, slow, rate-limited sandbox and generated dirty source."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import date
from pathlib import Path

import pytest

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.sync.generate import generate
from lsq_pipeline_tests.chaos.checks import subprocess_env

REPO = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 11, 1)
# The account's window: small, so a burst of the second client fills it.
WINDOW_CALLS, WINDOW_SECONDS = 40, 0.5
CHAOS = dict(fault_rate=0.05, lost_response_rate=0.02, latency_ms=30)


# Every chaos test runs under each of the sandbox's behaviour profiles (README: "Guarantees
# under each sandbox profile").
PROFILES = ("documented", "terse", "field")


@pytest.fixture(params=PROFILES)
def chaos_sandbox(request):
    with run_sandbox(rate_limit_calls=WINDOW_CALLS, rate_limit_seconds=WINDOW_SECONDS, seed=5,
                     profile=request.param, **CHAOS) as running:
        yield running


@pytest.fixture
def source(tmp_path) -> Path:
    """About 2,000 application rows (some dirty, some later versions) over four days."""
    out = tmp_path / "source"
    generate(out, rows=2000, days=4, seed=23, start_day=FIRST_DAY, dirty_rate=0.05, events=600)
    return out


@pytest.fixture
def sync_process(tmp_path):
    """`start(sandbox_url, source, *days)` -> a `lsq-pipeline sync` process in its own process
    group on a tmp DAGSTER_HOME (a copy of the shipped instance/dagster.yaml) and a tmp warehouse;
    every process still alive at the end is killed with its group."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    warehouse = tmp_path / "warehouse.duckdb"
    started: list[subprocess.Popen] = []

    def start(sandbox_url: str, source_dir: Path, first: date, last: date, log_name: str = "sync",
              rate_limit: tuple[int, float] = (0, 1.0), executor: str = "in_process") -> subprocess.Popen:
        env = subprocess_env(
            os.environ, sandbox_url=sandbox_url, source=source_dir, warehouse=warehouse, dagster_home=home,
            rate_limit_db=tmp_path / "rate_limit.sqlite", rate_limit=rate_limit,
        )
        env["LSQ_EXECUTOR"] = executor
        log = open(tmp_path / f"{log_name}.log", "ab")
        process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "lsq-pipeline"), "sync", "--from", first.isoformat(), "--to", last.isoformat()],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        process.log_path = tmp_path / f"{log_name}.log"
        started.append(process)
        return process

    start.warehouse = warehouse
    start.home = home
    yield start
    for process in started:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
