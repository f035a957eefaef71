"""A lost answer to a bulk lead create is harmless: the client re-sends the call, the lead's unique
field stops a second lead, and every record ends with one opportunity on its one lead."""

from __future__ import annotations

import pytest

from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import ChaosPipeline, assert_end_state
from lsq_pipeline_tests.chaos.conftest import FIRST_DAY


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_lost_answers_to_bulk_lead_creates_double_no_lead(tmp_path, start_sandbox):
    source = tmp_path / "source"
    generate(source, rows=800, days=1, seed=31, start_day=FIRST_DAY, dirty_rate=0.0, events=0)
    sandbox = start_sandbox(lost_response_rate=0.4, seed=13)
    pipeline = ChaosPipeline(source_dir=source, warehouse=tmp_path / "warehouse.duckdb", sandbox_url=sandbox.url)
    result = pipeline.run(FIRST_DAY)
    assert result.success
    push = result.asset_materializations_for_node("push")[0].metadata
    lead_calls = push["run_lead_bulk_calls"].value
    stats = pipeline.stats()
    # Every extra call the sandbox saw was a re-send after a lost answer (no faults, no 429s here).
    assert lead_calls > 0 and stats["Calls"]["LeadBulkCreate"] > lead_calls
    assert stats["LostResponses"] > 0 and stats["RateLimited"] == 0 and stats["TotalFaults"] == 0
    end = assert_end_state(pipeline)
    assert end.leads == len(end.accepted)  # one lead per record here: every email is new and distinct
    print(f"\nlost lead answers: {stats['Calls']['LeadBulkCreate'] - lead_calls} re-sends for {lead_calls} lead calls; "
          f"{len(end.accepted)} records in_sync on {end.leads} leads; {stats['LostResponses']} lost answers in all")
