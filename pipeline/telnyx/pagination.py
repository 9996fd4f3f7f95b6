"""Pages of a Telnyx list, and walking them: concurrently by page number, or one by one by cursor.

Two meta styles exist (see docs/telnyx-contract.md §7):
  * page-number: meta.page_number/total_pages. Once page 1 tells total_pages, the other pages
    are fetched concurrently (bounded) and their items yielded as each page arrives.
  * cursor: meta.cursors.after and/or meta.next. Followed one page at a time.
A page with neither falls back to page[number]+1 while pages are non-empty.

Loop guard: a cursor seen twice, or a non-empty page that brings no id not seen before, stops the
walk with a warning. Ids already yielded are never yielded twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pipeline.telnyx.models import MalformedItemError

log = logging.getLogger(__name__)


class _HasId(Protocol):
    @property
    def id(self) -> str | None: ...


T = TypeVar("T", bound=_HasId)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: the parsed items, the items that failed to parse, and the meta."""

    items: list[T]
    malformed: list[MalformedItemError]
    page_number: int | None
    page_size: int | None
    total_pages: int | None
    total_results: int | None
    next_cursor: str | None
    next_path: str | None


def _int(meta: dict[str, Any], name: str) -> int | None:
    value = meta.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_page(body: dict[str, Any], parse_item: Callable[[Any], T]) -> Page[T]:
    """`body` is a dict whose `data` is a list (the client checked that)."""
    items: list[T] = []
    malformed: list[MalformedItemError] = []
    for raw in body["data"]:
        try:
            items.append(parse_item(raw))
        except MalformedItemError as exc:
            malformed.append(exc)
    meta = body.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    cursors = meta.get("cursors")
    cursors = cursors if isinstance(cursors, dict) else {}
    return Page(
        items=items,
        malformed=malformed,
        page_number=_int(meta, "page_number"),
        page_size=_int(meta, "page_size"),
        total_pages=_int(meta, "total_pages"),
        total_results=_int(meta, "total_results"),
        next_cursor=_str(cursors.get("after")),
        next_path=_str(meta.get("next")),
    )


def is_cursor_meta(body: dict[str, Any]) -> bool:
    """Whether meta speaks cursors (even on the last page, where `after` is gone)."""
    meta = body.get("meta")
    return isinstance(meta, dict) and any(k in meta for k in ("cursors", "next", "previous"))


# Fetches one page for the given query: (the page, whether its meta is cursor style).
FetchPage = Callable[[dict[str, str]], Awaitable[tuple[Page[T], bool]]]
OnMalformed = Callable[[MalformedItemError], None]


class _Seen:
    """Ids already yielded; drops repeats and tells whether a page made progress."""

    def __init__(self, what: str, on_malformed: OnMalformed | None) -> None:
        self.what = what
        self.on_malformed = on_malformed
        self.ids: set[str] = set()
        self.repeats = 0

    def take(self, page: Page[T]) -> tuple[list[T], bool]:
        """(items to yield, whether the page brought any id not seen before)."""
        progress = False
        for exc in page.malformed:
            if exc.item_id is not None and exc.item_id not in self.ids:
                self.ids.add(exc.item_id)
                progress = True
            if self.on_malformed is not None:
                self.on_malformed(exc)
            else:
                log.warning("skipping %s", exc)
        fresh: list[T] = []
        for item in page.items:
            if item.id is None:
                fresh.append(item)
            elif item.id in self.ids:
                self.repeats += 1
            else:
                self.ids.add(item.id)
                fresh.append(item)
                progress = True
        return fresh, progress

    def report(self) -> None:
        if self.repeats:
            log.warning("listing %s: skipped %d repeated ids", self.what, self.repeats)


