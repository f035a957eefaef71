"""The benchmark scripts still run, on small inputs: their figures go in the README, so a script
that rotted (an option DuckDB stopped accepting, a renamed function) would leave figures nobody
can reproduce. No timing is asserted here; each script's own checks of its results are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lsq_pipeline_tests.postgres import PostgresUnavailable, bindir

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(("script", "arguments", "expected"), [
    ("local_scale.py", ["--rows", "3000", "--days", "2", "--repeat", "2"], ["-> PASS", "2 runs: "]),
    ("first_sync.py", ["--rows", "60", "--latency-ms", "0", "--general", "100/1", "--bulk", "50/1"],
     [": ok", "(0 doubled); opportunities"]),
    ("end_to_end.py", ["--rows", "300"], ["re-sync, no change, full reconcile: ok"]),
    ("local_scale.py", ["--rows", "3000", "--days", "2", "--warehouse", "postgres"], ["-> PASS"]),
    ("end_to_end.py", ["--rows", "300", "--warehouse", "postgres"], ["re-sync, no change, full reconcile: ok"]),
    ("client_throughput.py", ["--items", "100", "--skip-limited"], ["no limit, no latency: 100 updates"]),
    ("table_sources.py", ["--rows", "3000", "--days", "3", "--repeat", "1"],
     ["read whole table", "snapshot, no change: PostgreSQL / DuckDB table"]),
])
def test_benchmark_runs_on_a_small_input(tmp_path: Path, script: str, arguments: list[str],
                                         expected: list[str]) -> None:
    if "postgres" in arguments or script == "table_sources.py":  # table_sources starts a server of its own
        try:
            bindir()
        except PostgresUnavailable as missing:
            pytest.skip(str(missing))
    out = ["--out", str(tmp_path / "out")] if script != "client_throughput.py" else []
    finished = subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments, *out],
                              capture_output=True, text=True, timeout=300, cwd=BENCHMARKS.parent)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for text in expected:
        assert text in finished.stdout, finished.stdout[-3000:]
    assert "Traceback" not in finished.stderr
