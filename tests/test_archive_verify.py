"""Verification: a stored object counts only when the store's own size and checksum, or a
read-back of its bytes, agree with what was downloaded."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.archive.verify import Digest, VerificationError, verify_stored
from pipeline.storage.base import META_SHA256, ObjectStat
from pipeline.storage.local import LocalBackend
from pipeline.storage.settings import StorageSettings


class MetadataOnlyStore(LocalBackend):
    """A store that computes no checksum of its own: stat reports the size and the sha256
    metadata the writer attached, as an S3-compatible store without checksum support does."""

    claims: dict[str, str]

    async def write_stream(self, key, chunks, **kwargs):
        stored = await super().write_stream(key, chunks, **kwargs)
        self.claims = {key: stored.sha256}
        return stored

    async def stat(self, key: str) -> ObjectStat | None:
        found = await super().stat(key)
        if found is None:
            return None
        return replace(found, checksums={META_SHA256: self.claims[key]})


async def _chunks(data: bytes):
    yield data


async def stored_then_corrupted(backend: LocalBackend, data: bytes):
    stored = await backend.write_stream("audio/r.mp3", _chunks(data), content_type="audio/mpeg")
    (Path(backend.root) / "audio" / "r.mp3").write_bytes(bytes(len(data)))  # same size, zeros
    return stored


async def test_a_store_reporting_only_our_own_sha256_metadata_is_read_back_and_corruption_caught(
    tmp_path,
):
    data = b"recorded audio" * 100
    backend = MetadataOnlyStore(root=tmp_path, settings=StorageSettings())
    stored = await stored_then_corrupted(backend, data)
    downloaded = Digest(len(data), hashlib.sha256(data).hexdigest())
    with pytest.raises(VerificationError, match="read-back sha256 differs"):
        await verify_stored(backend, stored, downloaded)


async def test_a_store_reporting_only_our_own_sha256_metadata_passes_when_the_bytes_match(
    tmp_path,
):
    data = b"recorded audio" * 100
    backend = MetadataOnlyStore(root=tmp_path, settings=StorageSettings())
    stored = await backend.write_stream("audio/r.mp3", _chunks(data), content_type="audio/mpeg")
    stat = await verify_stored(backend, stored, Digest(len(data), hashlib.sha256(data).hexdigest()))
    assert stat.size == len(data)
