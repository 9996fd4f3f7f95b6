"""The one interface every destination implements.

A backend puts, stats, reads, lists and deletes bytes. It never decides what may be deleted
from Telnyx, and it does not retry: verification, retries and the delete policy sit above it,
in `pipeline.archive`, written once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """A destination failed. The message names the backend, the bucket and the problem, never a secret."""


class PreflightError(StorageError):
    """A destination cannot be used at all (wrong key, missing bucket, no permission)."""


class IncompleteStreamError(StorageError):
    """The byte stream being written broke or came up short; nothing was left visible."""


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a store says it holds under a key. sha256 is None when the store cannot tell."""

    key: str
    size: int
    sha256: str | None = None  # lowercase hex
    md5: str | None = None  # lowercase hex


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a write stored: the object's URI, size and checksums (hex)."""

    uri: str
    key: str
    size: int
    sha256: str
    md5: str | None = None


@runtime_checkable
class Backend(Protocol):
    """A destination: one bucket (or folder) and a prefix. Keys are relative to the prefix."""

    name: str  # "s3", "s3-generic", "gcs", "azure", "local"
    bucket: str

    def uri(self, key: str) -> str:
        """The full URI of a key, e.g. s3://bucket/prefix/key."""
        ...

    async def write_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        expected_size: int | None = None,
    ) -> StoredObject:
        """Stream bytes into key. Either the whole object becomes visible, or nothing does.

        Raises IncompleteStreamError when the stream raises or when expected_size is given
        and the byte count differs.
        """
        ...

    async def write_small(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Write a small object (Parquet file, manifest) atomically."""
        ...

    async def stat(self, key: str) -> ObjectStat | None:
        """Size and checksums of key, or None if absent."""
        ...

    def read_stream(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, in chunks."""
        ...

    async def list(self, prefix: str) -> list[ObjectStat]:
        """Every object whose key starts with prefix."""
        ...

    async def delete(self, key: str) -> None:
        """Remove key (to clean up a bad copy). Absent is fine."""
        ...

    async def preflight(self) -> None:
        """Write, stat and delete a small probe object. Raises PreflightError."""
        ...

    async def close(self) -> None: ...
