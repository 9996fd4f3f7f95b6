"""Google Cloud Storage, through google-cloud-storage / google-resumable-media on worker threads.

Small objects go up in one request carrying our MD5, which GCS checks. Larger ones use a
resumable upload fed chunk by chunk from the async stream (one chunk held at a time). GCS only
makes the object visible when the last chunk arrives; a broken stream leaves the session
unfinished (and we cancel it). GCS computes MD5 and CRC32C itself; both are compared with ours.

The sha256 metadata is unknown when a resumable upload starts, so it is patched on afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import google.auth
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.oauth2 import service_account
from google.resumable_media import common as media_common
from google.resumable_media.requests import ResumableUpload

from pipeline.storage._common import (
    READ_CHUNK,
    ChunkSource,
    ThreadedBackend,
    hex_of_b64,
    log,
    sha256_md5,
)
from pipeline.storage.base import CRC32C, MD5, META_SHA256, ObjectStat, StorageError, StoredObject
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx.models import Secret

CHUNK_UNIT = 256 * 1024  # resumable chunks must be multiples of this
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
DEFAULT_API = "https://storage.googleapis.com"


@dataclass
class _Clients:
    client: storage.Client
    bucket: storage.Bucket
    session: AuthorizedSession
    api_base: str


def emulator_endpoint(settings: StorageSettings) -> str | None:
    """settings.gcs_endpoint_url, else STORAGE_EMULATOR_HOST; a bare host:port gets http://."""
    value = settings.gcs_endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST")
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


