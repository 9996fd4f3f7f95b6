"""Configuration defaults, and the API key never leaving the session's Authorization header."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from pipeline.telnyx import TelnyxClient, errors
from pipeline.telnyx.client import DEFAULT_BASE_URL
from tests.fixtures.telnyx_stub import API_KEY, TelnyxStub, error, recording_json

pytestmark = pytest.mark.timeout(30)


def test_a_missing_api_key_raises_a_one_line_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELNYX_API_KEY", raising=False)
    with pytest.raises(ValueError) as caught:
        TelnyxClient()
    assert str(caught.value) == "TELNYX_API_KEY is not set"


def test_key_and_base_url_default_to_the_sdk_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TELNYX_API_KEY", API_KEY)
    monkeypatch.setenv("TELNYX_BASE_URL", "http://127.0.0.1:9/v2/")
    assert TelnyxClient().base_url == "http://127.0.0.1:9/v2"
    monkeypatch.delenv("TELNYX_BASE_URL")
    assert TelnyxClient().base_url == DEFAULT_BASE_URL == "https://api.telnyx.com/v2"


async def test_requests_carry_the_key_as_a_bearer_token(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.add_recordings(1)
    await make_client().get_recordings_page()
    (request,) = telnyx_stub.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_a_wrong_key_raises_authentication_error_without_showing_it(
    telnyx_stub: TelnyxStub,
) -> None:
    wrong = "WRONG-KEY-abcdef-0123456789"
    async with TelnyxClient(wrong, telnyx_stub.base_url) as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await client.get_recordings_page()
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


async def test_the_key_never_shows_in_reprs_errors_or_debug_logs(
    telnyx_stub: TelnyxStub, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    telnyx_stub.add_recordings(30)
    telnyx_stub.add_transcriptions(3)
    calls = 0

    async def troubled(request: web.Request, p: dict[str, str]) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return error(429, "Too many requests", headers={"retry-after-ms": "10"})
        if calls == 2:
            return error(503, "Service Unavailable")
        if calls == 3:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if calls == 4:
            return web.Response(text="<html>proxy</html>", content_type="text/html")
        return web.json_response({"data": recording_json(1)})

    telnyx_stub.on("GET", "/recordings/{id}", troubled)
    client = make_client(max_attempts=10)
    seen_texts: list[str] = [repr(client), str(client)]
    async with client:
        seen_texts.append(repr(vars(client)))
        await client.get_recording("r1")
        seen_texts += [repr(r) async for r in client.list_recordings(page_size=10)]
        seen_texts += [repr(t) async for t in client.list_transcriptions()]
        with pytest.raises(errors.NotFoundError) as caught:
            await client.get_transcription("missing")
        seen_texts += [str(caught.value), repr(caught.value)]
        result = await client.delete_recordings(["a", "b"])
        seen_texts.append(repr(result))
        seen_texts.append(repr(client.stats))
    seen_texts.append(caplog.text)
    seen_texts += [str(r.args) for r in caplog.records]
    assert any("retrying GET /recordings/{id}" in r.getMessage() for r in caplog.records)
    for text in seen_texts:
        assert API_KEY not in text


async def test_the_key_is_not_an_attribute_of_the_client_once_the_session_exists(
    make_client: Any,
) -> None:
    client = make_client()
    async with client:
        assert API_KEY not in repr(vars(client))
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_recording("r1")
