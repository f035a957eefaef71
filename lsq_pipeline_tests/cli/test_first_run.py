"""The commands as a new user meets them: `.venv/bin/lsq-pipeline` without an activated venv,
no Dagster warnings in `demo` and `sync`, a failed run's summary, `history` and `retry`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lsq_pipeline.sandbox.server import stop_server
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY

REPO = Path(__file__).resolve().parents[2]
COMMAND = Path(sys.executable).parent / "lsq-pipeline"


def project(tmp_path: Path, rows: int = 20, days: int = 2) -> Path:
    """A project folder as a user has it: data/source, data/mapping.yaml, instance/dagster.yaml."""
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "data" / "mapping.yaml", tmp_path / "data" / "mapping.yaml")
    (tmp_path / "instance").mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", tmp_path / "instance" / "dagster.yaml")
    shutil.copy(REPO / "workspace.yaml", tmp_path / "workspace.yaml")
    generate(tmp_path / "data" / "source", rows=rows, days=days, seed=5, start_day=FIRST_DAY, dirty_rate=0.05)
    return tmp_path


def clean_env(**extra: str) -> dict[str, str]:
    """No activated venv (PATH without .venv/bin), no LSQ_* or DAGSTER_HOME from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LSQ_", "DAGSTER_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["LSQ_RATE_LIMIT_CALLS"] = "0"
    return {**env, **extra}


def lsq(folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([str(COMMAND), *args], cwd=folder, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(600)
def test_demo_sync_and_history_print_no_dagster_warning(tmp_path):
    folder = project(tmp_path)
    demo = lsq(folder, "demo")
    assert demo.returncode == 0, demo.stderr
    output = demo.stdout + demo.stderr
    assert "Warning" not in output and "get_event_records" not in output, output
    assert f"{FIRST_DAY}  created" in demo.stdout

    sync = lsq(folder, "sync", "--partition", FIRST_DAY.isoformat())
    assert sync.returncode == 0, sync.stderr
    assert "Warning" not in sync.stdout + sync.stderr
    assert " - DEBUG - " not in sync.stdout + sync.stderr, "Dagster's engine debug lines on the console"
    assert "created    0  updated    0" in sync.stdout

    history = lsq(folder, "history", "--last", "2")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.strip().splitlines()
    assert lines[0].startswith("run_id") and len(lines) == 3
    assert all("succeeded" in line for line in lines[1:])


@pytest.mark.timeout(300)
def test_a_failed_runs_summary_says_what_was_sent_before_it_failed(tmp_path, start_sandbox):
    folder = project(tmp_path, rows=20, days=1)
    sandbox = start_sandbox(latency_ms=100)

    # LeadSquared goes away once the first opportunity has landed: the push sends on, then
    # fails for good on a call that cannot be put off (activities, or the read-back).
    def stop_after_first_write() -> None:
        while not sandbox.backend.opportunities:
            time.sleep(0.01)
        stop_server(sandbox.server)

    threading.Thread(target=stop_after_first_write, daemon=True).start()
    env = clean_env(LSQ_API_HOST=sandbox.url, LSQ_ACCESS_KEY=SANDBOX_ACCESS_KEY,
                    LSQ_SECRET_KEY=SANDBOX_SECRET_KEY)
    sync = lsq(folder, "sync", "--partition", FIRST_DAY.isoformat(), env=env)
    landed = len(sandbox.backend.opportunities)
    assert sync.returncode == 1
    assert landed > 0
    [failed_line] = [line for line in sync.stdout.splitlines() if "RUN FAILED" in line]
    sent = re.search(r"it sent (\d+) write calls: created (\d+),", failed_line)
    assert sent, failed_line
    calls, created = map(int, sent.groups())
    assert calls > 0 and 0 < created <= landed  # some answers were lost as LeadSquared went away
    assert "API calls   0" not in sync.stdout

    history = lsq(folder, "history", env=env)
    assert "failed" in history.stdout.splitlines()[1]


def test_a_day_outside_the_partitions_is_refused_naming_the_first_day(tmp_path):
    folder = project(tmp_path, rows=5, days=1)
    before = lsq(folder, "sync", "--partition", "2026-10-01")
    assert before.returncode == 2 and "Traceback" not in before.stderr
    assert "2026-10-01 is before the account's first day 2026-11-01 (LSQ_FIRST_DAY" in before.stderr
    unfinished = lsq(folder, "sync", "--partition", "2999-01-01")
    assert unfinished.returncode == 2 and "2999-01-01 has not ended yet" in unfinished.stderr
