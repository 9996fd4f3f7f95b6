"""Audio download links: presigned-style, keyless, expiring, deterministic, streamed."""

from __future__ import annotations

import hashlib
import io
import json
import wave
from typing import Any

import aiohttp
import pytest

from pipeline.sandbox.audio import audio_digest, iter_audio
from tests.fixtures.sandbox import auth, small_config


@pytest.fixture
async def session(sandbox):
    async with aiohttp.ClientSession(headers=auth(sandbox)) as s:
        yield s


@pytest.fixture
async def keyless():
    async with aiohttp.ClientSession() as s:
        yield s


async def first_recording(sandbox, session, **params: str) -> dict[str, Any]:
    async with session.get(
        sandbox.base_url + "/recordings", params={"page[size]": "1", **params}
    ) as r:
        return (await r.json())["data"][0]


async def fetch(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, bytes]:
    async with session.get(url, **kw) as r:
        return r.status, r.headers.copy(), await r.read()


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
async def test_links_serve_the_recordings_audio_without_the_api_key(sandbox, session, keyless, fmt):
    rec = await first_recording(sandbox, session)
    status, headers, body = await fetch(keyless, rec["download_urls"][fmt])
    size, sha = sandbox.state.audio_digest(rec["id"], fmt)
    assert status == 200 and int(headers["Content-Length"]) == size == len(body) == 4096
    assert hashlib.sha256(body).hexdigest() == sha
    assert headers["Content-Type"] == {"mp3": "audio/mpeg", "wav": "audio/wav"}[fmt]


async def test_the_state_endpoint_reports_each_formats_size_and_sha256(sandbox, keyless):
    rid = next(iter(sandbox.state.recordings))
    _, _, body = await fetch(keyless, f"{sandbox.url}/_sandbox/audio/{rid}")
    got = json.loads(body)
    assert got == {
        fmt: dict(zip(("size", "sha256"), sandbox.state.audio_digest(rid, fmt), strict=True))
        for fmt in ("mp3", "wav")
    }


async def test_wav_is_a_valid_riff_file_with_the_recordings_channels(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    _, _, body = await fetch(keyless, rec["download_urls"]["wav"])
    with wave.open(io.BytesIO(body)) as w:
        assert w.getnchannels() == (2 if rec["channels"] == "dual" else 1)
        assert w.getsampwidth() == 2 and w.getframerate() == 8000
        assert w.getnframes() == (4096 - 44) // (2 * w.getnchannels())


async def test_mp3_starts_with_an_id3_tag_followed_by_a_frame_sync(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    _, _, body = await fetch(keyless, rec["download_urls"]["mp3"])
    assert body[:3] == b"ID3"
    tag = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(body[6:10]))
    assert body[tag] == 0xFF and body[tag + 1] & 0xE0 == 0xE0


def test_audio_is_generated_in_bounded_pieces_and_digests_are_reproducible():
    pieces = list(iter_audio(5, "rec", "wav", 1_000_000, 2))
    assert sum(map(len, pieces)) == 1_000_000 and max(map(len, pieces)) <= 64 * 1024
    assert (
        audio_digest(5, "rec", "wav", 1_000_000, 2)[1]
        == hashlib.sha256(b"".join(pieces)).hexdigest()
    )
    assert audio_digest(5, "rec", "mp3", 1_000_000, 2) != audio_digest(
        6, "rec", "mp3", 1_000_000, 2
    )


async def test_links_expire_after_the_ttl_and_a_fresh_get_issues_working_ones(
    sandbox, session, keyless
):
    rec = await first_recording(sandbox, session)
    sandbox.state.advance_clock(601)
    status, headers, body = await fetch(keyless, rec["download_urls"]["mp3"])
    assert status == 403 and headers["Content-Type"].startswith("application/xml")
    assert b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body
    async with session.get(f"{sandbox.base_url}/recordings/{rec['id']}") as r:
        fresh = (await r.json())["data"]["download_urls"]["mp3"]
    assert fresh != rec["download_urls"]["mp3"]
    assert (await fetch(keyless, fresh))[0] == 200


async def test_links_live_the_configured_ttl_and_no_more_than_a_second_longer(sandbox_factory):
    async with (
        sandbox_factory(small_config(link_ttl=30)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        rec = await first_recording(sb, s)
        assert "X-Amz-Expires=30&" in rec["download_urls"]["wav"]
        sb.state.advance_clock(29)  # a link lives at least link_ttl seconds
        assert (await fetch(keyless, rec["download_urls"]["wav"]))[0] == 200
        sb.state.advance_clock(3)  # and less than link_ttl + 1
        assert (await fetch(keyless, rec["download_urls"]["wav"]))[0] == 403


async def test_a_tampered_link_gets_403_signature_does_not_match(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    url = rec["download_urls"]["mp3"].replace("X-Amz-Expires=600", "X-Amz-Expires=999999")
    status, _, body = await fetch(keyless, url)
    assert status == 403 and b"SignatureDoesNotMatch" in body


async def test_a_deleted_recordings_links_answer_404(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    async with session.delete(f"{sandbox.base_url}/recordings/{rec['id']}") as r:
        assert r.status == 200
    for fmt in ("mp3", "wav"):
        status, _, body = await fetch(keyless, rec["download_urls"][fmt])
        assert status == 404 and b"NoSuchKey" in body
    assert sandbox.state.audio_digest(rec["id"], "mp3")[0] == 4096  # digests outlive deletion


async def test_sending_the_api_key_to_the_audio_link_is_refused_like_s3_does(sandbox, session):
    rec = await first_recording(sandbox, session)
    status, _, body = await fetch(session, rec["download_urls"]["mp3"])
    assert status == 400 and b"Only one auth mechanism allowed" in body
    assert sandbox.state.request_counts["GET /_audio/{name} 400"] == 1


async def test_range_requests_return_the_requested_bytes(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    url = rec["download_urls"]["wav"]
    _, _, whole = await fetch(keyless, url)
    status, headers, part = await fetch(keyless, url, headers={"Range": "bytes=100-1099"})
    assert status == 206 and part == whole[100:1100]
    assert headers["Content-Range"] == "bytes 100-1099/4096"
    status, _, tail = await fetch(keyless, url, headers={"Range": "bytes=-96"})
    assert status == 206 and tail == whole[-96:]
    assert (await fetch(keyless, url, headers={"Range": "bytes=5000-"}))[0] == 416


async def test_head_reports_the_size_without_a_body(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    async with keyless.head(rec["download_urls"]["mp3"]) as r:
        assert r.status == 200 and r.headers["Content-Length"] == "4096"
        assert await r.read() == b""


async def test_large_audio_streams_with_the_announced_length(sandbox_factory):
    size = 3 * 1024 * 1024 + 17
    async with (
        sandbox_factory(small_config(recordings=2, audio_bytes=size)) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
        aiohttp.ClientSession() as keyless,
    ):
        rec = await first_recording(sb, s)
        h = hashlib.sha256()
        async with keyless.get(rec["download_urls"]["wav"]) as r:
            assert r.content_length == size
            async for chunk in r.content.iter_chunked(64 * 1024):
                h.update(chunk)
        assert (size, h.hexdigest()) == sb.state.audio_digest(rec["id"], "wav")


async def test_the_clock_endpoint_moves_link_expiry_forward(sandbox, session, keyless):
    rec = await first_recording(sandbox, session)
    async with keyless.post(sandbox.url + "/_sandbox/clock", json={"advance": 601}) as r:
        assert r.status == 200
    assert (await fetch(keyless, rec["download_urls"]["wav"]))[0] == 403
