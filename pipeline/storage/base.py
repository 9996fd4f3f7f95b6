"""The one interface every destination implements.

A backend puts, stats, reads, lists and deletes bytes. It never decides what may be deleted
from Telnyx, and it does not retry: verification, retries and the delete policy sit above it,
in `pipeline.archive`, written once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Names used in ObjectStat.checksums / StoredObject.checksums. A name means the same encoding
# everywhere, so the verifier above the backends compares values by plain equality.
SHA256 = "sha256"  # hex of the full content, computed by the store (or by reading it back, local)
SHA256_COMPOSITE = "sha256-composite"  # hex of S3's multipart checksum, without its "-N" suffix
# hex of the full content: GCS md5Hash, Azure Content-MD5 (for a blob committed from blocks
# that is the writer's value, which Azure stores unchecked; each block was checked on upload)
MD5 = "md5"
CRC32C = "crc32c"  # base64, as GCS reports it
META_SHA256 = (
    "meta-sha256"  # hex the writer stored as object metadata "sha256": claimed, not computed
)


class StorageError(Exception):
    """A destination failed. The message names the backend, the bucket and the problem, never a secret.

    `transient` is True when the same call may succeed later (connection refused, throttling, 5xx).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class PreflightError(StorageError):
    """A destination cannot be used at all (wrong key, missing bucket, no permission)."""


class IncompleteStreamError(StorageError):
    """The byte stream being written broke or came up short; nothing was left visible."""


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a store says it holds under a key.

    checksums maps the names above to values; listings may carry fewer than stat().
    """

    key: str
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a write stored.

    sha256 is the hex digest of the full content, computed while streaming. checksums is what a
    later stat() of this object is expected to report under the same names.
    """

    uri: str
    key: str
    size: int
    sha256: str
    checksums: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A destination: one bucket (or folder) and a prefix. Keys are relative to the prefix.

    Every method taking a key raises ValueError for an unsafe one: empty, a leading "/", a "." or
    ".." or empty segment, a backslash, NUL or another control character.
    """

    name: str  # "s3", "s3-generic", "gcs", "azure", "local"
    bucket: str

    def uri(self, key: str) -> str:
        """The full URI of a key, e.g. s3://bucket/prefix/key."""
        ...

    def root_uri(self) -> str:
        """The URI every key's URI starts with (s3://bucket/prefix/): identifies the destination."""
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
        """The object's bytes, in chunks. Consume it or aclose() it.

        Raises StorageError (on first iteration) when the object does not exist.
        """
        ...

    async def list(self, prefix: str) -> list[ObjectStat]:
        """Every object whose key starts with prefix."""
        ...

    async def delete(self, key: str) -> None:
        """Remove key (to clean up a bad copy). Absent is fine."""
        ...

    async def preflight(self) -> None:
        """Write, stat and delete `<prefix>/_preflight/<uuid>`. Raises PreflightError with one line."""
        ...

    async def close(self) -> None: ...
