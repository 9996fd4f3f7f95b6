"""S3 specifics (moto): wrong keys, aborted multipart uploads, composite checksums."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from pipeline.storage.base import (
    META_SHA256,
    SHA256,
    SHA256_COMPOSITE,
    IncompleteStreamError,
    PreflightError,
    StorageError,
)
from pipeline.storage.s3 import S3Backend, _checksums
from pipeline.storage.select import backend_for_credential, backend_for_url
from pipeline.storage.settings import MiB, StorageSettings
from pipeline.telnyx.models import S3Configuration, Secret, StorageCredential
from tests.fixtures.emulators import Emulators, S3AuthEndpoint, s3_admin_client, unique_bucket
from tests.test_storage_contract import Producer


def auth_backend(
    kind: str, endpoint: S3AuthEndpoint, bucket: str, key_id: str, secret: str
) -> S3Backend:
    settings = StorageSettings(s3_endpoint_url=endpoint.url)
    cred = StorageCredential(
        connection_id="c1",
        backend=kind,
        configuration=S3Configuration(
            bucket=bucket,
            region="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=Secret(secret),
            endpoint=endpoint.url if kind == "s3-generic" else None,
        ),
    )
    backend = backend_for_credential(cred, settings)
    assert isinstance(backend, S3Backend)
    return backend


@pytest.fixture
def auth_bucket(s3_auth_endpoint: S3AuthEndpoint) -> str:
    import boto3

    name = unique_bucket()
    boto3.client(
        "s3",
        endpoint_url=s3_auth_endpoint.url,
        region_name="us-east-1",
        aws_access_key_id=s3_auth_endpoint.access_key_id,
        aws_secret_access_key=s3_auth_endpoint.secret_access_key,
    ).create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("kind", ["s3", "s3-generic"])
async def test_preflight_passes_with_the_right_key(
    s3_auth_endpoint: S3AuthEndpoint, auth_bucket: str, kind: str
) -> None:
    ep = s3_auth_endpoint
    backend = auth_backend(kind, ep, auth_bucket, ep.access_key_id, ep.secret_access_key)
    try:
        await backend.preflight()
    finally:
        await backend.close()


@pytest.mark.parametrize("kind", ["s3", "s3-generic"])
async def test_preflight_names_a_wrong_access_key_in_one_line(
    s3_auth_endpoint: S3AuthEndpoint, auth_bucket: str, kind: str
) -> None:
    backend = auth_backend(
        kind, s3_auth_endpoint, auth_bucket, "AKIAWRONGWRONGWRONG1", "s3cr3t-value"
    )
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    await backend.close()
    assert (
        str(caught.value)
        == f"{kind} bucket '{auth_bucket}': access key id is not valid (wrong access key?)"
    )


async def test_preflight_names_a_wrong_secret_key_in_one_line(
    s3_auth_endpoint: S3AuthEndpoint, auth_bucket: str
) -> None:
    ep = s3_auth_endpoint
    backend = auth_backend("s3", ep, auth_bucket, ep.access_key_id, "not-the-secret-at-all")
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    await backend.close()
    message = str(caught.value)
    assert message == f"s3 bucket '{auth_bucket}': signature does not match (wrong secret key?)"
    assert "not-the-secret" not in message and "not-the-secret" not in repr(backend)


async def test_a_broken_multipart_upload_is_aborted(emulators: Emulators) -> None:
    backend = emulators.backend("s3")
    with pytest.raises(IncompleteStreamError):
        await backend.write_stream(
            "big.mp3", aiter(Producer(20 * MiB, fail_after=12 * MiB)), content_type="audio/mpeg"
        )
    pending = emulators.s3_client().list_multipart_uploads(Bucket=backend.bucket)
    assert pending.get("Uploads", []) == []


async def test_without_the_metadata_copy_the_composite_checksum_still_verifies(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = emulators.backend("s3")
    assert isinstance(backend, S3Backend)
    real_call = backend._call

    async def no_copy(method: str, /, **kwargs: Any) -> Any:
        if method == "copy_object":
            raise backend.error("access denied (check the key's permissions)")
        return await real_call(method, **kwargs)

    monkeypatch.setattr(backend, "_call", no_copy)
    size = 11 * MiB
    stored = await backend.write_stream("m.wav", aiter(Producer(size)), content_type="audio/wav")
    stat = await backend.stat("m.wav")
    assert stat is not None
    assert set(stored.checksums) == {SHA256_COMPOSITE}
    assert stat.checksums[SHA256_COMPOSITE] == stored.checksums[SHA256_COMPOSITE]
    # parts of 5 MiB: the composite is the sha256 of the three part digests
    data = Producer(size).rng.randbytes(size)
    parts = [data[i : i + 5 * MiB] for i in range(0, size, 5 * MiB)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).hexdigest()
    assert stored.checksums[SHA256_COMPOSITE] == composite


def b64(hex_value: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_value)).decode()


H = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ({"ChecksumSHA256": b64(H), "ETag": '"abc"'}, {SHA256: H}),
        ({"ChecksumSHA256": b64(H) + "-3", "ETag": '"abc-3"'}, {SHA256_COMPOSITE: H}),
        ({"ChecksumSHA256": b64(H), "ETag": '"abc-3"'}, {SHA256_COMPOSITE: H}),  # moto: no "-N"
        (
            {"ChecksumSHA256": b64(H), "ChecksumType": "COMPOSITE", "ETag": '"a"'},
            {SHA256_COMPOSITE: H},
        ),
        ({"ChecksumSHA256": b64(H), "ChecksumType": "FULL_OBJECT", "ETag": '"a-2"'}, {SHA256: H}),
        ({"ETag": '"abc"', "Metadata": {"sha256": H}}, {META_SHA256: H}),
    ],
    ids=[
        "single",
        "real-composite",
        "moto-composite",
        "typed-composite",
        "typed-full",
        "meta-only",
    ],
)
def test_head_checksums_are_normalised_to_hex_without_the_part_count(
    head: dict[str, Any], expected: dict[str, str]
) -> None:
    assert _checksums(head) == expected


async def test_an_s3_url_takes_its_endpoint_and_keys_from_the_aws_environment(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = unique_bucket()
    s3_admin_client(emulators.s3_url).create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulators.s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    backend = backend_for_url(f"s3://{bucket}/archive/x", StorageSettings())
    try:
        await backend.preflight()
        stored = await backend.write_small("k.json", b"{}", content_type="application/json")
    finally:
        await backend.close()
    assert stored.uri == f"s3://{bucket}/archive/x/k.json"
    listed = emulators.s3_client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["archive/x/k.json"]


async def test_an_unreachable_endpoint_is_a_transient_one_line_error() -> None:
    from tests.fixtures.servers import free_port

    settings = StorageSettings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    backend = S3Backend(
        bucket="some-bucket", settings=settings, access_key_id="k", secret_access_key=Secret("s")
    )
    with pytest.raises(StorageError) as caught:
        await backend.stat("a.mp3")
    await backend.close()
    assert str(caught.value) == "s3 bucket 'some-bucket': cannot connect to the endpoint"
    assert caught.value.transient


async def test_a_multipart_upload_whose_server_sha256_differs_is_removed(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = emulators.backend("s3")
    monkeypatch.setattr("pipeline.storage.s3.hex_of_b64", lambda value: "00" * 32)
    with pytest.raises(StorageError, match="checksum differs from the bytes sent"):
        await backend.write_stream("bad.wav", aiter(Producer(11 * MiB)), content_type="audio/wav")
    monkeypatch.undo()
    assert await backend.stat("bad.wav") is None
