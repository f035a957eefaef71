"""One handler per route: read the parsed request, call the backend (or the server's switches), return the answer.

A handler returns the body of a 200 answer; an error is a `SandboxError` it raises. The HTTP
layer (`server.py`) reads the bytes, checks keys, applies the rate limit and faults, and writes
the answer; the rules stay in the backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lsq_pipeline.sandbox.exceptions import MXAPINotFoundException, MXInvalidJsonException
from lsq_pipeline.sandbox.payloads import decode_json

if TYPE_CHECKING:
    from lsq_pipeline.sandbox.server import SandboxHTTPServer

OK = {"Status": "ok"}


@dataclass(frozen=True)
class SandboxRequest:
    """One request, parsed once: the path in lower case without a trailing slash, query keys in lower case."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    content_type: str
    access_key: str
    secret_key: str

    def json(self) -> Any:
        """The body as JSON; only an `application/json` body is read."""
        if "json" not in self.content_type.lower():
            raise MXInvalidJsonException("Content-Type must be application/json.")
        return decode_json(self.body)


# ----- LeadSquared's API calls ----------------------------------------------------------


def bulk_add(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.bulk_add(request.query.get("searchby"), request.json())


def bulk_update(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.bulk_update(request.json())


def capture(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.capture(request.json())


def get_opportunities_by_id(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.get_opportunities_by_id(request.json())


def bulk_add_activities(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.bulk_add_activities(request.query.get("opportunityid"), request.json())


def bulk_create_leads(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.bulk_create_leads(request.json())


def bulk_create_or_update_leads(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return server.backend.bulk_create_or_update_leads(request.json())


# ----- the sandbox's own endpoints (/sandbox/) ------------------------------------------


def health(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    return OK


def list_leads(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    leads = server.backend.list_leads()
    return {"Count": len(leads), "Leads": leads}


def list_opportunities(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    opportunities = server.backend.list_opportunities()
    return {"Count": len(opportunities), "Opportunities": opportunities}


def list_activities(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    activities = server.backend.list_activities()
    return {"Count": len(activities), "Activities": activities}


def profile(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    backend = server.backend
    return {"Profile": {**asdict(backend.profile), "read_lag_seconds": backend.state.read_lag.seconds}}


def stats(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    backend = server.backend
    return {**backend.stats.as_dict(), **server.limiter.as_dict(), "Profile": backend.profile.name,
            "Held": server.held, "Leads": len(backend.leads),
            "Opportunities": len(backend.opportunities), "Activities": len(backend.activities)}


def new_day(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    server.limiter.new_day()
    return OK


def hold(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    server.hold()
    return OK


def release(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    server.release()
    return OK


def reset(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    server.backend.reset()
    server.limiter.reset()
    return OK


def edit_opportunity(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    """`/sandbox/opportunities/<id>` with `{"Fields": {...}}`."""
    body = request.json()
    fields = body.get("Fields") if isinstance(body, dict) else None
    return server.backend.edit_opportunity(request.path.rsplit("/", 1)[1], fields)


def not_found(request: SandboxRequest, server: SandboxHTTPServer) -> Any:
    raise MXAPINotFoundException()
