"""Azure Blob Storage, through the native asyncio client (azure.storage.blob.aio).

Small objects go up in one Put Blob carrying our whole-object MD5, which Azure checks. Larger
ones are staged block by block (one block in memory, each with a transactional MD5 Azure
checks) and become visible only when the block list is committed; a broken stream commits
nothing. Azure computes no whole-blob MD5 for block uploads, so we set Content-MD5 at commit.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobType, ContentSettings
from azure.storage.blob.aio import ContainerClient, ExponentialRetry

from pipeline.storage._common import READ_CHUNK, BaseBackend, ChunkSource, log, sha256_md5
from pipeline.storage.base import MD5, META_SHA256, ObjectStat, StorageError, StoredObject
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx.models import Secret

ENDPOINT_ENV = "AZURE_STORAGE_BLOB_ENDPOINT"
MAX_BLOCK = 4000 * 1024 * 1024
SINGLE_PUT = 64 * 1024 * 1024  # up to this, upload_blob sends one Put Blob

_PROBLEMS = {
    "ContainerNotFound": "container does not exist",
    "AuthenticationFailed": "authentication failed (wrong account key?)",
    "InvalidAuthenticationInfo": "authentication failed (wrong account key?)",
    "NoAuthenticationInformation": "no credentials given",
    "AuthorizationFailure": "permission denied",
    "AuthorizationPermissionMismatch": "permission denied",
    "InsufficientAccountPermissions": "permission denied",
    "AccountIsDisabled": "the storage account is disabled",
    "ContainerBeingDeleted": "container is being deleted",
    "ContainerDisabled": "container is disabled",
    "Md5Mismatch": "the store rejected a corrupted upload (checksum mismatch)",
    "InvalidMd5": "the store rejected a corrupted upload (checksum mismatch)",
    "InvalidBlockList": "the block list was not accepted",
    "InvalidResourceName": "container name is not valid",
    "OutOfRangeInput": "container name is not valid",
}


class AzureBackend(BaseBackend):
    scheme = "az"

    def __init__(
        self,
        *,
        container: str,
        settings: StorageSettings,
        prefix: str | None = None,
        account_name: str | None,
        account_key: Secret | None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            name="azure",
            bucket=container,
            prefix=settings.prefix if prefix is None else prefix,
            settings=settings,
        )
        self.account_name = account_name or ""
        self._account_key = account_key
        base = endpoint or settings.azure_blob_endpoint or os.environ.get(ENDPOINT_ENV)
        if base:
            self._endpoint = base.replace("{account_name}", self.account_name).rstrip("/")
        else:
            self._endpoint = f"https://{self.account_name}.blob.core.windows.net"
        self._block_size = min(MAX_BLOCK, max(64 * 1024, settings.part_size))
        self._threshold = max(0, settings.multipart_threshold)
        self._container_obj: ContainerClient | None = None

    @property
    def label(self) -> str:
        return f"azure container {self.bucket!r} (account {self.account_name!r})"

    def _container(self) -> ContainerClient:
        if self._container_obj is None:
            credential = None
            if self._account_key is not None:
                credential = AzureNamedKeyCredential(self.account_name, self._account_key.reveal())
            self._container_obj = ContainerClient(
                self._endpoint,
                self.bucket,
                credential=credential,
                # The SDK default waits 15 s before its first retry.
                retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3),
                max_single_get_size=READ_CHUNK * 4,
                max_chunk_get_size=READ_CHUNK * 4,
                max_single_put_size=SINGLE_PUT,
            )
        return self._container_obj

    def _wrap(self, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ClientAuthenticationError) and getattr(exc, "response", None) is None:
            # Raised before sending: the key could not sign (AzureSigningError, e.g. not base64).
            return self.error("account key is not valid (cannot sign requests)")
        if isinstance(exc, HttpResponseError):
            code = str(getattr(exc, "error_code", None) or "")
            status = getattr(exc, "status_code", None)
            if code in _PROBLEMS:
                return self.error(_PROBLEMS[code])
            if status == 403:
                return self.error(_PROBLEMS["AuthenticationFailed"])
            transient = status is not None and (status in (408, 429) or status >= 500)
            return self.error(
                f"request failed ({code or 'no code'}, HTTP {status})", transient=transient
            )
        if isinstance(exc, ServiceRequestError):
            return self.error("cannot connect to the endpoint", transient=True)
        if isinstance(exc, ServiceResponseError):
            return self.error("the connection broke during a request", transient=True)
        if isinstance(exc, AzureError):
            return self.error(f"client error ({type(exc).__name__})")
        if isinstance(exc, ValueError):
            return self.error(f"invalid configuration ({type(exc).__name__})")
        return self.error(f"unexpected {type(exc).__name__}")

    async def _io(self, coro: Any) -> Any:
        try:
            return await coro
        except (AzureError, ValueError) as exc:
            raise self._wrap(exc) from None

    # -- writes -------------------------------------------------------------------------------

    async def write_small(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        full = self.full_key(key)
        data = bytes(data)
        sha, md5 = await asyncio.to_thread(sha256_md5, data)
        async with self._sem:
            return await self._put(key, full, data, content_type, sha, md5)

    async def _put(
        self, key: str, full: str, data: bytes, content_type: str, sha: str, md5: bytes
    ) -> StoredObject:
        blob = self._container().get_blob_client(full)
        resp = await self._io(
            blob.upload_blob(
                data,
                blob_type=BlobType.BLOCKBLOB,
                overwrite=True,
                content_settings=ContentSettings(
                    content_type=content_type, content_md5=bytearray(md5)
                ),
                metadata={"sha256": sha},
                validate_content=True,
                max_concurrency=1,
            )
        )
        # One Put Blob: Azure answers with the MD5 it computed over what it stored.
        echoed = resp.get("content_md5") if len(data) <= SINGLE_PUT else None
        if echoed and bytes(echoed) != md5:
            await self._discard(blob)
            raise self.error("the stored object's checksum differs from the bytes sent")
        return self.stored(key, len(data), sha, {MD5: md5.hex(), META_SHA256: sha})

    async def _discard(self, blob: Any) -> None:
        try:
            await self._io(blob.delete_blob())
        except StorageError as exc:
            log.warning("%s: could not remove a corrupt upload: %s", self.label, exc)

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
            blob = self._container().get_blob_client(full)
            # Same-length ids, unique per upload: concurrent writers of one key never mix blocks.
            upload = uuid.uuid4().hex
            ids: list[str] = []
            while not src.done:
                block = await src.read(self._block_size)
                if not block:
                    break
                block_id = base64.b64encode(f"{upload}{len(ids):08d}".encode()).decode("ascii")
                await self._io(
                    blob.stage_block(block_id, block, length=len(block), validate_content=True)
                )
                ids.append(block_id)
            # Uncommitted blocks of an abandoned upload are invisible and expire after 7 days.
            md5 = src.md5
            await self._io(
                blob.commit_block_list(
                    ids,
                    content_settings=ContentSettings(
                        content_type=content_type, content_md5=bytearray(md5)
                    ),
                    metadata={"sha256": src.sha256},
                )
            )
        return self.stored(key, src.size, src.sha256, {MD5: md5.hex(), META_SHA256: src.sha256})

    # -- reads --------------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectStat | None:
        full = self.full_key(key)
        async with self._sem:
            try:
                props = await self._container().get_blob_client(full).get_blob_properties()
            except HttpResponseError as exc:
                if _not_found(exc):
                    return None
                raise self._wrap(exc) from None
            except (AzureError, ValueError) as exc:
                raise self._wrap(exc) from None
        return _stat_of(key, props)

    def read_stream(self, key: str) -> AsyncIterator[bytes]:
        return self._read(key, self.full_key(key))

    async def _read(self, key: str, full: str) -> AsyncIterator[bytes]:
        async with self._sem:
            try:
                # The SDK pins later range requests to the first response's etag.
                downloader = await self._container().get_blob_client(full).download_blob()
            except HttpResponseError as exc:
                if _not_found(exc):
                    raise self.error(f"object {key!r} does not exist") from None
                raise self._wrap(exc) from None
            except (AzureError, ValueError) as exc:
                raise self._wrap(exc) from None
            chunks = downloader.chunks()
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except (AzureError, ValueError) as exc:
                    raise self._wrap(exc) from None
                yield chunk

    async def list(self, prefix: str) -> list[ObjectStat]:
        full_prefix = self.full_prefix(prefix)
        out: list[ObjectStat] = []
        async with self._sem:
            try:
                async for props in self._container().list_blobs(
                    name_starts_with=full_prefix or None, include=["metadata"]
                ):
                    out.append(_stat_of(self.relative(props.name), props))
            except (AzureError, ValueError) as exc:
                raise self._wrap(exc) from None
        return out

    async def delete(self, key: str) -> None:
        full = self.full_key(key)
        async with self._sem:
            try:
                await self._container().get_blob_client(full).delete_blob()
            except HttpResponseError as exc:
                if _not_found(exc):
                    return
                raise self._wrap(exc) from None
            except (AzureError, ValueError) as exc:
                raise self._wrap(exc) from None

    async def close(self) -> None:
        container, self._container_obj = self._container_obj, None
        if container is not None:
            await asyncio.shield(container.close())


def _stat_of(key: str, props: Any) -> ObjectStat:
    checksums: dict[str, str] = {}
    md5 = props.content_settings.content_md5 if props.content_settings else None
    if md5:
        checksums[MD5] = bytes(md5).hex()
    meta = (props.metadata or {}).get("sha256")
    if meta:
        checksums[META_SHA256] = meta
    return ObjectStat(key, int(props.size or 0), checksums)


def _not_found(exc: HttpResponseError) -> bool:
    """The blob is absent (HEAD answers a bare 404; a missing container says so)."""
    code = getattr(exc, "error_code", None)
    return getattr(exc, "status_code", None) == 404 and code in (None, "BlobNotFound")
