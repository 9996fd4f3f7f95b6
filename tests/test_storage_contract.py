"""The contract every backend keeps, run against real emulators: moto (s3, s3-generic),
gcp-storage-emulator (gcs), Azurite (azure) and a temporary folder (local)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Mapping

import pytest

from pipeline.storage.base import (
    META_SHA256,
    Backend,
    IncompleteStreamError,
    PreflightError,
    StorageError,
)
from pipeline.storage.settings import MiB
from tests.fixtures.emulators import AZURITE_ACCOUNT, KINDS, Emulators, unique_bucket

CHUNK = 256 * 1024


class Producer:
    """A deterministic pseudo-random byte stream that hashes what it yields.

    It holds one chunk at a time, never the whole object.
    """

    def __init__(self, size: int, *, seed: int = 7, fail_after: int | None = None) -> None:
        self.size = size
        self.fail_after = fail_after
        self.sha256 = hashlib.sha256()
        self.rng = random.Random(seed)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.size:
            if self.fail_after is not None and sent >= self.fail_after:
                raise ConnectionResetError("download broke")
            chunk = self.rng.randbytes(min(CHUNK, self.size - sent))
            self.sha256.update(chunk)
            sent += len(chunk)
            yield chunk
        if self.fail_after is not None:
            raise ConnectionResetError("download broke at the very end")


def stream(data: bytes, step: int = 1000) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), step):
            yield data[i : i + step]

    return gen()


async def sha256_of(backend: Backend, key: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    async for chunk in backend.read_stream(key):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def agreeing(expected: Mapping[str, str], actual: Mapping[str, str]) -> set[str]:
    """Names both report; fails if any of them differs."""
    common = set(expected) & set(actual)
    for name in common:
        assert expected[name] == actual[name], name
    return common


SIZES = {"0B": 0, "1B": 1, "5MiB+1": 5 * MiB + 1, "64MiB": 64 * MiB}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_a_streamed_object_reads_back_with_the_same_size_and_checksums(
    any_backend: Backend, size: int
) -> None:
    producer = Producer(size)
    stored = await any_backend.write_stream(
        "audio/rec.mp3", aiter(producer), content_type="audio/mpeg", expected_size=size
    )
    sha = producer.sha256.hexdigest()
    assert (stored.size, stored.sha256, stored.key) == (size, sha, "audio/rec.mp3")
    stat = await any_backend.stat("audio/rec.mp3")
    assert stat is not None and stat.size == size
    assert agreeing(stored.checksums, stat.checksums), "no checksum in common"
    assert stat.checksums.get(META_SHA256) == sha
    assert await sha256_of(any_backend, "audio/rec.mp3") == (size, sha)


async def test_a_stream_without_expected_size_is_stored_whole(any_backend: Backend) -> None:
    data = random.Random(1).randbytes(6 * MiB)
    stored = await any_backend.write_stream("x.bin", stream(data, 65536), content_type="a/b")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await sha256_of(any_backend, "x.bin") == (len(data), stored.sha256)


@pytest.mark.parametrize("size", [1000, 5 * MiB + 1], ids=["single-part", "multipart"])
async def test_stat_reports_a_server_checksum_equal_to_what_the_write_promised(
    any_backend: Backend, size: int
) -> None:
    stored = await any_backend.write_stream(
        "k", aiter(Producer(size)), content_type="audio/wav", expected_size=size
    )
    stat = await any_backend.stat("k")
    assert stat is not None
    common = agreeing(stored.checksums, stat.checksums) - {META_SHA256}
    assert common, f"only {set(stat.checksums)} reported, write promised {set(stored.checksums)}"


@pytest.mark.parametrize("fail_after", [0, 1 * MiB, 6 * MiB], ids=["at-once", "small", "multipart"])
async def test_a_stream_that_breaks_leaves_no_object(any_backend: Backend, fail_after: int) -> None:
    with pytest.raises(IncompleteStreamError, match="broke after"):
        await any_backend.write_stream(
            "audio/broken.mp3",
            aiter(Producer(12 * MiB, fail_after=fail_after)),
            content_type="audio/mpeg",
        )
    assert await any_backend.stat("audio/broken.mp3") is None
    assert await any_backend.list("") == []


@pytest.mark.parametrize("actual", [3 * MiB, 7 * MiB], ids=["small", "multipart"])
async def test_a_stream_shorter_than_expected_size_leaves_no_object(
    any_backend: Backend, actual: int
) -> None:
    with pytest.raises(
        IncompleteStreamError, match=f"ended after {actual} of {actual + 1} expected"
    ):
        await any_backend.write_stream(
            "short.mp3",
            aiter(Producer(actual)),
            content_type="audio/mpeg",
            expected_size=actual + 1,
        )
    assert await any_backend.stat("short.mp3") is None
    assert await any_backend.list("") == []


async def test_a_stream_longer_than_expected_size_leaves_no_object(any_backend: Backend) -> None:
    with pytest.raises(IncompleteStreamError, match="more than the 6291456 expected"):
        await any_backend.write_stream(
            "long.mp3", aiter(Producer(7 * MiB)), content_type="audio/mpeg", expected_size=6 * MiB
        )
    assert await any_backend.stat("long.mp3") is None


async def test_a_broken_overwrite_keeps_the_previous_object(any_backend: Backend) -> None:
    first = await any_backend.write_stream(
        "same.mp3", aiter(Producer(6 * MiB, seed=1)), content_type="audio/mpeg"
    )
    with pytest.raises(IncompleteStreamError):
        await any_backend.write_stream(
            "same.mp3",
            aiter(Producer(12 * MiB, seed=2, fail_after=7 * MiB)),
            content_type="audio/mpeg",
        )
    assert await sha256_of(any_backend, "same.mp3") == (first.size, first.sha256)


async def test_stat_of_a_missing_key_is_none(any_backend: Backend) -> None:
    assert await any_backend.stat("nothing/here.mp3") is None


async def test_reading_a_missing_key_raises_a_storage_error(any_backend: Backend) -> None:
    with pytest.raises(StorageError, match="object 'nothing.mp3' does not exist"):
        async for _ in any_backend.read_stream("nothing.mp3"):
            pass


async def test_a_small_write_replaces_the_object_whole(any_backend: Backend) -> None:
    one = await any_backend.write_small("m/run.json", b'{"v": 1}', content_type="application/json")
    two = await any_backend.write_small("m/run.json", b'{"v": 22}', content_type="application/json")
    assert (one.size, two.size) == (8, 9)
    assert two.sha256 == hashlib.sha256(b'{"v": 22}').hexdigest()
    chunks = [c async for c in any_backend.read_stream("m/run.json")]
    assert b"".join(chunks) == b'{"v": 22}'
    stat = await any_backend.stat("m/run.json")
    assert stat is not None and stat.size == 9
    assert agreeing(two.checksums, stat.checksums)


async def test_an_empty_small_write_is_an_empty_object(any_backend: Backend) -> None:
    await any_backend.write_small("empty", b"", content_type="application/octet-stream")
    stat = await any_backend.stat("empty")
    assert stat is not None and stat.size == 0


async def test_listing_returns_keys_relative_to_the_prefix_with_sizes(any_backend: Backend) -> None:
    for key, body in {
        "a/1.mp3": b"1",
        "a/2.mp3": b"22",
        "ab/3.mp3": b"333",
        "b/4": b"4444",
    }.items():
        await any_backend.write_small(key, body, content_type="audio/mpeg")
    listed = sorted((s.key, s.size) for s in await any_backend.list("a/"))
    assert listed == [("a/1.mp3", 1), ("a/2.mp3", 2)]
    assert sorted(s.key for s in await any_backend.list("a")) == ["a/1.mp3", "a/2.mp3", "ab/3.mp3"]
    assert len(await any_backend.list("")) == 4
    assert await any_backend.list("zzz/") == []


async def test_delete_removes_the_object_and_a_missing_one_is_fine(any_backend: Backend) -> None:
    await any_backend.write_small("gone.mp3", b"bye", content_type="audio/mpeg")
    await any_backend.delete("gone.mp3")
    assert await any_backend.stat("gone.mp3") is None
    await any_backend.delete("gone.mp3")
    await any_backend.delete("never/was.mp3")


async def test_preflight_passes_and_leaves_no_probe_behind(any_backend: Backend) -> None:
    await any_backend.preflight()
    assert await any_backend.list("") == []


def missing_bucket_message(kind: str, name: str, folder: str) -> str:
    return {
        "s3": f"s3 bucket '{name}': bucket does not exist",
        "s3-generic": f"s3-generic bucket '{name}': bucket does not exist",
        "gcs": f"gcs bucket '{name}': bucket does not exist",
        "azure": f"azure container '{name}' (account '{AZURITE_ACCOUNT}'): container does not exist",
        "local": f"local folder '{folder}': folder does not exist",
    }[kind]


@pytest.mark.parametrize("kind", KINDS)
async def test_preflight_names_a_missing_bucket_in_one_line(
    emulators: Emulators, kind: str
) -> None:
    name = unique_bucket("missing")
    backend = emulators.backend(kind, name, create=False)
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    assert str(caught.value) == missing_bucket_message(kind, name, backend.bucket)


UNSAFE_KEYS = [
    "",
    "../escape.mp3",
    "a/../../escape.mp3",
    "a/..",
    "/abs.mp3",
    "a//b.mp3",
    "a/./b.mp3",
    "trailing/",
    "back\\slash.mp3",
    "nul\x00.mp3",
    "newline\n.mp3",
    "del\x7f.mp3",
    "x" * 1100,
]


@pytest.mark.parametrize("kind", KINDS)
async def test_every_method_rejects_unsafe_keys(emulators: Emulators, kind: str) -> None:
    backend = emulators.backend(kind)
    for key in UNSAFE_KEYS:
        with pytest.raises(ValueError):
            await backend.write_stream(key, stream(b"x"), content_type="a/b")
        with pytest.raises(ValueError):
            await backend.write_small(key, b"x", content_type="a/b")
        with pytest.raises(ValueError):
            await backend.stat(key)
        with pytest.raises(ValueError):
            backend.read_stream(key)
        with pytest.raises(ValueError):
            await backend.delete(key)
        with pytest.raises(ValueError):
            backend.uri(key)
    for prefix in ("../", "/a", "a/../b/", "a\\b", "a\x00"):
        with pytest.raises(ValueError):
            await backend.list(prefix)
    assert await backend.list("") == []


def expected_uri(kind: str, backend: Backend) -> str:
    return {
        "s3": f"s3://{backend.bucket}/telnyx-archive/a/b.mp3",
        "s3-generic": f"s3://{backend.bucket}/telnyx-archive/a/b.mp3",
        "gcs": f"gs://{backend.bucket}/telnyx-archive/a/b.mp3",
        "azure": f"az://{backend.bucket}/telnyx-archive/a/b.mp3",
        "local": f"file://{backend.bucket}/a/b.mp3",
    }[kind]


@pytest.mark.parametrize("kind", KINDS)
async def test_uri_names_the_store_the_bucket_the_prefix_and_the_key(
    emulators: Emulators, kind: str
) -> None:
    backend = emulators.backend(kind)
    assert backend.uri("a/b.mp3") == expected_uri(kind, backend)
    stored = await backend.write_small("a/b.mp3", b"x", content_type="audio/mpeg")
    assert stored.uri == expected_uri(kind, backend)


@pytest.mark.parametrize("kind", ["s3", "s3-generic", "gcs", "azure"])
async def test_repr_and_errors_show_no_secret(emulators: Emulators, kind: str) -> None:
    backend = emulators.backend(kind, unique_bucket("missing"), create=False)
    shown = repr(backend)
    assert shown.endswith(f"(name='{kind}', bucket='{backend.bucket}', prefix='telnyx-archive')")
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    for secret in ("testing", emulators.azure.account_key if kind == "azure" else "testing"):
        assert secret not in shown
        assert secret not in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_no_more_writes_run_at_once_than_max_concurrency(
    emulators: Emulators, kind: str
) -> None:
    backend = emulators.backend(kind, max_concurrency=2)
    started = 0
    release = asyncio.Event()

    async def gated() -> AsyncIterator[bytes]:
        nonlocal started
        started += 1
        await release.wait()
        yield b"x"

    writes = [
        asyncio.create_task(backend.write_stream(f"k{i}", gated(), content_type="a/b"))
        for i in range(4)
    ]
    for _ in range(500):
        if started >= 2:
            break
        await asyncio.sleep(0.01)
    for _ in range(20):  # give a third write every chance to start
        await asyncio.sleep(0.01)
    assert started == 2
    release.set()
    await asyncio.gather(*writes)
    assert started == 4
    assert sorted(s.key for s in await backend.list("")) == ["k0", "k1", "k2", "k3"]
