"""Every request the sandbox answers, in one table: method and path to handler, and how the server treats it.

The first row that matches wins. A request no row matches is a 404 `MXAPINotFoundException`
before its keys are looked at; under `/sandbox/` the keys are checked first (the last row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lsq_pipeline.sandbox import responses
from lsq_pipeline.sandbox.responses import SandboxRequest

if TYPE_CHECKING:
    from lsq_pipeline.sandbox.server import SandboxHTTPServer

Handler = Callable[[SandboxRequest, "SandboxHTTPServer"], Any]

METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
"""The methods the server reads; any other is answered by the standard library (501)."""
GET, POST = frozenset({"GET"}), frozenset({"POST"})


@dataclass(frozen=True)
class Route:
    """One row: which requests it takes, the handler that answers them, and what the server does first.

    `endpoint` names a LeadSquared API call (stats, `fault_endpoints`): such a call is held,
    delayed, rate limited and may meet a fault. `None`: the sandbox's own, none of that.
    `is_write`: the call commits, so its answer can be lost afterwards (`lost_response_rate`).
    `rate_class`: the window the call counts against, `bulk` for LeadSquared's "Bulk APIs", else `general`.
    `below`: the row takes every path under `path/` (an id at the end) instead of `path` itself.
    """

    methods: frozenset[str]
    path: str
    handler: Handler
    endpoint: str | None = None
    is_write: bool = False
    rate_class: str = "general"
    checks_keys: bool = True
    below: bool = False

    def matches(self, method: str, path: str) -> bool:
        if method not in self.methods:
            return False
        return path.startswith(self.path + "/") if self.below else path == self.path


def _api(path: str, endpoint: str, handler: Handler, *, is_write: bool, rate_class: str = "general") -> Route:
    """A LeadSquared API call: POST only, keys checked."""
    return Route(POST, path.lower(), handler, endpoint, is_write, rate_class)


ROUTES: tuple[Route, ...] = (
    _api("/v2/OpportunityManagement.svc/Bulk/Add/ByLeadField", "BulkAdd", responses.bulk_add, is_write=True),
    _api("/v2/OpportunityManagement.svc/Bulk/Update/ByOpportunityId", "BulkUpdate", responses.bulk_update,
         is_write=True),
    _api("/v2/OpportunityManagement.svc/Capture", "Capture", responses.capture, is_write=True),
    _api("/v2/OpportunityManagement.svc/GetOpportunitiesById", "GetOpportunitiesById",
         responses.get_opportunities_by_id, is_write=False),
    _api("/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByOpportunityId", "BulkActivities",
         responses.bulk_add_activities, is_write=True),
    _api("/v2/LeadManagement.svc/Lead/Bulk/Create", "LeadBulkCreate", responses.bulk_create_leads, is_write=True,
         rate_class="bulk"),
    _api("/v2/LeadManagement.svc/Lead/Bulk/CreateOrUpdate", "LeadBulkCreateOrUpdate",
         responses.bulk_create_or_update_leads, is_write=True, rate_class="bulk"),
    Route(METHODS, "/sandbox/health", responses.health, checks_keys=False),
    Route(GET, "/sandbox/leads", responses.list_leads),
    Route(GET, "/sandbox/opportunities", responses.list_opportunities),
    Route(GET, "/sandbox/activities", responses.list_activities),
    Route(GET, "/sandbox/profile", responses.profile),
    Route(GET, "/sandbox/stats", responses.stats),
    Route(POST, "/sandbox/day", responses.new_day),
    Route(POST, "/sandbox/hold", responses.hold),
    Route(POST, "/sandbox/release", responses.release),
    Route(POST, "/sandbox/reset", responses.reset),
    Route(frozenset({"POST", "PATCH"}), "/sandbox/opportunities", responses.edit_opportunity, below=True),
    Route(METHODS, "/sandbox", responses.not_found, below=True),
)

API_ENDPOINTS = frozenset(route.endpoint for route in ROUTES if route.endpoint is not None)
"""The LeadSquared API calls' names, as `fault_endpoints` and `/sandbox/stats` spell them."""
BULK_ROUTES = frozenset(route.endpoint for route in ROUTES if route.rate_class == "bulk")
"""The API calls in LeadSquared's "Bulk APIs" rate class; every other one is `general`."""


def find_route(method: str, path: str) -> Route | None:
    """The first row that takes `method` on `path` (lower case, no trailing slash)."""
    return next((route for route in ROUTES if route.matches(method, path)), None)
