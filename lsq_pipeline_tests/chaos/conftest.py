"""Fixtures of the chaos tests: a faulty, slow, rate-limited sandbox and generated dirty source."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import subprocess_env

REPO = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 11, 1)
# The account's window: small, so a burst of the second client fills it.
WINDOW_CALLS, WINDOW_SECONDS = 40, 0.5
CHAOS = dict(fault_rate=0.05, lost_response_rate=0.02, latency_ms=30)


# Every chaos test runs under each of the sandbox's behaviour profiles (docs/guarantees.md,
# "Under each sandbox profile").
PROFILES = ("documented", "terse", "field")
READ_LAG_SECONDS = 20.0
"""The read lag of the chaos case that adds one: longer than the reconcile's same-run
re-read, so records really wait `pending` across runs."""


@dataclass(frozen=True)
class ChaosCase:
    """One sandbox the chaos sync runs against: a profile, a read lag (None: the profile's), a source size."""

    profile: str
    read_lag_seconds: float | None = None
    rows: int = 2000
    events: int = 600
    warehouse: str = "duckdb"

    def __str__(self) -> str:
        return (self.profile + (f"-read-lag-{self.read_lag_seconds:g}s" if self.read_lag_seconds else "")
                + ("-postgres" if self.warehouse == "postgres" else ""))


# The read-lag case at a smaller size: its runs wait the lag out once more at the end.
CASES = (*(ChaosCase(profile) for profile in PROFILES),
         ChaosCase("field", read_lag_seconds=READ_LAG_SECONDS, rows=800, events=240),
         ChaosCase("field", warehouse="postgres"))


@pytest.fixture(params=CASES, ids=str)
def chaos_case(request) -> ChaosCase:
    return request.param


@pytest.fixture
def chaos_sandbox(chaos_case, start_sandbox):
    return start_sandbox(rate_limit_calls=WINDOW_CALLS, rate_limit_seconds=WINDOW_SECONDS, seed=5,
                         profile=chaos_case.profile, read_lag_seconds=chaos_case.read_lag_seconds, **CHAOS)


@pytest.fixture
def source(tmp_path, chaos_case) -> Path:
    """About 2,000 application rows (some dirty, some later versions) over four days (fewer for the read-lag case)."""
    out = tmp_path / "source"
    generate(out, rows=chaos_case.rows, days=4, seed=23, start_day=FIRST_DAY, dirty_rate=0.05,
             events=chaos_case.events)
    return out


@pytest.fixture
def sync_process(tmp_path, warehouse_target):
    """`start(sandbox_url, source, *days)` -> a `lsq-pipeline sync` process in its own process
    group on a tmp DAGSTER_HOME (a copy of the shipped instance/dagster.yaml) and the test's
    warehouse; every process still alive at the end is killed with its group. On PostgreSQL the
    instance has no pool limits: correctness must not depend on them there."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = yaml.safe_load((REPO / "instance" / "dagster.yaml").read_text())
    if isinstance(warehouse_target, str):
        instance.pop("concurrency")
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    warehouse = warehouse_target
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
