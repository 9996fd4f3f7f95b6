"""Verification above the backends, written once: is what the store holds what we downloaded?"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.storage.base import META_SHA256, Backend, ObjectStat, StoredObject


class VerificationError(Exception):
    """The stored object is not the bytes we downloaded. Nothing of it may be deleted from Telnyx."""


@dataclass(frozen=True, slots=True)
class Digest:
    """What we saw while streaming the download."""

    size: int
    sha256: str


async def verify_stored(backend: Backend, stored: StoredObject, downloaded: Digest) -> ObjectStat:
    """Read back the stored object's size and checksums and compare them with the download."""
    where = backend.uri(stored.key)
    if stored.size != downloaded.size or stored.sha256 != downloaded.sha256:
        raise VerificationError(f"{where}: the backend stored other bytes than were downloaded")
    stat = await backend.stat(stored.key)
    if stat is None:
        raise VerificationError(f"{where}: object not found after upload")
    if stat.size != downloaded.size:
        raise VerificationError(f"{where}: stored size {stat.size} != downloaded {downloaded.size}")
    common = set(stored.checksums) & set(stat.checksums)
    for name in common:
        if stored.checksums[name] != stat.checksums[name]:
            raise VerificationError(f"{where}: stored {name} differs from the uploaded one")
    # Our own sha256 metadata is a claim, not something the store computed: with no store
    # checksum to compare, hash the object by reading it back.
    if not common - {META_SHA256} and await sha256_of(backend, stored.key) != downloaded.sha256:
        raise VerificationError(f"{where}: read-back sha256 differs from the download")
    return stat


async def sha256_of(backend: Backend, key: str) -> str:
    h = hashlib.sha256()
    async for chunk in backend.read_stream(key):
        h.update(chunk)
    return h.hexdigest()


def matches(stat: ObjectStat | None, size: int, sha256: str) -> bool:
    """Does an existing object carry this size and sha256 (server-computed or our metadata)?"""
    if stat is None or stat.size != size:
        return False
    return sha256 in (stat.checksums.get("sha256"), stat.checksums.get("meta-sha256"))
