"""No key in any log line, exception text, repr, traceback or stats, whatever way a call fails."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable

import pytest

from lsq_pipeline.orchestration.resources import LeadSquaredResource
from lsq_pipeline.leadsquared import LeadSquaredError, OpportunityUpdate, fields_from_dict
from lsq_pipeline.leadsquared.client import LeadSquaredClient
from lsq_pipeline.leadsquared.models import BULK_UPDATE
from lsq_pipeline_tests.leadsquared.conftest import EVENT_CODE, capture, loan

ACCESS = "AK-zq81-DISTINCTIVE-access-7f3e"
SECRET = "SK-zq81-DISTINCTIVE-secret-9c4d"


def _update() -> OpportunityUpdate:
    return OpportunityUpdate(opportunity_id="x", event_code=EVENT_CODE, fields=fields_from_dict({"mx_Custom_5": "New"}))


def _client(url: str, access: str = ACCESS, secret: str = SECRET, **options) -> LeadSquaredClient:
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_max", 0.02)
    options.setdefault("rate_limit_calls", 0)
    return LeadSquaredClient(url, access, secret, **options)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_key_leaks_anywhere(caplog: pytest.LogCaptureFixture, start_sandbox) -> None:
    caplog.set_level(logging.DEBUG)  # root: ours, urllib3's and the sandbox's
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    texts: list[str] = []
    failures: list[str] = []

    def expect_failure(label: str, call: Callable[[], object]) -> None:
        try:
            outcome = call()
        except Exception as error:  # noqa: BLE001 - every kind of failure is the point
            texts.extend([str(error), repr(error), "".join(traceback.format_exception(error))])
            for attribute in ("exception_type", "exception_message", "endpoint"):
                texts.append(str(getattr(error, attribute, "")))
            failures.append(f"{label}: {type(error).__name__}")
        else:
            texts.append(repr(outcome))
            failures.append(f"{label}: answered")

    good = start_sandbox(access_key=ACCESS, secret_key=SECRET)
    faulty = start_sandbox(access_key=ACCESS, secret_key=SECRET, fault_rate=1.0, seed=5)
    slow = start_sandbox(access_key=ACCESS, secret_key=SECRET, latency_ms=400)
    # 401: the server knows other keys
    with _client(start_sandbox().url) as client:
        expect_failure("401", lambda: client.update_opportunities([_update()]))
    with _client(good.url) as client:
        texts.append(repr(client) + str(client) + client.stats().model_dump_json())
        # 400: a body of the wrong shape (only reachable below the public methods)
        expect_failure("400", lambda: client._call(BULK_UPDATE, {"not": "a list"}, {}, 1, resend_unknown=True))
        # 500 with an MX body
        expect_failure("500 MX", lambda: client.add_opportunities("NoSuchLeadField", [loan("K-1")]))
        # per-row failures, captures refused as a whole
        bad = capture("k@example.com", "K-2")
        bad.opportunity.overwrite_fields = bad.opportunity.update_empty_fields = True
        expect_failure("rows", lambda: client.capture_opportunities([bad]))
        expect_failure("rows", lambda: client.add_opportunities("EmailAddress", [loan("K-3", "nobody@example.com")]))
        texts.append(client.stats().model_dump_json())
    with _client(good.url + "/nowhere") as client:
        expect_failure("404", lambda: client.update_opportunities([_update()]))
    with _client(faulty.url, max_retries=2) as client:
        expect_failure("transient", lambda: client.update_opportunities([_update()]))
        expect_failure("transient create", lambda: client.add_opportunities("EmailAddress", [loan("K-4")]))
    with _client(f"http://127.0.0.1:{_free_port()}", max_retries=1) as client:
        expect_failure("refused", lambda: client.update_opportunities([_update()]))
    with _client(slow.url, max_retries=1, read_timeout=0.05) as client:
        expect_failure("timeout", lambda: client.update_opportunities([_update()]))
        expect_failure("timeout activity", lambda: client.add_activities("x", [{"ActivityEvent": 102, "ActivityOwnerEmail": "a@b.c"}]))
    resource = LeadSquaredResource(api_host=good.url, access_key=ACCESS, secret_key=SECRET)
    texts.extend([repr(resource), str(resource), repr(resource.get_client())])

    assert failures == [
        "401: AuthenticationError",
        "400: BadRequestError",
        "500 MX: LeadSquaredAPIError",
        "rows: answered",
        "rows: answered",
        "404: NotFoundError",
        "transient: TransientError",
        "transient create: TransientError",
        "refused: TransientError",
        "timeout: TransientError",
        "timeout activity: answered",
    ]
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert "leadsquared call endpoint=" in logged  # the debug log was captured
    everything = logged + "\n".join(texts)
    for key in (ACCESS, SECRET, "zq81"):
        assert key not in everything
    assert issubclass(type(LeadSquaredError("x")), Exception)
