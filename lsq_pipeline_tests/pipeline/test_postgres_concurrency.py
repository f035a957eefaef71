"""Correct without our instance file: on a PostgreSQL warehouse, two runs at once of overlapping
days, each on a Dagster instance of its own (two machines: neither sees the other's runs) and with
no pool limits at all, keep every promise; a psql session holding a transaction open across both
syncs, having read the state inside it, neither blocks nor fails them. And two accounts share one
database, each in its own schema."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import timedelta

import dagster as dg
import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline.warehouse.schema import ensure_schema
from lsq_pipeline_tests.chaos.checks import assert_end_state
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline

SECOND_DAY, THIRD_DAY = FIRST_DAY + timedelta(days=1), FIRST_DAY + timedelta(days=2)
WRITES = ("BulkAdd", "Capture", "BulkUpdate", "BulkActivities")


def _writes(pipeline: Pipeline) -> int:
    calls = pipeline.stats()["Calls"]
    return sum(calls.get(name, 0) for name in WRITES)


@pytest.mark.timeout(420)
def test_two_runs_at_once_on_two_instances_with_no_pools_keep_every_promise(tmp_path, postgres_server, start_sandbox):
    url = postgres_server.url(postgres_server.new_database())
    source = tmp_path / "source"
    generate(source, rows=150, days=3, seed=23, start_day=FIRST_DAY, dirty_rate=0.0)
    # A reader holds a transaction open across both syncs, having read the state inside it.
    psql = subprocess.Popen(["psql", "-X", "-q", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sandbox = start_sandbox(latency_ms=150)
    # Two machines: two ephemeral instances (no pools, no shared run history), one database.
    first = Pipeline(source, url, sandbox.url, instance=dg.DagsterInstance.ephemeral())
    second = Pipeline(source, url, sandbox.url, instance=dg.DagsterInstance.ephemeral())
    with first.settings().warehouse_location().connect() as conn:
        ensure_schema(conn)  # the tables exist before the reader's snapshot
    psql.stdin.write("BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT count(*) FROM opportunity_state;\n")
    psql.stdin.flush()

    spans: dict[str, tuple[float, float]] = {}
    results: dict[str, object] = {}

    def run(name: str, pipeline: Pipeline, first_day, last_day) -> None:
        started = time.monotonic()
        results[name] = pipeline.run(first_day, last_day)
        spans[name] = (started, time.monotonic())

    threads = [threading.Thread(target=run, args=("first", first, FIRST_DAY, SECOND_DAY)),
               threading.Thread(target=run, args=("second", second, SECOND_DAY, THIRD_DAY))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=360)
    assert results["first"].success and results["second"].success
    (a_start, a_end), (b_start, b_end) = spans["first"], spans["second"]
    assert a_start < b_end and b_start < a_end, "the two runs did not overlap in time"

    psql.stdin.write("SELECT 'reader still in its transaction';\nCOMMIT;\n")
    psql.stdin.close()
    assert "reader still in its transaction" in psql.stdout.read()
    assert psql.wait(timeout=30) == 0

    remote = first.remote_by_source()
    assert remote and all(len(opportunities) == 1 for opportunities in remote.values())
    states = dict(first.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))
    assert states == {"in_sync": len(remote)}
    # An event of one run's days whose record only the other run creates waits for its
    # opportunity, as when days are synced out of order: a sync of every day sends it.
    assert second.run(FIRST_DAY, THIRD_DAY).success
    end = assert_end_state(first)
    assert end.statuses == {"in_sync": len(end.accepted)}
    before = _writes(first)
    assert first.run(FIRST_DAY, THIRD_DAY).success
    assert _writes(first) == before, "a re-sync of every day sent writes"


@pytest.mark.timeout(240)
def test_two_accounts_share_one_database_each_in_its_schema(tmp_path, postgres_server, sandbox):
    url = postgres_server.url(postgres_server.new_database())
    for account, seed in (("acme", 31), ("globex", 32)):
        source = tmp_path / account
        generate(source, rows=30, days=1, seed=seed, start_day=FIRST_DAY, dirty_rate=0.0)
        pipeline = Pipeline(source, url, sandbox.url, account=account)
        assert pipeline.run(FIRST_DAY).success
    tables = postgres_server.psql("SELECT table_schema, count(*) FROM information_schema.tables "
                                  "WHERE table_name = 'opportunity_state' GROUP BY 1 ORDER BY 1",
                                  database=url.rsplit("/", 1)[1])
    assert tables.splitlines() == ["acme|1", "globex|1"]
    counts = {schema: postgres_server.psql(f"SELECT count(*) FROM {schema}.opportunity_state WHERE status = 'in_sync'",
                                           database=url.rsplit("/", 1)[1]) for schema in ("acme", "globex")}
    assert counts["acme"] != "0" and counts["globex"] != "0"
