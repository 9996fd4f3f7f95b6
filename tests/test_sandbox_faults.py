"""Rate limit, latency and injected faults: switchable, and reproducible from the fault seed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from pipeline.sandbox import SandboxServer
from pipeline.sandbox.faults import TokenBucket
from tests.fixtures.sandbox import auth, small_config


async def statuses(sb: SandboxServer, s: aiohttp.ClientSession, n: int) -> list[int]:
    out = []
    for _ in range(n):
        async with s.get(sb.base_url + "/recordings", params={"page[size]": "1"}) as r:
            out.append(r.status)
    return out


async def call(s: aiohttp.ClientSession, method: str, url: str, **kw: Any):
    async with s.request(method, url, **kw) as r:
        return r.status, r.headers.copy(), await r.read()


# -- rate limit ------------------------------------------------------------------------------------
async def test_excess_calls_get_429_with_the_telnyx_body_and_rate_headers(sandbox_factory):
    # 1 token per 100 s: no refill can happen while the test runs.
    config = small_config(rate_limit=0.01, rate_burst=3)
    async with sandbox_factory(config) as sb, aiohttp.ClientSession(headers=auth(sb)) as s:
        seen = []
        for _ in range(4):
            status, headers, body = await call(s, "GET", sb.base_url + "/recordings")
            seen.append((status, headers["x-ratelimit-remaining"]))
        assert seen == [(200, "2"), (200, "1"), (200, "0"), (429, "0")]
        assert headers["x-ratelimit-limit"] == "3"
        assert headers["x-ratelimit-reset"] == "100"  # integer seconds, rounded up
        assert "Retry-After" not in headers
        assert b'"code": "10011"' in body and b"Too many requests" in body
        sb.state.advance_clock(100)
        assert (await call(s, "GET", sb.base_url + "/recordings"))[0] == 200


async def test_retry_after_and_fractional_reset_are_switchable(sandbox_factory):
    config = small_config(rate_limit=4.0, rate_burst=1, retry_after_header=True)
    async with sandbox_factory(config) as sb, aiohttp.ClientSession(headers=auth(sb)) as s:
        await call(s, "GET", sb.base_url + "/recordings")
        status, headers, _ = await call(s, "GET", sb.base_url + "/recordings")
        assert status == 429 and headers["Retry-After"] == "1"
        assert headers["x-ratelimit-reset"] == "1"
        sb.config.rate_reset_fractional = True
        status, headers, _ = await call(s, "GET", sb.base_url + "/recordings")
        assert status == 429 and 0 < float(headers["x-ratelimit-reset"]) <= 0.25


def test_the_token_bucket_refills_at_the_rate_up_to_the_burst():
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    assert [bucket.take(0.0).allowed for _ in range(3)] == [True, True, False]
    assert bucket.take(0.0).reset == pytest.approx(0.5)
    assert bucket.take(0.5).allowed and not bucket.take(0.5).allowed
    assert bucket.take(100.0).remaining == 1  # capped at the burst, minus the one taken


async def test_audio_downloads_are_not_rate_limited(sandbox_factory):
    config = small_config(rate_limit=0.01, rate_burst=1)
    async with (
        sandbox_factory(config) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        _, _, body = await call(s, "GET", sb.base_url + "/recordings")
        url = json.loads(body)["data"][0]["download_urls"]["mp3"]
        assert (await call(s, "GET", sb.base_url + "/recordings"))[0] == 429
        assert [(await call(keyless, "GET", url))[0] for _ in range(5)] == [200] * 5


# -- latency ---------------------------------------------------------------------------------------
async def test_latency_is_slept_before_api_answers_and_audio_first_bytes(
    sandbox_factory, monkeypatch
):
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        slept.append(delay)
        return await real_sleep(0, *args)

    monkeypatch.setattr("pipeline.sandbox.app.asyncio.sleep", recording_sleep)
    config = small_config(latency=0.25, audio_latency=0.5)
    async with (
        sandbox_factory(config) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        rec = next(iter(sb.state.recordings))
        _, _, body = await call(s, "GET", f"{sb.base_url}/recordings/{rec}")
        await call(keyless, "GET", json.loads(body)["data"]["download_urls"]["wav"])
    assert 0.25 in slept and 0.5 in slept


# -- API faults ----------------------------------------------------------------------------------
async def test_5xx_faults_alternate_500_and_503_and_repeat_for_the_same_seed(sandbox_factory):
    runs = []
    for _ in range(2):
        config = small_config(fault_5xx=0.4, fault_seed=7)
        async with sandbox_factory(config) as sb, aiohttp.ClientSession(headers=auth(sb)) as s:
            runs.append(await statuses(sb, s, 40))
    assert runs[0] == runs[1]
    assert {200, 500, 503} == set(runs[0])
    errors = [status for status in runs[0] if status != 200]
    assert errors[:4] == [500, 503, 500, 503], "500 and 503 take turns"
    async with (
        sandbox_factory(small_config(fault_5xx=0.4, fault_seed=8)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
    ):
        assert await statuses(sb, s, 40) != runs[0]


async def test_a_reset_drops_the_connection_without_an_answer(sandbox_factory):
    async with (
        sandbox_factory(small_config(fault_reset=1.0)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
    ):
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(s, "GET", sb.base_url + "/recordings")
        assert sb.state.request_counts["GET /recordings reset"] >= 1


async def test_faults_on_deletes_sometimes_strike_after_the_delete_was_made(sandbox_factory):
    async with (
        sandbox_factory(small_config(fault_5xx=1.0)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
    ):
        ids = list(sb.state.recordings)[:20]
        for rid in ids:
            assert (await call(s, "DELETE", f"{sb.base_url}/recordings/{rid}"))[0] in (500, 503)
    gone = sb.state.deleted_recording_ids
    assert 0 < len(gone) < 20  # some answers were lost after the change, others came before it


async def test_a_failing_bulk_delete_removes_only_some_ids_then_answers_500(sandbox_factory):
    async with (
        sandbox_factory(small_config(fault_partial_delete=1.0, fault_seed=3)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
    ):
        ids = list(sb.state.recordings)[:10]
        url = sb.base_url + "/recordings/actions/delete"
        status, _, body = await call(s, "POST", url, json={"ids": ids})
        assert status == 500 and b"Internal Server Error" in body
        assert len(sb.state.deleted_recording_ids) < 10
        assert sb.state.deleted_recording_ids <= set(ids)
        sb.config.fault_partial_delete = 0.0
        assert (await call(s, "POST", url, json={"ids": ids}))[0] == 200
        assert sb.state.deleted_recording_ids == set(ids)


async def test_faults_can_be_switched_at_runtime_through_the_config_endpoint(sandbox):
    async with aiohttp.ClientSession(headers=auth(sandbox)) as s:
        assert await statuses(sandbox, s, 3) == [200] * 3
        status, _, _ = await call(
            s, "POST", sandbox.url + "/_sandbox/config", json={"fault_5xx": 1.0}
        )
        assert status == 200 and sandbox.config.fault_5xx == 1.0
        assert set(await statuses(sandbox, s, 3)) <= {500, 503}
        await call(s, "POST", sandbox.url + "/_sandbox/config", json={"fault_5xx": 0.0})
        assert await statuses(sandbox, s, 3) == [200] * 3
        for bad in ({"recordings": 5}, {"fault_5xx": 2.0}, {"nonsense": 1}):
            assert (await call(s, "POST", sandbox.url + "/_sandbox/config", json=bad))[0] == 422
    assert sandbox.config.fault_5xx == 0.0


# -- audio faults ----------------------------------------------------------------------------------
async def audio_url(sb: SandboxServer, s: aiohttp.ClientSession) -> str:
    rec = next(iter(sb.state.recordings))
    status, _, body = await call(s, "GET", f"{sb.base_url}/recordings/{rec}")
    return json.loads(body)["data"]["download_urls"]["mp3"]


async def test_truncated_downloads_announce_the_full_length_then_stop_short(sandbox_factory):
    async with (
        sandbox_factory(small_config(fault_truncate=1.0, audio_bytes=300_000)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        url = await audio_url(sb, s)
        async with keyless.get(url) as r:
            assert r.status == 200 and r.content_length == 300_000
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        assert sb.state.request_counts["GET /_audio/{name} truncated"] == 1


async def test_expire_faults_refuse_fresh_links_as_expired(sandbox_factory):
    async with (
        sandbox_factory(small_config(fault_expire=1.0)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        status, _, body = await call(keyless, "GET", await audio_url(sb, s))
        assert status == 403 and b"Request has expired" in body


async def test_audio_resets_drop_the_download_connection(sandbox_factory):
    async with (
        sandbox_factory(small_config()) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        url = await audio_url(sb, s)
        sb.config.fault_reset = 1.0
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(keyless, "GET", url)
