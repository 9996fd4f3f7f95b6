"""One recording's audio: download from its presigned link, stream into the backend, verify.

The download is hashed while it streams; the stored object is then read back (size and the
store's own checksums) before anything may count as archived.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pipeline.archive.keys import audio_key
from pipeline.archive.verify import Digest, VerificationError, matches, verify_stored
from pipeline.storage.base import Backend, IncompleteStreamError, StorageError
from pipeline.telnyx.errors import (
    APIConnectionError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from pipeline.telnyx.models import Recording

log = logging.getLogger(__name__)

CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
CHUNK = 256 * 1024
# Presigned links live about 10 minutes; refresh them a little before that.
LINK_REFRESH_AFTER = 480.0


class AudioError(Exception):
    """The audio could not be archived; the recording stays in Telnyx."""


class _LinkExpired(Exception):
    pass


class _Truncated(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StoredAudio:
    format: str
    key: str
    uri: str
    size: int
    sha256: str
    reused: bool = False  # an identical object was already there; nothing was uploaded


@dataclass
class FreshRecording:
    """A recording and when its download links were issued (monotonic seconds)."""

    recording: Recording
    issued_at: float


async def _hashing(
    body: aiohttp.StreamReader, digest: hashlib._Hash, counter: list[int]
) -> AsyncIterator[bytes]:
    async for chunk in body.iter_chunked(CHUNK):
        digest.update(chunk)
        counter[0] += len(chunk)
        yield chunk


async def store_audio(
    client,
    backend: Backend,
    fresh: FreshRecording,
    fmt: str,
    *,
    attempts: int = 5,
    may_exist: bool = True,
) -> StoredAudio:
    """Archive one format of one recording, verified. Raises AudioError.

    may_exist=False: the object was known absent when the run began, so the first attempt
    uploads without looking for an earlier copy; a retry always looks."""
    key = audio_key(fresh.recording, fmt)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=0.2, max=10),
        retry=retry_if_exception(_worth_retrying),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                look = may_exist or attempt.retry_state.attempt_number > 1
                return await _store_once(client, backend, fresh, fmt, key, look)
    except NotFoundError as exc:
        raise AudioError(f"recording {fresh.recording.id}: {fmt} audio is gone ({exc})") from None
    except (_LinkExpired, _Truncated) as exc:
        raise AudioError(f"recording {fresh.recording.id}: {fmt} download failed: {exc}") from None
    except Exception as exc:
        raise AudioError(
            f"recording {fresh.recording.id}: {fmt}: {type(exc).__name__}: {exc}"
        ) from None
    raise AssertionError("unreachable")


async def _refresh(client, fresh: FreshRecording) -> None:
    fresh.recording = await client.get_recording(fresh.recording.id)
    fresh.issued_at = time.monotonic()


async def _store_once(
    client, backend: Backend, fresh: FreshRecording, fmt: str, key: str, look: bool = True
) -> StoredAudio:
    if time.monotonic() - fresh.issued_at > LINK_REFRESH_AFTER:
        await _refresh(client, fresh)
    url = fresh.recording.download_urls.for_format(fmt)
    if not url:
        await _refresh(client, fresh)
        url = fresh.recording.download_urls.for_format(fmt)
        if not url:
            raise NotFoundError(404, detail=f"no {fmt} download url")
    existing = await backend.stat(key) if look else None
    digest = hashlib.sha256()
    counter = [0]
    try:
        async with client.download(url) as response:
            expected = response.content_length
            body = _hashing(response.content, digest, counter)
            if existing is not None and expected == existing.size and _has_sha(existing):
                # A rerun after a crash: hash the download without uploading it again.
                async for _ in body:
                    pass
                _check_length(counter[0], expected)
                if matches(existing, counter[0], digest.hexdigest()):
                    return StoredAudio(
                        fmt, key, backend.uri(key), counter[0], digest.hexdigest(), True
                    )
                raise _Truncated("an object with other content is in the way; uploading again")
            stored = await backend.write_stream(
                key, body, content_type=CONTENT_TYPES[fmt], expected_size=expected
            )
    except PermissionDeniedError:
        await _refresh(client, fresh)
        raise _LinkExpired("download link expired; fetched fresh links") from None
    _check_length(counter[0], expected)
    downloaded = Digest(counter[0], digest.hexdigest())
    try:
        await verify_stored(backend, stored, downloaded)
    except VerificationError as exc:
        await backend.delete(key)  # never leave a bad copy where a rerun could trust it
        raise _Truncated(str(exc)) from None
    return StoredAudio(fmt, key, stored.uri, stored.size, stored.sha256)


_TRANSIENT = (
    _LinkExpired,
    _Truncated,
    APIConnectionError,
    InternalServerError,
    RateLimitError,
    IncompleteStreamError,  # the download broke mid-stream; nothing was left visible
    aiohttp.ClientError,
)


def _worth_retrying(exc: BaseException) -> bool:
    """A missing bucket or a refused key won't heal in seconds: fail fast and report."""
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, StorageError) and exc.transient


def _check_length(got: int, expected: int | None) -> None:
    if expected is not None and got != expected:
        raise _Truncated(f"got {got} of {expected} bytes")


def _has_sha(stat) -> bool:
    return bool(stat.checksums.get("sha256") or stat.checksums.get("meta-sha256"))
