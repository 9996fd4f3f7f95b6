"""When to retry an API call, how long to wait, and the pause every caller shares after a 429.

Safe to repeat (so retried on 408, 409, 429, 5xx, timeouts, connection errors):
  * every GET;
  * DELETE /recordings/{id}, DELETE /recording_transcriptions/{id}, DELETE
    /custom_storage_credentials/{id}: a repeat that answers 404 means "already gone";
  * POST /recordings/actions/delete: ids already gone are ignored (a chunk that 404s falls back
    to per-id DELETEs);
  * PUT /custom_storage_credentials/{id}: it writes the same value again.
Not safe: POST /custom_storage_credentials/{id} (create). It is retried on 429/5xx/connection
errors, but a 409 goes to the caller, since a lost answer to a create that succeeded comes back
as 409 on the repeat.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Mapping

from tenacity import RetryCallState, wait_random_exponential

from pipeline.telnyx.errors import APIError, TelnyxError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429})
# A 200 with an HTML body is usually a proxy hiccup; a few tries are enough to tell.
MALFORMED_ATTEMPTS = 3


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def retry_after_seconds(status: int, headers: Mapping[str, str]) -> float | None:
    """The server's hint, in precedence Retry-After, retry-after-ms, x-ratelimit-reset.

    x-ratelimit-reset rides on every answer, so it only counts for a 429.
    """
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - time.time())
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    if status == 429:
        value = headers.get("x-ratelimit-reset")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
    return None


class RetryableFailure(Exception):
    """Wraps a typed error that may be retried, with the server's wait hint.

    Private to the client: tenacity sees it, the caller only ever sees `.error`.
    """

    def __init__(self, error: TelnyxError, *, hint: float | None = None, kind: str = "") -> None:
        super().__init__(str(error))
        self.error = error
        self.hint = hint
        self.kind = kind or (str(error.status) if isinstance(error, APIError) else "ERR")


class PauseGate:
    """A shared "not before" instant: after a 429 with a hint, every caller waits it out."""

    def __init__(self) -> None:
        self._not_before = 0.0

    def pause_for(self, seconds: float) -> None:
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    @property
    def remaining(self) -> float:
        return max(0.0, self._not_before - time.monotonic())

    async def wait(self) -> None:
        # A moving deadline, not an event: another 429 may push it further while we sleep.
        while (delay := self.remaining) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)


class Backoff:
    """tenacity wait: the server's hint (capped) if any, else full-jitter exponential backoff."""

    def __init__(self, base: float, maximum: float) -> None:
        self.maximum = maximum
        self._jitter = wait_random_exponential(multiplier=base, max=maximum)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableFailure) and exc.hint is not None and exc.hint > 0:
            return min(exc.hint, self.maximum)
        return float(self._jitter(state))
