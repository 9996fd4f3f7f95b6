"""Azure specifics (Azurite): wrong keys, block uploads, the connection-string environment."""

from __future__ import annotations

import base64

import pytest

from pipeline.storage.azure import AzureBackend
from pipeline.storage.base import MD5, PreflightError
from pipeline.storage.select import backend_for_url
from pipeline.storage.settings import MiB, StorageSettings
from pipeline.telnyx.models import Secret
from tests.fixtures.emulators import AZURITE_ACCOUNT, AzuriteEndpoint, Emulators, unique_bucket
from tests.test_storage_contract import Producer


def backend_with_key(endpoint: AzuriteEndpoint, container: str, key: str) -> AzureBackend:
    return AzureBackend(
        container=container,
        settings=StorageSettings(azure_blob_endpoint=endpoint.url),
        account_name=endpoint.account_name,
        account_key=Secret(key),
    )


async def test_preflight_names_a_wrong_account_key_in_one_line(emulators: Emulators) -> None:
    container = unique_bucket()
    emulators.create_bucket("azure", container)
    wrong = base64.b64encode(b"w" * 64).decode()
    backend = backend_with_key(emulators.azure, container, wrong)
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    await backend.close()
    message = str(caught.value)
    assert message == (
        f"azure container '{container}' (account '{AZURITE_ACCOUNT}'): "
        "authentication failed (wrong account key?)"
    )
    assert wrong not in message and wrong not in repr(backend)


async def test_preflight_names_a_key_that_is_not_base64(emulators: Emulators) -> None:
    container = unique_bucket()
    emulators.create_bucket("azure", container)
    backend = backend_with_key(emulators.azure, container, "not base64 at all!")
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    await backend.close()
    assert str(caught.value) == (
        f"azure container '{container}' (account '{AZURITE_ACCOUNT}'): "
        "account key is not valid (cannot sign requests)"
    )
    assert "not base64 at all" not in str(caught.value)


async def test_a_large_object_is_committed_from_blocks_of_part_size(emulators: Emulators) -> None:
    backend = emulators.backend("azure")
    stored = await backend.write_stream(
        "big.wav", aiter(Producer(11 * MiB)), content_type="audio/wav"
    )
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(emulators.azure.connection_string) as svc:
        blob = svc.get_blob_client(backend.bucket, "telnyx-archive/big.wav")
        committed, uncommitted = blob.get_block_list("all")
        props = blob.get_blob_properties()
    assert [b.size for b in committed] == [5 * MiB, 5 * MiB, 1 * MiB]
    assert uncommitted == []
    assert props.content_settings.content_type == "audio/wav"
    assert bytes(props.content_settings.content_md5).hex() == stored.checksums[MD5]


async def test_an_az_url_takes_its_account_from_the_connection_string(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = unique_bucket()
    emulators.create_bucket("azure", container)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", emulators.azure.connection_string)
    backend = backend_for_url(f"az://{container}/lake", StorageSettings())
    try:
        await backend.preflight()
        stored = await backend.write_small("a.json", b"[]", content_type="application/json")
    finally:
        await backend.close()
    assert stored.uri == f"az://{container}/lake/a.json"


def test_an_az_url_without_any_account_is_a_one_line_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ValueError, match="^az:// destination needs AZURE_STORAGE_CONNECTION_STRING"
    ):
        backend_for_url("az://c1c/x", StorageSettings())
