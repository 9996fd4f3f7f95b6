"""Retries of the Telnyx client against a local stub server: what is retried, how long it waits."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from typing import Any

import pytest
from aiohttp import web

from pipeline.telnyx import errors
from pipeline.telnyx.retry import retry_after_seconds
from tests.fixtures.telnyx_stub import TelnyxStub, error, recording_json

pytestmark = pytest.mark.timeout(30)


def flaky(answers: list[Any]) -> Any:
    """A handler that plays `answers` in order (callables get the request), then a recording."""
    queue = list(answers)

    async def handler(request: web.Request, _: dict[str, str]) -> web.StreamResponse:
        if queue:
            answer = queue.pop(0)
            if isinstance(answer, web.Response):
                return copy(answer)
            result = answer(request)
            return await result if asyncio.iscoroutine(result) else result
        return web.json_response({"data": recording_json(1)})

    return handler


def copy(response: web.Response) -> web.Response:
    """A fresh copy: a web.Response can be sent only once."""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(body=response.body, status=response.status, headers=headers)


def waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the client announced before each retry."""
    found = []
    for record in caplog.records:
        match = re.search(r" in (\d+\.\d+) s \(attempt", record.getMessage())
        if match:
            found.append(float(match.group(1)))
    return found


def reset(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.close()
    return web.Response(text="never delivered")


# -- the wait hint, as a pure function -----------------------------------------------------------


def test_retry_after_seconds_wins_over_retry_after_ms_and_ratelimit_reset() -> None:
    headers = {"Retry-After": "2", "retry-after-ms": "50", "x-ratelimit-reset": "7"}
    assert retry_after_seconds(429, headers) == 2.0


def test_retry_after_ms_wins_over_ratelimit_reset() -> None:
    assert retry_after_seconds(429, {"retry-after-ms": "50", "x-ratelimit-reset": "7"}) == 0.05


def test_retry_after_as_http_date_is_seconds_from_now() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_seconds(503, {"Retry-After": when}) or 0) <= 31


def test_ratelimit_reset_counts_only_for_429() -> None:
    assert retry_after_seconds(429, {"x-ratelimit-reset": "3"}) == 3.0
    assert retry_after_seconds(503, {"x-ratelimit-reset": "3"}) is None


def test_unparseable_hints_are_ignored() -> None:
    assert retry_after_seconds(429, {"Retry-After": "soon", "retry-after-ms": "x"}) is None


# -- retried answers -----------------------------------------------------------------------------


