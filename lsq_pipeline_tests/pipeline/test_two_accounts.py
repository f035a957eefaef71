"""Two LeadSquared accounts in one deployment, synced at the same time: each account's records
land only in its own LeadSquared, each budget holds, and state never crosses accounts."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import pytest
import requests

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline, key_variable

WINDOW = (5, 5.0)  # each account's plan: 5 calls in 5 s


def push_span(pipeline: Pipeline, run_id: str) -> tuple[float, float]:
    """When the run's push step started and ended, from the instance's events."""
    times = [
        record.event_log_entry.timestamp
        for kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)
        for record in pipeline.instance.get_records_for_run(run_id, of_type=kind).records
        if record.event_log_entry.step_key.endswith("push")
    ]
    return min(times), max(times)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("budget_store", ["sqlite", "redis"])
def test_two_accounts_synced_at_once_keep_apart(tmp_path, request, budget_store, warehouse_target):
    shared = {"rate_limit_calls": WINDOW[0], "rate_limit_seconds": WINDOW[1], "bulk_rate_limit_calls": WINDOW[0]}
    if budget_store == "redis":
        shared["rate_limit_redis_env"] = key_variable(request.getfixturevalue("redis_url"))
    pipelines: dict[str, Pipeline] = {}
    with (
        run_sandbox(access_key="acme-access", secret_key="acme-secret", rate_limit_calls=WINDOW[0],
                    rate_limit_seconds=WINDOW[1]) as acme_lsq,
        run_sandbox(access_key="globex-access", secret_key="globex-secret", rate_limit_calls=WINDOW[0],
                    rate_limit_seconds=WINDOW[1]) as globex_lsq,
    ):
        for account, sandbox, seed in (("acme", acme_lsq, 3), ("globex", globex_lsq, 4)):
            folder = tmp_path / account
            generate(folder / "source", rows=40, days=1, seed=seed, start_day=FIRST_DAY, dirty_rate=0.0)
            # a DuckDB file each; one PostgreSQL database for both, each account in its own schema
            warehouse = folder / "warehouse.duckdb" if isinstance(warehouse_target, Path) else warehouse_target
            pipelines[account] = Pipeline(
                source_dir=folder / "source", warehouse=warehouse, sandbox_url=sandbox.url,
                access_key=f"{account}-access", secret_key=f"{account}-secret", account=account,
                # one budget file for both, as two instances of one deployment would share it
                overrides={**shared, "rate_limit_db": str(tmp_path / "rate_limit.sqlite")},
            )
        merged = dg.Definitions.merge(*(p.definitions() for p in pipelines.values()))
        assert {"acme_sync_job", "globex_sync_job"} <= {job.name for job in merged.jobs}

        results = {}
        threads = [threading.Thread(target=lambda a=a: results.__setitem__(a, pipelines[a].run(FIRST_DAY)))
                   for a in pipelines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        spans, held, state = {}, {}, {}
        for account, pipeline in pipelines.items():
            result = results[account]
            assert result.success, account
            spans[account] = push_span(pipeline, result.run_id)
            stats = pipeline.stats()
            assert sum(stats["Refused"][rate_class].get("window", 0) for rate_class in stats["Refused"]) == 0, stats
            accepted = pipeline.scalar("SELECT count(DISTINCT source_id) FROM opportunity_records")
            remote = pipeline.remote_by_source()
            assert len(remote) == accepted and all(len(v) == 1 for v in remote.values()), account
            held[account] = {o["ProspectOpportunityId"] for o in pipeline.remote()}
            state[account] = {r[0] for r in pipeline.query("SELECT opportunity_id FROM opportunity_state")}
            statuses = dict(pipeline.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))
            assert statuses == {"in_sync": accepted}, (account, statuses)
        # the two exports share source ids: each account's state names only its own LeadSquared's opportunities
        assert state["acme"] == held["acme"] and state["globex"] == held["globex"]
        assert held["acme"] and not held["acme"] & held["globex"], "state crossed accounts"
        (a_start, a_end), (g_start, g_end) = spans["acme"], spans["globex"]
        assert a_start < g_end and g_start < a_end, f"the pushes did not overlap: {spans}"
        with pytest.raises(requests.HTTPError):  # each sandbox knows only its own keys
            requests.get(f"{globex_lsq.url}/sandbox/stats", headers=pipelines["acme"].key_headers(),
                         timeout=10).raise_for_status()
