"""Every run carries the account's run tags, however it was started: the jobs carry them, and a
run of Dagster's implicit asset job (the UI's "Materialize", a backfill, automation) gets them from
its first step, stored where the retry daemon and run monitoring read them."""

from __future__ import annotations

import dagster as dg

from lsq_pipeline.orchestration.assets import ACCOUNT_TAG
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY


def test_a_materialize_outside_the_jobs_is_tagged_like_the_accounts_runs(make_pipeline):
    pipeline = make_pipeline(rows=10)
    defs = pipeline.definitions()
    job_tags = defs.resolve_job_def("sync_job").tags
    assert job_tags[ACCOUNT_TAG] == "default" and job_tags["dagster/retry_on_asset_or_op_failure"] == "false"
    implicit = defs.resolve_implicit_global_asset_job_def()
    result = implicit.execute_in_process(
        instance=pipeline.instance, partition_key=FIRST_DAY.isoformat(), raise_on_error=False,
        asset_selection=[dg.AssetKey("raw_applications"), dg.AssetKey("raw_events")],
    )
    assert result.success and result.dagster_run.job_name == "__ASSET_JOB"
    stored = pipeline.instance.get_run_by_id(result.run_id).tags
    assert {name: stored.get(name) for name in job_tags} == dict(job_tags)
