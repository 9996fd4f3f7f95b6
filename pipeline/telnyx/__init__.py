"""The Telnyx API: client (session, rate limit, retries), pagination, models, errors."""

from pipeline.telnyx.client import (
    ApiStats,
    BulkDeleteResult,
    RecordingFilters,
    TelnyxClient,
)
from pipeline.telnyx.pagination import Page

__all__ = [
    "ApiStats",
    "BulkDeleteResult",
    "Page",
    "RecordingFilters",
    "TelnyxClient",
]
