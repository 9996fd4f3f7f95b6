"""The window of a run and the time slices it is cut into.

Telnyx pages by page number, and deleting shifts later pages, so a slice is always listed
completely before anything in it is deleted. A slice whose total_results exceeds a bound is
split in halves until it fits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.archive.options import Window
from pipeline.telnyx.models import MalformedItemError, Recording

log = logging.getLogger(__name__)

# Telnyx timestamps carry milliseconds and its filters are inclusive on both ends, so a
# half-open [since, until) is sent as gte=since, lte=until - 1 ms.
_TICK = timedelta(milliseconds=1)
_MIN_SLICE = timedelta(seconds=1)


def nightly_window(now: datetime, min_age: timedelta, earliest: datetime) -> Window:
    """Everything created before now - min_age, back to `earliest`."""
    until = (now - min_age).astimezone(UTC)
    return Window(since=earliest.astimezone(UTC), until=until)


@dataclass(frozen=True, slots=True)
class Slice:
    """A closed piece of the window, listed completely: its recordings are fixed."""

    since: datetime
    until: datetime
    recordings: tuple[Recording, ...]
    malformed: tuple[MalformedItemError, ...] = ()

    @property
    def label(self) -> str:
        return f"[{self.since.isoformat()} .. {self.until.isoformat()})"


def halves(since: datetime, until: datetime) -> tuple[tuple[datetime, datetime], ...]:
    middle = since + (until - since) / 2
    middle = middle.replace(microsecond=(middle.microsecond // 1000) * 1000)
    return ((since, middle), (middle, until))


async def list_slices(
    client,
    window: Window,
    *,
    max_results: int,
    page_size: int = 250,
    skip: Callable[[datetime, datetime], bool] = lambda a, b: False,
) -> AsyncIterator[Slice]:
    """Yield the window's slices, oldest first, each listed completely (pages concurrently)."""
    from pipeline.telnyx import RecordingFilters

    pending: list[tuple[datetime, datetime]] = [(window.since, window.until)]
    while pending:
        since, until = pending.pop(0)
        if until <= since or skip(since, until):
            continue
        filters = RecordingFilters(created_at_gte=since, created_at_lte=until - _TICK)
        first = await client.get_recordings_page(
            page_number=1, page_size=page_size, filters=filters
        )
        total = first.total_results if first.total_results is not None else len(first.items)
        if total > max_results and until - since > _MIN_SLICE:
            log.debug("splitting %s .. %s (%d recordings)", since, until, total)
            pending[:0] = list(halves(since, until))
            continue
        pages = [first]
        if first.total_pages and first.total_pages > 1:
            pages += await asyncio.gather(
                *(
                    client.get_recordings_page(page_number=n, page_size=page_size, filters=filters)
                    for n in range(2, first.total_pages + 1)
                )
            )
        seen: dict[str, Recording] = {}
        anonymous: list[Recording] = []
        malformed: list[MalformedItemError] = []
        for page in pages:
            malformed.extend(page.malformed)
            for rec in page.items:
                if rec.id is None:
                    anonymous.append(rec)
                else:
                    seen.setdefault(rec.id, rec)
        yield Slice(since, until, tuple(seen.values()) + tuple(anonymous), tuple(malformed))
