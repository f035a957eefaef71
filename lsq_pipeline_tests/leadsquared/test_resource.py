"""LeadSquaredResource: configuration in, a working client out."""

from __future__ import annotations

import dagster as dg

from lsq_pipeline.orchestration.resources import LeadSquaredResource, normalize_api_host
from lsq_pipeline.leadsquared import LeadSquaredClient
from lsq_pipeline_tests.leadsquared.conftest import ACCESS_KEY, EVENT_CODE, SECRET_KEY, capture


def test_api_host_may_be_bare_or_a_url() -> None:
    assert normalize_api_host("api-in21.leadsquared.com") == "https://api-in21.leadsquared.com"
    assert normalize_api_host("https://api-in21.leadsquared.com/") == "https://api-in21.leadsquared.com"
    assert normalize_api_host("http://127.0.0.1:8765") == "http://127.0.0.1:8765"


def test_resource_builds_a_working_client(monkeypatch, start_sandbox) -> None:
    monkeypatch.setenv("LSQ_TEST_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("LSQ_TEST_SECRET_KEY", SECRET_KEY)
    server = start_sandbox()
    resource = LeadSquaredResource(
        api_host=server.url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        rate_limit_calls=10,
        rate_limit_seconds=1.0,
        max_in_flight=4,
    )
    client = resource.get_client()
    assert isinstance(client, LeadSquaredClient)
    assert client is resource.get_client()  # one per process and configuration
    assert client.max_in_flight == 4 and client.budget.windows["general"].calls == 10
    result = client.capture_opportunities([capture("resource@example.com", "R-1")])[0]
    assert result.ok and result.opportunity_id

    @dg.asset
    def read_back(lsq: LeadSquaredResource) -> dg.MaterializeResult:
        records = lsq.get_client().get_opportunities(EVENT_CODE, [result.opportunity_id], ["mx_Custom_1"])
        return dg.MaterializeResult(metadata={"found": len(records), **lsq.get_client().stats().as_metadata()})

    env_resource = LeadSquaredResource(
        api_host=server.url, access_key=dg.EnvVar("LSQ_TEST_ACCESS_KEY"), secret_key=dg.EnvVar("LSQ_TEST_SECRET_KEY")
    )
    outcome = dg.materialize([read_back], resources={"lsq": env_resource})
    assert outcome.success
    metadata = outcome.asset_materializations_for_node("read_back")[0].metadata
    assert metadata["found"].value == 1
    assert ACCESS_KEY not in str(metadata) and SECRET_KEY not in str(metadata)