class _Window:
    """The file-like object ResumableUpload reads from: a sliding window over the stream.

    ResumableUpload wants tell/seek/read over the whole object and ends the upload on a short
    read, so the window always holds a full chunk until the stream is over, and keeps the
    unacknowledged tail for when the server persisted less than was sent.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def available(self) -> int:
        return self._base + len(self._buf) - self._pos

    def drop_before(self, offset: int) -> None:
        cut = min(max(0, offset - self._base), len(self._buf))
        del self._buf[:cut]
        self._base += cut

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or not self._base <= offset <= self._base + len(self._buf):
            raise OSError("seek outside the buffered window")
        self._pos = offset
        return offset

    def read(self, n: int = -1) -> bytes:
        start = self._pos - self._base
        end = len(self._buf) if n < 0 else min(len(self._buf), start + n)
        with memoryview(self._buf) as view:
            out = bytes(view[start:end])
        self._pos += len(out)
        return out


class GCSBackend(ThreadedBackend):
    scheme = "gs"

    def __init__(
        self,
        *,
        bucket: str,
        settings: StorageSettings,
        prefix: str | None = None,
        credentials_json: Secret | None = None,
    ) -> None:
        super().__init__(
            name="gcs",
            bucket=bucket,
            prefix=settings.prefix if prefix is None else prefix,
            settings=settings,
        )
        self._credentials_json = credentials_json
        self._endpoint = emulator_endpoint(settings)
        unit = CHUNK_UNIT
        self._chunk_size = max(unit, -(-settings.part_size // unit) * unit)
        self._threshold = max(0, settings.multipart_threshold)
        self._clients_obj: _Clients | None = None
        self._lock = threading.Lock()

    # -- client and errors --------------------------------------------------------------------

    def _credentials(self) -> tuple[Credentials, str | None]:
        if self._endpoint:
            return AnonymousCredentials(), "emulator"
        if self._credentials_json is not None:
            try:
                info = json.loads(self._credentials_json.reveal())
                creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
            except (ValueError, TypeError, KeyError):
                # Never chain: the parser's message may quote the key material.
                raise self.error("credentials are not a valid service-account JSON") from None
            return creds, info.get("project_id")
        try:
            creds, project = google.auth.default(scopes=SCOPES)
        except auth_exceptions.DefaultCredentialsError:
            raise self.error("no credentials found") from None
        return creds, project

    def _clients(self) -> _Clients:
        with self._lock:
            if self._clients_obj is None:
                creds, project = self._credentials()
                options = ClientOptions(api_endpoint=self._endpoint) if self._endpoint else None
                client = storage.Client(project=project, credentials=creds, client_options=options)
                session = AuthorizedSession(creds)
                self._clients_obj = _Clients(
                    client, client.bucket(self.bucket), session, self._endpoint or DEFAULT_API
                )
            return self._clients_obj

    def _wrap(self, exc: BaseException, *, writing: bool = False) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        status: int | None = None
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            status = exc.code
        elif isinstance(exc, media_common.DataCorruption):
            return self.error("the stored object's checksum differs from the bytes sent")
        elif isinstance(exc, media_common.InvalidResponse):
            status = getattr(exc.response, "status_code", None)
        elif isinstance(exc, auth_exceptions.RefreshError):
            return self.error("authentication failed (credentials rejected)")
        elif isinstance(exc, auth_exceptions.TransportError | requests.ConnectionError):
            return self.error("cannot connect to the endpoint", transient=True)
        elif isinstance(exc, requests.Timeout):
            return self.error("the endpoint timed out", transient=True)
        else:
            return self.error(f"unexpected {type(exc).__name__}")
        if status == 404:
            return self.error("bucket does not exist" if writing else "not found")
        if status == 401:
            return self.error("authentication failed (wrong credentials?)")
        if status == 403:
            return self.error("access denied (check the service account's permissions)")
        if status == 400 and isinstance(exc, api_exceptions.BadRequest) and "MD5" in str(exc):
            return self.error("the store rejected a corrupted upload (checksum mismatch)")
        transient = status is not None and (status == 429 or status >= 500)
        return self.error(f"request failed (HTTP {status})", transient=transient)

    _ERRORS = (
        api_exceptions.GoogleAPICallError,
        media_common.InvalidResponse,
        media_common.DataCorruption,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
    )

    async def _io(self, fn: Any, *args: Any, writing: bool = False) -> Any:
        try:
            return await self.run(fn, *args)
        except self._ERRORS as exc:
            raise self._wrap(exc, writing=writing) from None

    # -- writes -------------------------------------------------------------------------------

    def _upload_small(self, full: str, data: bytes, content_type: str, sha: str, md5: bytes) -> Any:
        blob = self._clients().bucket.blob(full)
        blob.metadata = {"sha256": sha}
        blob.md5_hash = base64.b64encode(md5).decode("ascii")  # GCS rejects the upload on mismatch
        blob.upload_from_string(data, content_type=content_type, checksum="crc32c")
        return blob

    async def write_small(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        full = self.full_key(key)
        data = bytes(data)
        sha, md5 = await self.run(sha256_md5, data)
        async with self._sem:
            return await self._put(key, full, data, content_type, sha, md5)

    async def _put(
        self, key: str, full: str, data: bytes, content_type: str, sha: str, md5: bytes
    ) -> StoredObject:
        blob = await self._io(self._upload_small, full, data, content_type, sha, md5, writing=True)
        meta = (blob.metadata or {}).get("sha256")
        try:
            return self._result(key, len(data), sha, md5, blob.md5_hash, blob.crc32c, meta)
        except StorageError:
            await self._discard(full, blob.generation)
            raise

    def _result(
        self,
        key: str,
        size: int,
        sha: str,
        md5: bytes,
        md5_b64: str | None,
        crc32c: str | None,
        meta: str | None,
    ) -> StoredObject:
        ours = md5.hex()
        if md5_b64 is not None and hex_of_b64(md5_b64) != ours:
            raise self.error("the stored object's checksum differs from the bytes sent")
        checksums = {MD5: ours}
        if crc32c:
            checksums[CRC32C] = crc32c
        if meta:
            checksums[META_SHA256] = meta
        return self.stored(key, size, sha, checksums)

    async def write_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        expected_size: int | None = None,
    ) -> StoredObject:
        full = self.full_key(key)
        src = ChunkSource(chunks, label=self.label, expected_size=expected_size, md5=True)
        async with self._sem:
            await src.fill(self._threshold + 1)
            if src.eof:
                data = await src.read(src.buffered)
                return await self._put(key, full, data, content_type, src.sha256, src.md5)
            return await self._resumable(key, full, src, content_type)

    async def _resumable(
        self, key: str, full: str, src: ChunkSource, content_type: str
    ) -> StoredObject:
        clients = await self._io(self._clients)
        url = f"{clients.api_base}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o?uploadType=resumable"
        upload = ResumableUpload(url, self._chunk_size, checksum="crc32c")
        window = _Window()
        await self._io(
            upload.initiate,
            clients.session,
            window,
            {"name": full, "contentType": content_type},
            content_type,
            None,
            False,
            writing=True,
        )
        response = None
        try:
            while not upload.finished:
                while not src.done and window.available() < self._chunk_size:
                    window.feed(await src.read(self._chunk_size - window.available()))
                response = await self._io(upload.transmit_next_chunk, clients.session, writing=True)
                window.drop_before(upload.bytes_uploaded)
        except BaseException:
            if upload.finished:  # committed, then failed its checksum check
                await self._discard(full, None)
            else:
                await self._cancel(clients.session, upload.resumable_url)
            raise
        resource = response.json() if response is not None else {}
        generation = resource.get("generation")
        try:
            stored = self._result(
                key,
                src.size,
                src.sha256,
                src.md5,
                resource.get("md5Hash"),
                resource.get("crc32c"),
                None,
            )
        except StorageError:
            await self._discard(full, generation)
            raise
        meta = await self._patch_sha256(full, generation, src.sha256)
        if meta:
            stored = self.stored(
                key, stored.size, stored.sha256, {**stored.checksums, META_SHA256: meta}
            )
        return stored

    async def _discard(self, full: str, generation: Any) -> None:
        """Remove an object this write committed but found corrupt (only that generation)."""

        def remove() -> None:
            match = int(generation) if generation else None
            self._clients().bucket.delete_blob(full, if_generation_match=match)

        try:
            await self._io(remove)
        except StorageError as exc:
            log.warning("%s: could not remove a corrupt upload: %s", self.label, exc)

    async def _cancel(self, session: AuthorizedSession, url: str | None) -> None:
        if url is None:
            return

        def cancel() -> None:
            session.delete(url, timeout=10)

        try:
            await self.run(cancel)
        except Exception as exc:  # unfinished sessions also expire by themselves after a week
            log.debug(
                "%s: cancelling a resumable upload failed (%s)", self.label, type(exc).__name__
            )

    async def _patch_sha256(self, full: str, generation: Any, sha: str) -> str | None:
        def patch() -> None:
            blob = self._clients().bucket.blob(full)
            blob.metadata = {"sha256": sha}
            # Only the generation we wrote; a newer writer's object keeps its own metadata.
            blob.patch(if_generation_match=int(generation) if generation else None)

        try:
            await self._io(patch)
        except StorageError as exc:
            log.warning("%s: could not attach sha256 metadata: %s", self.label, exc)
            return None
        return sha

    # -- reads --------------------------------------------------------------------------------

    def _get_blob(self, full: str) -> Any:
        return self._clients().bucket.get_blob(full)

    async def stat(self, key: str) -> ObjectStat | None:
        full = self.full_key(key)
        async with self._sem:
            blob = await self._io(self._get_blob, full)
        return None if blob is None else self._stat_of(key, blob)

    def _stat_of(self, key: str, blob: Any) -> ObjectStat:
        checksums: dict[str, str] = {}
        if blob.md5_hash:
            checksums[MD5] = hex_of_b64(blob.md5_hash)
        if blob.crc32c:
            checksums[CRC32C] = blob.crc32c
        meta = (blob.metadata or {}).get("sha256")
        if meta:
            checksums[META_SHA256] = meta
        return ObjectStat(key, int(blob.size or 0), checksums)

    def read_stream(self, key: str) -> AsyncIterator[bytes]:
        return self._read(key, self.full_key(key))

    async def _read(self, key: str, full: str) -> AsyncIterator[bytes]:
        async with self._sem:
            blob = await self._io(self._get_blob, full)
            if blob is None:
                raise self.error(f"object {key!r} does not exist")
            if not blob.size:
                return

            def open_pinned() -> Any:
                # Pinned to the generation we found: an overwrite mid-read cannot mix objects.
                pinned = self._clients().bucket.blob(full, generation=blob.generation)
                return pinned.open("rb", chunk_size=READ_CHUNK)

            reader = await self._io(open_pinned)
            try:
                while chunk := await self._io(reader.read, READ_CHUNK):
                    yield chunk
            finally:
                reader.close()

    async def list(self, prefix: str) -> list[ObjectStat]:
        full_prefix = self.full_prefix(prefix)

        def collect() -> list[ObjectStat]:
            clients = self._clients()
            blobs = clients.client.list_blobs(self.bucket, prefix=full_prefix)
            return [self._stat_of(self.relative(b.name), b) for b in blobs]

        async with self._sem:
            return await self._io(collect)

    async def delete(self, key: str) -> None:
        full = self.full_key(key)

        def remove() -> None:
            try:
                self._clients().bucket.delete_blob(full)
            except api_exceptions.NotFound:
                return

        async with self._sem:
            await self._io(remove)

    async def close(self) -> None:
        await super().close()
        clients, self._clients_obj = self._clients_obj, None
        if clients is not None:
            clients.session.close()
            clients.client.close()
