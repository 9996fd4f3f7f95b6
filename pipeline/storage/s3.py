"""Amazon S3 and S3-compatible stores (`s3`, `s3-generic`), through boto3 on worker threads.

Objects up to multipart_threshold go up in one PutObject; larger ones as a multipart upload,
one part buffered at a time, aborted on any failure so nothing partial becomes visible. Every
request carries our SHA-256, so S3 rejects a corrupted body (BadDigest).

A multipart object is then copied onto itself (server side) to attach the sha256 metadata, which
is unknown when the upload starts; the copy also makes S3 compute a full-object SHA-256.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from pipeline.storage._common import (
    READ_CHUNK,
    ChunkSource,
    ThreadedBackend,
    b64_of_hex,
    hex_of_b64,
    log,
)
from pipeline.storage.base import (
    META_SHA256,
    SHA256,
    SHA256_COMPOSITE,
    ObjectStat,
    StorageError,
    StoredObject,
)
from pipeline.storage.settings import MiB, StorageSettings
from pipeline.telnyx.models import Secret

MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_COPY = 5 * 1024 * MiB  # CopyObject's limit

_PROBLEMS = {
    "NoSuchBucket": "bucket does not exist",
    "InvalidAccessKeyId": "access key id is not valid (wrong access key?)",
    "SignatureDoesNotMatch": "signature does not match (wrong secret key?)",
    "InvalidToken": "security token is not valid",
    "ExpiredToken": "security token has expired",
    "AccessDenied": "access denied (check the key's permissions)",
    "AllAccessDisabled": "access to the bucket is disabled",
    "AuthorizationHeaderMalformed": "bucket is in another region (check the region)",
    "PermanentRedirect": "bucket is in another region (check the region)",
    "InvalidBucketName": "bucket name is not valid",
    "BadDigest": "the store rejected a corrupted upload (checksum mismatch)",
    "XAmzContentSHA256Mismatch": "the store rejected a corrupted upload (checksum mismatch)",
    "InvalidDigest": "the store rejected a corrupted upload (checksum mismatch)",
    "NoSuchUpload": "the multipart upload was lost",
    "EntityTooLarge": "object is too large",
    "QuotaExceeded": "storage quota exceeded",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
}


def _sha256_b64(data: bytes) -> tuple[str, bytes]:
    digest = hashlib.sha256(data).digest()
    return base64.b64encode(digest).decode("ascii"), digest


class S3Backend(ThreadedBackend):
    scheme = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        settings: StorageSettings,
        prefix: str | None = None,
        name: str = "s3",
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: Secret | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        super().__init__(
            name=name,
            bucket=bucket,
            prefix=settings.prefix if prefix is None else prefix,
            settings=settings,
        )
        self._region = region
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self._endpoint_url = endpoint_url
        self._part_size = max(MIN_PART, settings.part_size)
        self._threshold = max(0, settings.multipart_threshold)
        self._client_obj: Any = None
        self._client_lock = threading.Lock()

    # -- client and errors --------------------------------------------------------------------

    def _client(self) -> Any:
        """Built on first use, on a worker thread: creating a boto3 client takes ~50 ms."""
        with self._client_lock:
            if self._client_obj is None:
                session = boto3.session.Session(
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret.reveal() if self._secret else None,
                    region_name=self._region,
                )
                config = Config(
                    max_pool_connections=max(10, self.settings.max_concurrency),
                    # We send SHA-256 ourselves; botocore's default CRC32 on every request
                    # breaks some S3-compatible stores, and moto reports composite checksums
                    # without "-N", which botocore's response validation would misread.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=10,
                    read_timeout=120,
                    s3={"addressing_style": "path"} if self.name == "s3-generic" else None,
                )
                self._client_obj = session.client(
                    "s3", endpoint_url=self._endpoint_url, config=config
                )
            return self._client_obj

    def _wrap(self, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _PROBLEMS:
                return self.error(_PROBLEMS[code])
            transient = code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
            if status == 403:
                return self.error(_PROBLEMS["AccessDenied"])
            if status == 301:
                return self.error(_PROBLEMS["PermanentRedirect"])
            return self.error(
                f"request failed ({code or 'no code'}, HTTP {status})", transient=transient
            )
        if isinstance(exc, NoCredentialsError):
            return self.error("no credentials found")
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | BotoConnectionError):
            return self.error("cannot connect to the endpoint", transient=True)
        if isinstance(exc, ReadTimeoutError):
            return self.error("the endpoint timed out", transient=True)
        if isinstance(exc, ParamValidationError):
            return self.error("invalid request parameters")
        if isinstance(exc, BotoCoreError):
            return self.error(f"client error ({type(exc).__name__})")
        if isinstance(exc, ValueError):  # e.g. a malformed endpoint URL
            return self.error(f"invalid configuration ({type(exc).__name__})")
        return self.error(f"unexpected {type(exc).__name__}")

    async def _call(self, method: str, /, **kwargs: Any) -> Any:
        def call() -> Any:
            return getattr(self._client(), method)(**kwargs)

        try:
            return await self.run(call)
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise self._wrap(exc) from None

    # -- writes -------------------------------------------------------------------------------

    async def write_small(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        full = self.full_key(key)
        data = bytes(data)
        sha = (await self.run(hashlib.sha256, data)).hexdigest()
        async with self._sem:
            return await self._put(key, full, data, content_type, sha)

    async def _put(
        self, key: str, full: str, data: bytes, content_type: str, sha: str
    ) -> StoredObject:
        b64 = b64_of_hex(sha)
        resp = await self._call(
            "put_object",
            Bucket=self.bucket,
            Key=full,
            Body=data,
            ContentType=content_type,
            Metadata={"sha256": sha},
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64,
        )
        echoed = resp.get("ChecksumSHA256")
        if echoed and echoed != b64:
            await self._discard(full)
            raise self.error("the stored object's checksum differs from the bytes sent")
        return self.stored(key, len(data), sha, {SHA256: sha, META_SHA256: sha})

    async def write_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        expected_size: int | None = None,
    ) -> StoredObject:
        full = self.full_key(key)
        src = ChunkSource(chunks, label=self.label, expected_size=expected_size)
        async with self._sem:
            await src.fill(self._threshold + 1)
            if src.eof:
                data = await src.read(src.buffered)
                return await self._put(key, full, data, content_type, src.sha256)
            return await self._multipart(key, full, src, content_type)

    async def _multipart(
        self, key: str, full: str, src: ChunkSource, content_type: str
    ) -> StoredObject:
        created = await self._call(
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=full,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
        )
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        digests: list[bytes] = []
        try:
            while not src.done:
                body = await src.read(self._part_size)
                if not body:
                    break
                b64, digest = await self.run(_sha256_b64, body)
                resp = await self._call(
                    "upload_part",
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=len(parts) + 1,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=b64,
                )
                del body
                parts.append(
                    {"PartNumber": len(parts) + 1, "ETag": resp["ETag"], "ChecksumSHA256": b64}
                )
                digests.append(digest)
            done = await self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await asyncio.shield(self._abort(full, upload_id))
            raise
        composite = hashlib.sha256(b"".join(digests)).hexdigest()
        sha = src.sha256
        checksums = {SHA256_COMPOSITE: composite}
        if src.size <= MAX_COPY:
            checksums = await self._attach_sha256(
                full, done.get("ETag"), sha, composite, content_type
            )
        return self.stored(key, src.size, sha, checksums)

    async def _abort(self, full: str, upload_id: str) -> None:
        try:
            await self._call(
                "abort_multipart_upload", Bucket=self.bucket, Key=full, UploadId=upload_id
            )
        except StorageError as exc:
            log.warning("could not abort a multipart upload: %s", exc)

    async def _attach_sha256(
        self, full: str, etag: str | None, sha: str, composite: str, content_type: str
    ) -> dict[str, str]:
        """Copy the object onto itself with our metadata; S3 computes a full SHA-256 meanwhile."""
        extra = {"CopySourceIfMatch": etag} if etag else {}
        try:
            resp = await self._call(
                "copy_object",
                Bucket=self.bucket,
                Key=full,
                CopySource={"Bucket": self.bucket, "Key": full},
                MetadataDirective="REPLACE",
                Metadata={"sha256": sha},
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                **extra,
            )
        except StorageError as exc:
            # The object is complete; only the metadata is missing. A verifier still has the
            # composite checksum, and a rerun reads the object back instead.
            log.warning("%s: could not attach sha256 metadata: %s", self.label, exc)
            return {SHA256_COMPOSITE: composite}
        got = (resp.get("CopyObjectResult") or {}).get("ChecksumSHA256")
        if got is None:
            return {META_SHA256: sha}
        value = hex_of_b64(got.split("-")[0])
        if value == sha:
            return {SHA256: sha, META_SHA256: sha}
        if value == composite:
            return {SHA256_COMPOSITE: composite, META_SHA256: sha}
        await self._discard(full)
        raise self.error("the stored object's checksum differs from the bytes sent")

    async def _discard(self, full: str) -> None:
        """Remove an object this write stored but found corrupt."""
        try:
            await self._call("delete_object", Bucket=self.bucket, Key=full)
        except StorageError as exc:
            log.warning("%s: could not remove a corrupt upload: %s", self.label, exc)

    # -- reads --------------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectStat | None:
        full = self.full_key(key)

        def head() -> dict[str, Any] | None:
            try:
                return self._client().head_object(
                    Bucket=self.bucket, Key=full, ChecksumMode="ENABLED"
                )
            except ClientError as exc:
                # HEAD has no error body: 404 is all S3 says, for a missing key (or bucket).
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise

        async with self._sem:
            try:
                found = await self.run(head)
            except (BotoCoreError, ClientError, ValueError) as exc:
                raise self._wrap(exc) from None
        if found is None:
            return None
        return ObjectStat(key, int(found["ContentLength"]), _checksums(found))

    def read_stream(self, key: str) -> AsyncIterator[bytes]:
        return self._read(key, self.full_key(key))

    async def _read(self, key: str, full: str) -> AsyncIterator[bytes]:
        async with self._sem:
            try:
                resp = await self.run(
                    lambda: self._client().get_object(Bucket=self.bucket, Key=full)
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                    raise self.error(f"object {key!r} does not exist") from None
                raise self._wrap(exc) from None
            except (BotoCoreError, ValueError) as exc:
                raise self._wrap(exc) from None
            body = resp["Body"]
            try:
                while True:
                    try:
                        chunk = await self.run(body.read, READ_CHUNK)
                    except (BotoCoreError, OSError) as exc:
                        raise self._wrap(exc) from None
                    if not chunk:
                        return
                    yield chunk
            finally:
                body.close()

    async def list(self, prefix: str) -> list[ObjectStat]:
        full_prefix = self.full_prefix(prefix)

        def collect() -> list[ObjectStat]:
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=full_prefix)
            )
            return [
                ObjectStat(self.relative(obj["Key"]), int(obj["Size"]), {})
                for page in pages
                for obj in page.get("Contents", ())
            ]

        async with self._sem:
            try:
                return await self.run(collect)
            except (BotoCoreError, ClientError, ValueError) as exc:
                raise self._wrap(exc) from None

    async def delete(self, key: str) -> None:
        full = self.full_key(key)
        async with self._sem:
            await self._call("delete_object", Bucket=self.bucket, Key=full)

    async def close(self) -> None:
        await super().close()
        client, self._client_obj = self._client_obj, None
        if client is not None:
            client.close()


def _checksums(head: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    value = head.get("ChecksumSHA256")
    if value:
        kind = head.get("ChecksumType")
        body, _, count = value.partition("-")
        multipart = "-" in str(head.get("ETag", ""))
        composite = bool(count) or kind == "COMPOSITE" or (kind is None and multipart)
        out[SHA256_COMPOSITE if composite else SHA256] = hex_of_b64(body)
    meta = (head.get("Metadata") or {}).get("sha256")
    if meta:
        out[META_SHA256] = meta
    return out
