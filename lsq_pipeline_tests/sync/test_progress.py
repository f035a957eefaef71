"""The push's progress line: done and left per action, each window against its ceiling, an ETA,
refused calls; logged every interval while the push runs, and not at all by a short push."""

from __future__ import annotations

import time

from lsq_pipeline.leadsquared import LeadSquaredClient
from lsq_pipeline.steps.push.progress import PushProgress


def client(calls: int = 25) -> LeadSquaredClient:
    return LeadSquaredClient("http://127.0.0.1:9", "access", "secret", rate_limit_calls=calls, rate_limit_seconds=5)


def test_the_line_says_done_and_left_per_action_rates_against_ceilings_eta_and_refusals() -> None:
    with client() as lsq:
        progress = PushProgress(lsq, log=lambda line: None)
        progress.plan("leads", 100)
        progress.plan("creates", 120)
        progress.plan("updates", 0)
        time.sleep(0.2)
        progress.done("leads", 50)
        progress.done("creates", 20)
        line = progress.line()
    assert line.startswith("push 0 s: leads 50 done, 50 left, creates 20 done, 100 left; ")
    assert "updates" not in line  # nothing planned: not shown
    assert "general 0.0 calls/s of 5.0 (0%)" in line
    assert "bulk 0.0 calls/s of 5.0 (0%)" in line
    records_per_second = float(line.split("; ")[1].split()[0])
    assert 20 < records_per_second <= 100  # 20 records in a little over 0.2 s
    assert "ETA " in line and "ETA unknown" not in line
    assert line.endswith("refused calls (429) 0")


def test_no_window_no_progress_eta_unknown() -> None:
    with client(calls=0) as lsq:
        progress = PushProgress(lsq, log=lambda line: None)
        progress.plan("activities", 5)
        line = progress.line()
    assert "activities 0 done, 5 left" in line
    assert "general 0.0 calls/s (no limit)" in line and "ETA unknown" in line


def test_lines_come_every_interval_and_a_short_push_logs_none() -> None:
    lines: list[str] = []
    with client() as lsq:
        with PushProgress(lsq, lines.append, every=0.1).reporting():
            time.sleep(0.35)
        assert 2 <= len(lines) <= 4 and all(line.startswith("push ") for line in lines)
        lines.clear()
        with PushProgress(lsq, lines.append, every=10).reporting():
            pass
    assert lines == []
