"""Keys never reach logs, run metadata, the warehouse or error messages, even when calls fail."""

from __future__ import annotations

import logging

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import Pipeline

ACCESS_KEY = "u$rAK-distinctive-7f3a9c"
SECRET_KEY = "SK-distinctive-19be44d2"


def _everything_the_run_left(pipeline: Pipeline, run_id: str) -> str:
    records = pipeline.instance.get_records_for_run(run_id, limit=100000).records
    texts = [str(record.event_log_entry) for record in records]
    run = pipeline.instance.get_run_by_id(run_id)
    texts += [str(run.run_config), str(run.tags)]
    with pipeline.settings().warehouse_location().connect(read_only=True) as conn:
        tables = [table for (table,) in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = current_schema()").fetchall()]
        assert "push_journal" in tables  # the account's own tables, on either warehouse
        for table in tables:
            texts += [str(row) for row in conn.execute(f'SELECT * FROM "{table}"').fetchall()]
    return "\n".join(texts)


def test_keys_appear_nowhere_after_a_sync_that_partly_fails(tmp_path, caplog, start_sandbox, warehouse_target):
    caplog.set_level(logging.DEBUG)
    source = tmp_path / "source"
    generate(source, rows=30, days=1, seed=5, start_day=FIRST_DAY, dirty_rate=0.2)
    sandbox = start_sandbox(access_key=ACCESS_KEY, secret_key=SECRET_KEY, fault_rate=0.2, seed=3)
    pipeline = Pipeline(source, warehouse_target, sandbox.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    good = pipeline.run(FIRST_DAY)
    assert good.success
    assert pipeline.remote()  # the keys did work
    # Now with a wrong secret: the push fails with an authentication error.
    wrong = Pipeline(source, warehouse_target, sandbox.url, instance=pipeline.instance,
                     access_key=ACCESS_KEY, secret_key=SECRET_KEY + "-wrong")
    failed = wrong.run(FIRST_DAY, full=True)
    assert not failed.success
    failure_text = "\n".join(str(event) for event in failed.all_events if event.is_failure)
    assert "401" in failure_text or "uthentic" in failure_text
    leftovers = "\n".join(
        [_everything_the_run_left(pipeline, good.run_id), _everything_the_run_left(pipeline, failed.run_id), caplog.text]
    )
    for secret in (ACCESS_KEY, SECRET_KEY, SECRET_KEY + "-wrong"):
        assert secret not in leftovers
