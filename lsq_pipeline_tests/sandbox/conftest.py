"""Fixtures of the sandbox tests: the examples account, a running sandbox, an API helper, shape checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from lsq_pipeline.sandbox import SandboxBackend, load_account

EXAMPLES_ACCOUNT = Path(__file__).with_name("examples_account.yaml")
KEYS = {"x-LSQ-AccessKey": "sandbox-access-key", "x-LSQ-SecretKey": "sandbox-secret-key"}

BULK_ADD = "/v2/OpportunityManagement.svc/Bulk/Add/ByLeadField"
BULK_UPDATE = "/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId"
CAPTURE = "/v2/OpportunityManagement.svc/Capture"
GET_BY_IDS = "/v2/OpportunityManagement.svc/GetOpportunitiesById"
ACTIVITIES = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByOpportunityId"
LEAD_BULK_CREATE = "/v2/LeadManagement.svc/Lead/Bulk/Create"
LEAD_BULK_CREATE_OR_UPDATE = "/v2/LeadManagement.svc/Lead/Bulk/CreateOrUpdate"

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LSQ_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} (AM|PM)$")


class Api:
    """Calls one running sandbox over real HTTP with the keys in headers."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def post(self, path: str, body, *, params: dict | None = None, headers: dict | None = None,
             raw: bool = False) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.session.post(self.url + path, data=data, params=params, timeout=10,
                                 headers={"Content-Type": "application/json", **KEYS, **(headers or {})})

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, headers=KEYS, timeout=10)

    def opportunities(self) -> list[dict]:
        return self.get("/sandbox/opportunities").json()["Opportunities"]

    def stats(self) -> dict:
        return self.get("/sandbox/stats").json()


@pytest.fixture
def sandbox(start_sandbox):
    """A sandbox on the examples account, rate limit off (the rate-limit tests start their own)."""
    return start_sandbox(account=EXAMPLES_ACCOUNT)


@pytest.fixture
def api(sandbox) -> Api:
    return Api(sandbox.url)


@pytest.fixture
def backend() -> SandboxBackend:
    """A backend without a socket, on the examples account."""
    return SandboxBackend(load_account(EXAMPLES_ACCOUNT))


def assert_same_shape(actual, documented, where: str = "body") -> None:
    """Same keys, same JSON types, GUIDs where the page shows GUIDs, dates where it shows dates."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert set(actual) == set(documented), f"{where}: keys {sorted(actual)} != {sorted(documented)}"
        for key, value in documented.items():
            assert_same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list), f"{where}: expected an array, got {actual!r}"
        for index, item in enumerate(actual):
            if documented:
                assert_same_shape(item, documented[min(index, len(documented) - 1)], f"{where}[{index}]")
    elif documented is None:
        assert actual is None or isinstance(actual, str), f"{where}: expected null or a string, got {actual!r}"
    else:
        assert type(actual) is type(documented), f"{where}: {actual!r} is not a {type(documented).__name__}"
        if isinstance(documented, str) and GUID.match(documented):
            assert GUID.match(actual), f"{where}: {actual!r} is not a GUID"
        if isinstance(documented, str) and LSQ_DATE.match(documented):
            assert LSQ_DATE.match(actual), f"{where}: {actual!r} is not M/D/YYYY h:mm:ss AM"


def fields(**values: str) -> list[dict]:
    return [{"SchemaName": name, "Value": value} for name, value in values.items()]


def loan_fields(app_id: str = "APP-1", **extra: str) -> list[dict]:
    """The mandatory fields of the demo type 12002 plus extras."""
    return fields(**{"mx_Custom_1": app_id, "mx_Custom_2": "Home Loan", "mx_Custom_3": "250000", **extra})


def loan_row(email: str = "janehewitt@example.com", app_id: str = "APP-1", **flags) -> dict:
    """One Bulk Add row (SearchBy=EmailAddress) of type 12002."""
    return {"SearchByValue": email, "OpportunityEventCode": 12002, "Fields": loan_fields(app_id), **flags}


def loan_capture(email: str = "new.applicant@example.com", app_id: str = "APP-1", **flags) -> dict:
    """One Capture body (lead by EmailAddress) of type 12002."""
    return {"LeadDetails": [{"Attribute": "EmailAddress", "Value": email},
                            {"Attribute": "SearchBy", "Value": "EmailAddress"}],
            "Opportunity": {"OpportunityEventCode": 12002, "Fields": loan_fields(app_id), **flags}}


def lead(**attributes: str) -> list[dict]:
    """One lead of the lead bulk calls: `{Attribute, Value}` pairs."""
    return [{"Attribute": name, "Value": value} for name, value in attributes.items()]
