"""Listing recordings and transcriptions: both meta styles, concurrency, loop guards, bad items."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web

from pipeline.telnyx import RecordingFilters
from pipeline.telnyx.errors import MalformedResponseError
from pipeline.telnyx.models import MalformedItemError
from tests.fixtures.telnyx_stub import TelnyxStub, recording_json, transcription_json

pytestmark = pytest.mark.timeout(30)


async def collect(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


# -- page-number meta (recordings) ---------------------------------------------------------------


async def test_lists_every_recording_once_across_numbered_pages(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    ids = telnyx_stub.add_recordings(1000)
    got = await collect(make_client().list_recordings(page_size=100))
    assert sorted(r.id for r in got) == sorted(ids)
    numbers = sorted(int(r.params["page[number]"]) for r in telnyx_stub.seen("GET", "/recordings"))
    assert numbers == list(range(1, 11))
    assert {r.params["page[size]"] for r in telnyx_stub.seen("GET", "/recordings")} == {"100"}


async def test_remaining_pages_are_fetched_concurrently_within_page_concurrency(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(200)
    in_flight = 0
    peak = 0
    default = telnyx_stub._list_recordings

    async def slow(request: web.Request, p: dict[str, str]) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.03)
            return await default(request, p)
        finally:
            in_flight -= 1

    telnyx_stub.on("GET", "/recordings", slow)
    got = await collect(make_client(page_concurrency=3).list_recordings(page_size=10))
    assert len(got) == 200
    assert 1 < peak <= 3


async def test_items_are_yielded_before_the_last_page_is_served(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(30)
    release = asyncio.Event()
    last_served = False
    default = telnyx_stub._list_recordings

    async def hold_last(request: web.Request, p: dict[str, str]) -> web.Response:
        nonlocal last_served
        if request.query["page[number]"] == "3":
            await asyncio.wait_for(release.wait(), 10)
            last_served = True
        return await default(request, p)

    telnyx_stub.on("GET", "/recordings", hold_last)
    served_when_first_item_arrived = None
    got = []
    async for recording in make_client().list_recordings(page_size=10):
        if served_when_first_item_arrived is None:
            served_when_first_item_arrived = last_served
            release.set()
        got.append(recording)
    assert served_when_first_item_arrived is False
    assert len(got) == 30


async def test_a_single_page_is_one_request(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    telnyx_stub.add_recordings(5)
    assert len(await collect(make_client().list_recordings())) == 5
    assert len(telnyx_stub.seen("GET", "/recordings")) == 1


async def test_an_empty_listing_yields_nothing(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    assert await collect(make_client().list_recordings()) == []


async def test_ids_repeated_across_numbered_pages_are_yielded_once(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def overlapping(request: web.Request, p: dict[str, str]) -> web.Response:
        n = int(request.query["page[number]"])
        items = [recording_json(i) for i in range(n * 2 - 1, n * 2 + 2)]  # 3 items, 1 overlap
        meta = {"page_number": n, "page_size": 3, "total_pages": 3, "total_results": 9}
        return web.json_response({"data": items, "meta": meta})

    telnyx_stub.on("GET", "/recordings", overlapping)
    got = await collect(make_client().list_recordings(page_size=3))
    assert sorted(r.id for r in got) == sorted(recording_json(i)["id"] for i in range(1, 8))
    assert "skipped 2 repeated ids" in caplog.text


async def test_get_recordings_page_returns_items_and_meta(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(55)
    page = await make_client().get_recordings_page(page_number=2, page_size=25)
    assert len(page.items) == 25
    assert (page.page_number, page.page_size, page.total_pages, page.total_results) == (
        2,
        25,
        3,
        55,
    )
    assert page.next_cursor is None and page.next_path is None and page.malformed == []


async def test_filters_are_sent_in_deep_object_style_and_only_when_given(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    paris = timezone(timedelta(hours=2))
    filters = RecordingFilters(
        created_at_gte=datetime(2026, 8, 1, tzinfo=UTC),
        created_at_lte=datetime(2026, 8, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        start_time_gte=datetime(2026, 8, 1, 2, 0, 0, 123_456, tzinfo=paris),
        connection_id="1750000000",
        from_="+15551234567",
        to="+15557654321",
        call_leg_id="428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
    )
    await collect(make_client().list_recordings(filters, page_size=50))
    (request,) = telnyx_stub.seen("GET", "/recordings")
    assert request.params == {
        "filter[created_at][gte]": "2026-08-01T00:00:00.000Z",
        "filter[created_at][lte]": "2026-08-01T23:59:59.999Z",
        "filter[start_time][gte]": "2026-08-01T00:00:00.123Z",
        "filter[connection_id]": "1750000000",
        "filter[from]": "+15551234567",
        "filter[to]": "+15557654321",
        "filter[call_leg_id]": "428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
        "page[number]": "1",
        "page[size]": "50",
    }


async def test_a_page_size_above_250_is_refused(make_client: Any) -> None:
    with pytest.raises(ValueError, match="page_size"):
        make_client().list_recordings(page_size=251)


# -- cursor meta (transcriptions) ----------------------------------------------------------------


async def test_transcriptions_follow_cursor_meta_to_the_end(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    ids = telnyx_stub.add_transcriptions(25)
    got = await collect(make_client().list_transcriptions(page_size=10))
    assert [t.id for t in got] == ids
    requests = telnyx_stub.seen("GET", "/recording_transcriptions")
    assert [r.params.get("page[after]") for r in requests] == [None, "c10", "c20"]
    assert requests[0].params["page[number]"] == "1"
    assert all(r.params["page[size]"] == "10" for r in requests)
    assert all("page[number]" not in r.params for r in requests[1:])


async def test_transcription_filters_are_sent_on_every_cursor_page(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_transcriptions(15)
    gte = datetime(2026, 8, 1, tzinfo=UTC)
    await collect(make_client().list_transcriptions(created_at_gte=gte, page_size=10))
    requests = telnyx_stub.seen("GET", "/recording_transcriptions")
    assert len(requests) == 2
    assert {r.params["filter[created_at][gte]"] for r in requests} == {"2026-08-01T00:00:00.000Z"}


async def test_the_query_of_meta_next_is_followed(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    async def next_only(request: web.Request, p: dict[str, str]) -> web.Response:
        if "page[after]" not in request.query:
            meta = {"next": "/v2/recording_transcriptions?page[after]=abc&page[size]=2"}
            return web.json_response({"data": [transcription_json(1)], "meta": meta})
        return web.json_response({"data": [transcription_json(2)], "meta": {"cursors": {}}})

    telnyx_stub.on("GET", "/recording_transcriptions", next_only)
    got = await collect(make_client().list_transcriptions(page_size=5))
    assert len(got) == 2
    second = telnyx_stub.seen("GET", "/recording_transcriptions")[1]
    assert second.params == {"page[after]": "abc", "page[size]": "2"}


async def test_without_any_meta_pages_go_by_number_until_an_empty_page(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    async def no_meta(request: web.Request, p: dict[str, str]) -> web.Response:
        n = int(request.query["page[number]"])
        items = [transcription_json(i) for i in range(n * 10 - 9, n * 10 + 1)] if n <= 3 else []
        return web.json_response({"data": items})

    telnyx_stub.on("GET", "/recording_transcriptions", no_meta)
    got = await collect(make_client().list_transcriptions(page_size=10))
    assert len(got) == 30
    numbers = [
        r.params["page[number]"] for r in telnyx_stub.seen("GET", "/recording_transcriptions")
    ]
    assert numbers == ["1", "2", "3", "4"]


# -- loop guards ---------------------------------------------------------------------------------


async def test_a_cursor_that_comes_back_forever_stops_with_a_warning(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    counter = 0

    async def same_cursor(request: web.Request, p: dict[str, str]) -> web.Response:
        nonlocal counter
        counter += 1  # new ids every page, so only the cursor guard can stop this
        meta = {
            "cursors": {"after": "stuck"},
            "next": "/v2/recording_transcriptions?page[after]=stuck",
        }
        return web.json_response({"data": [transcription_json(counter)], "meta": meta})

    telnyx_stub.on("GET", "/recording_transcriptions", same_cursor)
    got = await collect(make_client().list_transcriptions())
    assert len(got) == 2
    assert "same cursor came back twice" in caplog.text


async def test_a_server_that_ignores_the_page_number_stops_with_a_warning(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def same_page(request: web.Request, p: dict[str, str]) -> web.Response:
        return web.json_response({"data": [transcription_json(1), transcription_json(2)]})

    telnyx_stub.on("GET", "/recording_transcriptions", same_page)
    got = await collect(make_client().list_transcriptions())
    assert [t.id for t in got] == [transcription_json(1)["id"], transcription_json(2)["id"]]
    assert len(telnyx_stub.seen("GET", "/recording_transcriptions")) == 2
    assert "repeated ids already listed" in caplog.text


async def test_fresh_cursors_over_the_same_page_stop_with_a_warning(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    counter = 0

    async def same_ids(request: web.Request, p: dict[str, str]) -> web.Response:
        nonlocal counter
        counter += 1
        meta = {"cursors": {"after": f"c{counter}"}}
        return web.json_response({"data": [transcription_json(1)], "meta": meta})

    telnyx_stub.on("GET", "/recording_transcriptions", same_ids)
    got = await collect(make_client().list_transcriptions())
    assert len(got) == 1
    assert "repeated ids already listed" in caplog.text


# -- bad items and bad pages ---------------------------------------------------------------------


async def test_malformed_items_are_skipped_and_reported(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(3)
    bad = recording_json(99, duration_millis="sixty")
    telnyx_stub.recordings[bad["id"]] = bad
    telnyx_stub.recordings["junk"] = "not an object"  # type: ignore[assignment]
    reported: list[MalformedItemError] = []
    got = await collect(make_client().list_recordings(on_malformed=reported.append))
    assert len(got) == 3
    assert len(reported) == 2
    assert reported[0].item_id == bad["id"] and "duration_millis" in reported[0].reason


async def test_malformed_items_are_logged_when_nobody_listens(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    telnyx_stub.add_transcriptions(2)
    bad = transcription_json(5, created_at="yesterday")
    telnyx_stub.transcriptions[bad["id"]] = bad
    got = await collect(make_client().list_transcriptions())
    assert len(got) == 2
    assert "skipping malformed transcription" in caplog.text


async def test_unknown_fields_and_enum_values_are_tolerated(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    odd = recording_json(1, channels="quad", status="archived", brand_new_field={"x": 1})
    telnyx_stub.recordings[odd["id"]] = odd
    (recording,) = await collect(make_client().list_recordings())
    assert (recording.channels, recording.status) == ("quad", "archived")


async def test_an_html_page_in_the_middle_of_a_listing_raises_malformed_response(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(30)
    default = telnyx_stub._list_recordings

    async def html_on_page_2(request: web.Request, p: dict[str, str]) -> web.Response:
        if request.query["page[number]"] == "2":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        return await default(request, p)

    telnyx_stub.on("GET", "/recordings", html_on_page_2)
    with pytest.raises(MalformedResponseError):
        await collect(make_client().list_recordings(page_size=10))


async def test_breaking_out_of_a_listing_cancels_the_page_fetches(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(500)
    listing = make_client(page_concurrency=2).list_recordings(page_size=10)
    async for _ in listing:
        break
    await listing.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    assert len(telnyx_stub.seen("GET", "/recordings")) < 50


async def test_a_listing_logs_nothing_at_warning_when_all_is_well(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    telnyx_stub.add_recordings(20)
    telnyx_stub.add_transcriptions(20)
    caplog.set_level(logging.WARNING)
    client = make_client()
    await collect(client.list_recordings(page_size=5))
    await collect(client.list_transcriptions(page_size=5))
    assert [r for r in caplog.records if r.name.startswith("pipeline")] == []


async def test_a_total_that_moves_while_listing_is_warned_about_once(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def growing(request: web.Request, p: dict[str, str]) -> web.Response:
        n = int(request.query["page[number]"])
        meta = {"page_number": n, "page_size": 1, "total_pages": 3 if n == 1 else 5}
        return web.json_response({"data": [recording_json(n)], "meta": meta})

    telnyx_stub.on("GET", "/recordings", growing)
    got = await collect(make_client().list_recordings(page_size=1))
    assert len(got) == 3  # the pages page 1 announced; list a closed slice to avoid this
    assert caplog.text.count("total_pages changed from 3 to 5") == 1