async def test_429_with_retry_after_waits_the_given_seconds_then_succeeds(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.telnyx")
    telnyx_stub.on(
        "GET",
        "/recordings/{id}",
        flaky([error(429, "Too many requests", headers={"Retry-After": "1"})]),
    )
    client = make_client()
    recording = await client.get_recording("r1")
    assert recording.id == recording_json(1)["id"]
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 2
    assert waits(caplog) == [1.0]
    assert client.stats.snapshot()["retry 429"] == 1


async def test_429_with_retry_after_ms_waits_the_given_milliseconds(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.telnyx")
    answer = error(429, "Too many requests", headers={"retry-after-ms": "50"})
    telnyx_stub.on("GET", "/recordings/{id}", flaky([answer]))
    await make_client().get_recording("r1")
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 2
    assert waits(caplog) == [0.05]


async def test_429_with_only_ratelimit_reset_waits_until_the_reset(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.telnyx")
    answer = error(429, "Too many requests", code="10011", headers={"x-ratelimit-reset": "1"})
    telnyx_stub.on("GET", "/recordings/{id}", flaky([answer]))
    await make_client().get_recording("r1")
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 2
    assert waits(caplog) == [1.0]


async def test_a_hint_longer_than_backoff_max_is_capped(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.telnyx")
    answer = error(429, "Too many requests", headers={"Retry-After": "3600"})
    telnyx_stub.on("GET", "/recordings/{id}", flaky([answer]))
    await make_client(backoff_max=0.2).get_recording("r1")
    assert waits(caplog) == [0.2]


async def test_a_429_with_a_hint_pauses_every_other_caller_too(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    arrived: set[str] = set()

    async def first_limited(request: web.Request, p: dict[str, str]) -> web.Response:
        if not telnyx_stub.seen("GET", "/recordings/r1")[1:]:
            return error(429, "Too many requests", headers={"retry-after-ms": "1000"})
        return web.json_response({"data": recording_json(1)})

    async def note_arrival(request: web.Request, p: dict[str, str]) -> web.Response:
        arrived.add(p["id"])
        return web.json_response({"data": {"id": p["id"]}})

    telnyx_stub.on("GET", "/recordings/{id}", first_limited)
    telnyx_stub.on("GET", "/recording_transcriptions/{id}", note_arrival)
    client = make_client()
    first = asyncio.create_task(client.get_recording("r1"))
    # Poll: the client has read the 429 once its stats count it (stats have no event to await).
    while not client.stats.calls["GET /recordings/{id} 429"]:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    other = asyncio.create_task(client.get_transcription("t1"))
    await asyncio.sleep(0.1)
    assert arrived == set()  # held back by the shared pause, not by its own failure
    await asyncio.gather(first, other)
    assert arrived == {"t1"}


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_until_success(
    telnyx_stub: TelnyxStub, make_client: Any, status: int
) -> None:
    telnyx_stub.on("GET", "/recordings/{id}", flaky([error(status, "busy"), error(status, "busy")]))
    client = make_client()
    await client.get_recording("r1")
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 3
    snapshot = client.stats.snapshot()
    assert snapshot[f"GET /recordings/{{id}} {status}"] == 2
    assert snapshot["GET /recordings/{id} 200"] == 1
    assert snapshot[f"retry {status}"] == 2


async def test_a_5xx_that_never_ends_raises_after_max_attempts(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.on("GET", "/recordings/{id}", flaky([error(500, "Internal Server Error")] * 10))
    with pytest.raises(errors.InternalServerError) as caught:
        await make_client(max_attempts=3).get_recording("r1")
    assert caught.value.status == 500
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 3


async def test_a_reset_connection_is_retried(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    # aiohttp itself resends an idempotent request once on a dropped connection (RFC 9112);
    # three resets in a row get past that to the client's own retries.
    telnyx_stub.on("GET", "/recordings/{id}", flaky([reset] * 3))
    client = make_client()
    recording = await client.get_recording("r1")
    assert recording.id is not None
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) >= 3
    assert client.stats.snapshot()["GET /recordings/{id} ERR"] >= 1
    assert client.stats.snapshot()["retry ERR"] >= 1


async def test_resets_that_never_end_raise_api_connection_error_after_max_attempts(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    from pipeline.telnyx.models import S3Configuration, Secret, StorageCredential

    credential = StorageCredential(
        "c1",
        "s3",
        S3Configuration("b", "us-east-1", "AKIA", Secret("shh")),
    )
    # A POST is never resent by aiohttp, so the count is exactly max_attempts.
    telnyx_stub.on("POST", "/custom_storage_credentials/{id}", flaky([reset] * 10))
    with pytest.raises(errors.APIConnectionError):
        await make_client(max_attempts=2).create_storage_credential("c1", credential)
    assert len(telnyx_stub.seen("POST", "/custom_storage_credentials/c1")) == 2


async def test_a_timeout_is_retried_and_then_raises_api_timeout_error(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)  # past the client's 0.2 s timeout
        return web.json_response({"data": recording_json(1)})

    telnyx_stub.on("GET", "/recordings/{id}", flaky([slow] * 10))
    with pytest.raises(errors.APITimeoutError):
        await make_client(max_attempts=2, timeout=0.2).get_recording("r1")
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 2


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (422, errors.UnprocessableEntityError),
    ],
)
async def test_other_4xx_are_never_retried(
    telnyx_stub: TelnyxStub, make_client: Any, status: int, error_class: type[Exception]
) -> None:
    telnyx_stub.on("GET", "/recordings/{id}", flaky([error(status, "nope")] * 3))
    with pytest.raises(error_class):
        await make_client().get_recording("r1")
    assert len(telnyx_stub.seen("GET", "/recordings/r1")) == 1


async def test_errors_carry_the_first_errors_code_title_detail_and_the_request_id(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    body = {
        "errors": [
            {"code": "10005", "title": "Resource not found", "detail": "No such recording."},
            {"code": "99", "title": "second"},
        ]
    }
    answer = web.json_response(body, status=404, headers={"x-request-id": "req-42"})
    telnyx_stub.on("GET", "/recordings/{id}", flaky([answer]))
    with pytest.raises(errors.NotFoundError) as caught:
        await make_client().get_recording("r1")
    err = caught.value
    assert (err.code, err.title, err.detail, err.request_id) == (
        "10005",
        "Resource not found",
        "No such recording.",
        "req-42",
    )
    assert (err.method, err.path) == ("GET", "/recordings/r1")


async def test_an_html_page_with_200_is_retried_then_raises_malformed_response(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    html = web.Response(text="<html><body>Gateway says hi</body></html>", content_type="text/html")
    telnyx_stub.on("GET", "/recordings", flaky([html] * 10))
    client = make_client()
    with pytest.raises(errors.MalformedResponseError, match="text/html"):
        await client.get_recordings_page()
    assert len(telnyx_stub.seen("GET", "/recordings")) == 3
    assert client.stats.snapshot()["retry MALFORMED"] == 2


async def test_an_html_page_once_is_survived(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    html = web.Response(text="<html>oops</html>", content_type="text/html")
    telnyx_stub.add_recordings(3)
    default_list = telnyx_stub._list_recordings
    answers: list[Any] = [html]

    async def once_html(request: web.Request, p: dict[str, str]) -> web.Response:
        return answers.pop() if answers else await default_list(request, p)

    telnyx_stub.on("GET", "/recordings", once_html)
    page = await make_client().get_recordings_page()
    assert len(page.items) == 3
