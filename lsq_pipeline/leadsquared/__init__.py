"""The LeadSquared opportunity API as Python: models, client, rate limit, typed errors. No Dagster."""

from lsq_pipeline.leadsquared.client import MISSING_ROW, OUTCOME_UNKNOWN, LeadSquaredClient
from lsq_pipeline.leadsquared.errors import (
    AuthenticationError,
    BadRequestError,
    LeadSquaredAPIError,
    LeadSquaredError,
    NotFoundError,
    RateLimitedError,
    TransientError,
)
from lsq_pipeline.leadsquared.models import (
    MAX_IDS_PER_READ,
    MAX_ITEMS_PER_WRITE,
    ActivityAdd,
    CaptureOpportunityDetails,
    CaptureRequest,
    ClientStats,
    EndpointStats,
    FieldValue,
    LeadAttribute,
    OpportunityAdd,
    OpportunityRecord,
    OpportunityUpdate,
    RowResult,
    fields_from_dict,
)
from lsq_pipeline.leadsquared.rate_limit import SlidingWindow

__all__ = [
    "MAX_IDS_PER_READ",
    "MAX_ITEMS_PER_WRITE",
    "MISSING_ROW",
    "OUTCOME_UNKNOWN",
    "ActivityAdd",
    "AuthenticationError",
    "BadRequestError",
    "CaptureOpportunityDetails",
    "CaptureRequest",
    "ClientStats",
    "EndpointStats",
    "FieldValue",
    "LeadAttribute",
    "LeadSquaredAPIError",
    "LeadSquaredClient",
    "LeadSquaredError",
    "NotFoundError",
    "OpportunityAdd",
    "OpportunityRecord",
    "OpportunityUpdate",
    "RateLimitedError",
    "RowResult",
    "SlidingWindow",
    "TransientError",
    "fields_from_dict",
]
