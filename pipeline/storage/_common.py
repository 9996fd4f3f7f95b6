"""What every backend shares: key safety, stream accounting, bounded concurrency, preflight."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from pipeline.storage.base import (
    IncompleteStreamError,
    ObjectStat,
    PreflightError,
    StorageError,
    StoredObject,
)
from pipeline.storage.settings import StorageSettings

log = logging.getLogger("pipeline.storage")

T = TypeVar("T")

MAX_KEY_BYTES = 1024  # S3's limit; the strictest of the stores
READ_CHUNK = 1024 * 1024
PREFLIGHT_BODY = b"telnyx-archiver preflight probe\n"


def _check_text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} contains a control character")
    if "\\" in value:
        raise ValueError(f"{what} contains a backslash")
    if value.startswith("/"):
        raise ValueError(f"{what} must not start with '/'")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    return value


def check_key(key: object) -> str:
    """A key relative to the backend's prefix, or ValueError. Same rules on every store."""
    text = _check_text("key", key)
    if not text:
        raise ValueError("key is empty")
    for segment in text.split("/"):
        if not segment:
            raise ValueError("key has an empty segment")
        if segment in (".", ".."):
            raise ValueError(f"key has a {segment!r} segment")
    return text


def check_list_prefix(prefix: object) -> str:
    """A listing prefix: like a key, but may be empty or end with '/'."""
    text = _check_text("prefix", prefix)
    if text:
        check_key(text[:-1] if text.endswith("/") else text)
    return text


def normalize_prefix(prefix: str) -> str:
    """The backend's own prefix: slashes trimmed at both ends, then a key's rules."""
    text = prefix.strip("/")
    return check_key(text) if text else ""


def hex_of_b64(value: str) -> str:
    return base64.b64decode(value).hex()


def b64_of_hex(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def sha256_md5(data: bytes) -> tuple[str, bytes]:
    """Hex SHA-256 and raw MD5 of a whole small object (run it on a worker thread)."""
    return hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).digest()


def stream_broke(label: str, size: int, exc: BaseException) -> IncompleteStreamError:
    # Only the type: a download error's text may hold a signed URL.
    return IncompleteStreamError(
        f"{label}: the input stream broke after {size} bytes ({type(exc).__name__})"
    )


class ChunkSource:
    """Pulls a caller's async byte stream, counting and hashing it, and hands it out in parts.

    It holds at most what was asked for plus one incoming chunk. A stream that raises, or whose
    byte count differs from expected_size, raises IncompleteStreamError before its end is
    reported, so a backend never commits an incomplete object.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        label: str,
        expected_size: int | None,
        md5: bool = False,
    ) -> None:
        self._it = aiter(chunks)
        self._label = label
        self._expected = expected_size
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._buf = bytearray()
        self.size = 0
        self.eof = False

    async def _pull(self) -> None:
        try:
            chunk = await anext(self._it)
        except StopAsyncIteration:
            if self._expected is not None and self.size != self._expected:
                raise IncompleteStreamError(
                    f"{self._label}: the input stream ended after {self.size} of "
                    f"{self._expected} expected bytes"
                ) from None
            self.eof = True
            return
        except Exception as exc:
            raise stream_broke(self._label, self.size, exc) from exc
        self.size += len(chunk)
        if self._expected is not None and self.size > self._expected:
            raise IncompleteStreamError(
                f"{self._label}: the input stream gave more than the {self._expected} expected bytes"
            )
        self._sha256.update(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)
        self._buf += chunk

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def done(self) -> bool:
        """The stream ended and everything was handed out."""
        return self.eof and not self._buf

    async def fill(self, n: int) -> None:
        """Buffer at least n bytes, or everything up to the end of the stream."""
        while not self.eof and len(self._buf) < n:
            await self._pull()

    async def read(self, n: int) -> bytes:
        """The next n bytes; fewer only at the end of the stream (then the count was checked)."""
        await self.fill(n)
        with memoryview(self._buf) as view:
            out = bytes(view[:n])
        del self._buf[:n]
        return out

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> bytes:
        assert self._md5 is not None
        return self._md5.digest()


class BaseBackend:
    """Label, prefix, URIs, the concurrency bound and preflight; subclasses do the I/O."""

    name: str
    bucket: str
    prefix: str
    scheme: str = ""

    def __init__(self, *, name: str, bucket: str, prefix: str, settings: StorageSettings) -> None:
        self.name = name
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.settings = settings
        self._sem = asyncio.Semaphore(max(1, settings.max_concurrency))

    # -- naming -------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """How messages name this destination: backend and bucket, never a secret."""
        return f"{self.name} bucket {self.bucket!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def full_key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def full_prefix(self, prefix: str) -> str:
        prefix = check_list_prefix(prefix)
        if not self.prefix:
            return prefix
        return f"{self.prefix}/{prefix}"

    def relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def uri(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{self.full_key(key)}"

    def root_uri(self) -> str:
        """The URI every key's URI starts with: identifies the destination."""
        return f"{self.scheme}://{self.bucket}/" + (f"{self.prefix}/" if self.prefix else "")

    def error(self, problem: str, *, transient: bool = False) -> StorageError:
        return StorageError(f"{self.label}: {problem}", transient=transient)

    def stored(self, key: str, size: int, sha256: str, checksums: dict[str, str]) -> StoredObject:
        return StoredObject(self.uri(key), key, size, sha256, checksums)

    # -- shared behaviour ---------------------------------------------------------------------

    async def preflight(self) -> None:
        key = f"_preflight/{uuid.uuid4().hex}"
        try:
            await self.write_small(key, PREFLIGHT_BODY, content_type="text/plain")
            stat = await self.stat(key)
            if stat is None or stat.size != len(PREFLIGHT_BODY):
                raise PreflightError(f"{self.label}: a probe object written was not found again")
            await self.delete(key)
        except PreflightError:
            raise
        except StorageError as exc:
            raise PreflightError(str(exc), transient=exc.transient) from None
        except Exception as exc:  # a bug or an SDK surprise: name the type, never the text
            raise PreflightError(f"{self.label}: unexpected {type(exc).__name__}") from None

    async def write_small(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        raise NotImplementedError

    async def stat(self, key: str) -> ObjectStat | None:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError


class ThreadedBackend(BaseBackend):
    """For synchronous SDKs: every blocking call runs on the backend's own bounded thread pool."""

    def __init__(self, *, name: str, bucket: str, prefix: str, settings: StorageSettings) -> None:
        super().__init__(name=name, bucket=bucket, prefix=prefix, settings=settings)
        # One thread per permitted operation: an operation makes one blocking call at a time.
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, settings.max_concurrency), thread_name_prefix=f"storage-{name}"
        )

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