class _ConcurrentPages(Generic[T]):
    """Fetches pages by number with at most `concurrency` in flight; pages come out as they land.

    The bounded queue keeps memory at a few pages when the consumer is slower than the API.
    """

    def __init__(
        self,
        fetch: FetchPage[T],
        params_for: Callable[[int], dict[str, str]],
        numbers: range,
        concurrency: int,
    ) -> None:
        self._fetch = fetch
        self._params_for = params_for
        self._count = len(numbers)
        self._numbers: Iterator[int] = iter(numbers)
        self._queue: asyncio.Queue[Page[T] | Exception] = asyncio.Queue(maxsize=concurrency)
        workers = min(concurrency, self._count)
        self._tasks = [asyncio.create_task(self._work()) for _ in range(workers)]

    async def _work(self) -> None:
        for number in self._numbers:  # shared iterator: each worker takes the next number
            try:
                page, _ = await self._fetch(self._params_for(number))
            except Exception as exc:
                await self._queue.put(exc)
                return
            await self._queue.put(page)

    async def __aiter__(self) -> AsyncIterator[Page[T]]:
        for _ in range(self._count):
            got = await self._queue.get()
            if isinstance(got, Exception):
                raise got
            yield got

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _merge_next(base: dict[str, str], next_path: str) -> dict[str, str]:
    """Our filters and page size, overlaid by the query of meta.next."""
    params = {k: v for k, v in base.items() if k != "page[number]"}
    params.update(parse_qsl(urlsplit(next_path).query, keep_blank_values=True))
    return params


async def iterate(
    fetch: FetchPage[T],
    base_params: dict[str, str],
    *,
    page_size: int,
    page_concurrency: int,
    on_malformed: OnMalformed | None,
    what: str,
) -> AsyncIterator[T]:
    """Yield every item of a list once, whichever meta style the server answers with."""
    base = {**base_params, "page[size]": str(page_size)}

    def numbered(number: int) -> dict[str, str]:
        return {**base, "page[number]": str(number)}

    seen = _Seen(what, on_malformed)
    first, cursor_style = await fetch(numbered(1))
    if first.total_pages is not None and not cursor_style:
        walk = _by_number(fetch, numbered, first, page_concurrency, seen)
    else:
        walk = _one_by_one(fetch, base, first, cursor_style, seen)
    try:
        # aclosing: a consumer that stops early cancels the page fetches now, not at GC time.
        async with aclosing(walk) as items:
            async for item in items:
                yield item
    finally:
        seen.report()


async def _by_number(
    fetch: FetchPage[T],
    numbered: Callable[[int], dict[str, str]],
    first: Page[T],
    concurrency: int,
    seen: _Seen,
) -> AsyncIterator[T]:
    total = first.total_pages or 0
    # We asked for page 1, whatever meta.page_number says.
    rest = _ConcurrentPages(fetch, numbered, range(2, total + 1), concurrency)
    try:
        for item in seen.take(first)[0]:
            yield item
        warned = False
        async for page in rest:
            if not warned and page.total_pages is not None and page.total_pages != total:
                warned = True
                log.warning(
                    "listing %s: total_pages changed from %d to %d while listing; "
                    "list a closed time slice",
                    seen.what,
                    total,
                    page.total_pages,
                )
            for item in seen.take(page)[0]:
                yield item
    finally:
        await rest.aclose()


async def _one_by_one(
    fetch: FetchPage[T], base: dict[str, str], page: Page[T], cursor_style: bool, seen: _Seen
) -> AsyncIterator[T]:
    number = 1  # we asked for page 1, whatever meta.page_number says
    cursors: set[str] = set()
    while True:
        fresh, progress = seen.take(page)
        has_rows = bool(page.items or page.malformed)
        if has_rows and not progress:
            log.warning("listing %s: a page repeated ids already listed; stopping", seen.what)
            return
        for item in fresh:
            yield item
        if page.next_path or page.next_cursor:
            if page.next_path:
                marker, params = page.next_path, _merge_next(base, page.next_path)
            else:
                marker = page.next_cursor or ""
                params = {**base, "page[after]": marker}
            if marker in cursors:
                log.warning("listing %s: the same cursor came back twice; stopping", seen.what)
                return
            cursors.add(marker)
        elif (
            cursor_style  # a cursor meta without a next cursor: the last page
            or not has_rows
            or (page.total_pages is not None and number >= page.total_pages)
        ):
            return
        else:
            number += 1
            params = {**base, "page[number]": str(number)}
        page, cursor_style = await fetch(params)
