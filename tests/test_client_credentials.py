"""Custom storage credentials and audio downloads through the Telnyx client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from pipeline.telnyx import errors
from pipeline.telnyx.models import (
    AzureConfiguration,
    GCSConfiguration,
    S3Configuration,
    Secret,
    StorageCredential,
)
from tests.fixtures.telnyx_stub import API_KEY, TelnyxStub

pytestmark = pytest.mark.timeout(30)

S3 = StorageCredential(
    "c-s3",
    "s3",
    S3Configuration("rec-bucket", "us-east-1", "AKIAEXAMPLE", Secret("s3-secret-value")),
)
S3_GENERIC = StorageCredential(
    "c-generic",
    "s3-generic",
    S3Configuration(
        "rec", "auto", "AKIAEXAMPLE", Secret("generic-secret"), endpoint="https://s3.example.com"
    ),
)
GCS = StorageCredential("c-gcs", "gcs", GCSConfiguration("gcs-bucket", Secret('{"type": "sa"}')))
AZURE = StorageCredential(
    "c-azure", "azure", AzureConfiguration("recordings", "myaccount", Secret("azure-key"))
)
ALL_BACKENDS = [S3, S3_GENERIC, GCS, AZURE]


async def test_a_connection_without_a_credential_gives_none(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    assert await make_client().get_storage_credential("no-such-connection") is None
    assert len(telnyx_stub.seen("GET", "/custom_storage_credentials/no-such-connection")) == 1


@pytest.mark.parametrize("credential", ALL_BACKENDS, ids=lambda c: c.backend)
async def test_each_backend_is_parsed_from_a_get(
    telnyx_stub: TelnyxStub, make_client: Any, credential: StorageCredential
) -> None:
    assert credential.connection_id is not None
    telnyx_stub.credentials[credential.connection_id] = credential.to_api()
    got = await make_client().get_storage_credential(credential.connection_id)
    assert got == credential


async def test_connection_id_is_read_beside_data_not_inside_it(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    body = {
        "connection_id": "from-the-body",
        "record_type": "custom_storage_credentials",
        "data": S3.to_api(),
    }

    async def answer(request: web.Request, p: dict[str, str]) -> web.Response:
        return web.json_response(body)

    telnyx_stub.on("GET", "/custom_storage_credentials/{id}", answer)
    got = await make_client().get_storage_credential("asked-for")
    assert got is not None
    assert got.connection_id == "from-the-body"
    assert got.bucket == "rec-bucket"


async def test_a_credential_body_without_connection_id_takes_the_one_asked_for(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    async def answer(request: web.Request, p: dict[str, str]) -> web.Response:
        return web.json_response({"data": GCS.to_api()})

    telnyx_stub.on("GET", "/custom_storage_credentials/{id}", answer)
    got = await make_client().get_storage_credential("asked-for")
    assert got is not None and got.connection_id == "asked-for"


async def test_a_credential_body_of_the_wrong_shape_raises_malformed_response(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    async def answer(request: web.Request, p: dict[str, str]) -> web.Response:
        return web.json_response({"data": {"backend": "ftp", "configuration": {"bucket": "x"}}})

    telnyx_stub.on("GET", "/custom_storage_credentials/{id}", answer)
    with pytest.raises(errors.MalformedResponseError, match="unknown backend"):
        await make_client().get_storage_credential("c1")


async def test_create_posts_the_configuration_and_returns_the_stored_credential(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    got = await make_client().create_storage_credential("c-azure", AZURE)
    assert got == AZURE
    (post,) = telnyx_stub.seen("POST", "/custom_storage_credentials/c-azure")
    assert json.loads(post.body) == {
        "backend": "azure",
        "configuration": {
            "backend": "azure",
            "bucket": "recordings",
            "account_name": "myaccount",
            "account_key": "azure-key",
        },
    }


async def test_create_of_an_existing_credential_raises_conflict_without_retrying(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.credentials["c-s3"] = S3.to_api()
    with pytest.raises(errors.ConflictError):
        await make_client().create_storage_credential("c-s3", S3)
    assert len(telnyx_stub.seen("POST", "/custom_storage_credentials/c-s3")) == 1


async def test_update_puts_the_new_configuration(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    telnyx_stub.credentials["c-s3"] = S3.to_api()
    moved = StorageCredential("c-s3", "gcs", GCSConfiguration("new-bucket", Secret("{}")))
    got = await make_client().update_storage_credential("c-s3", moved)
    assert got == moved
    assert telnyx_stub.credentials["c-s3"]["configuration"]["bucket"] == "new-bucket"


async def test_delete_removes_the_credential_and_a_second_delete_is_fine(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.credentials["c-s3"] = S3.to_api()
    client = make_client()
    await client.delete_storage_credential("c-s3")
    await client.delete_storage_credential("c-s3")
    assert telnyx_stub.credentials == {}
    snapshot = client.stats.snapshot()
    assert snapshot["DELETE /custom_storage_credentials/{connection_id} 204"] == 1
    assert snapshot["DELETE /custom_storage_credentials/{connection_id} 404"] == 1


async def test_credential_secrets_never_show_in_reprs(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.credentials["c-s3"] = S3.to_api()
    got = await make_client().get_storage_credential("c-s3")
    assert "s3-secret-value" not in repr(got) and "s3-secret-value" not in str(got)


# -- audio downloads -----------------------------------------------------------------------------


async def test_download_streams_a_presigned_url_without_the_api_key(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.audio["r1.mp3"] = b"ID3" + bytes(range(256)) * 100
    client = make_client()
    async with client.download(telnyx_stub.audio_url("r1.mp3")) as response:
        body = await response.read()
    assert body == telnyx_stub.audio["r1.mp3"]
    (request,) = [r for r in telnyx_stub.requests if r.path == "/audio/r1.mp3"]
    assert "Authorization" not in request.headers
    assert API_KEY not in json.dumps(request.headers)
    assert client.stats.snapshot() == {}  # downloads are not API calls


async def test_download_can_also_be_awaited_first(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.audio["r1.mp3"] = b"abc"
    download = await make_client().download(telnyx_stub.audio_url("r1.mp3"))
    async with download as response:
        assert await response.read() == b"abc"


async def test_an_expired_link_raises_permission_denied_once_without_the_signature(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    telnyx_stub.audio["r1.mp3"] = b"abc"
    url = telnyx_stub.audio_url("r1.mp3", signature="expired-sig-0123")
    with pytest.raises(errors.PermissionDeniedError) as caught:
        async with make_client().download(url):
            pass
    assert caught.value.code == "AccessDenied"
    assert caught.value.detail == "Request has expired"
    assert "expired-sig-0123" not in str(caught.value)
    assert len([r for r in telnyx_stub.requests if r.path == "/audio/r1.mp3"]) == 1


async def test_a_missing_object_raises_not_found(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    with pytest.raises(errors.NotFoundError):
        async with make_client().download(telnyx_stub.audio_url("nope.mp3")):
            pass


async def test_a_refused_connection_raises_api_connection_error(make_client: Any) -> None:
    from tests.fixtures.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/audio/x.mp3?X-Amz-Signature=secret-sig"
    with pytest.raises(errors.APIConnectionError) as caught:
        async with make_client().download(url):
            pass
    assert "secret-sig" not in str(caught.value)
