"""GCS specifics (gcp-storage-emulator): credentials, emulator discovery, the resumable window."""

from __future__ import annotations

import pytest

from pipeline.storage.base import CRC32C, MD5, PreflightError, StorageError
from pipeline.storage.gcs import GCSBackend, _Window, emulator_endpoint
from pipeline.storage.select import backend_for_url
from pipeline.storage.settings import MiB, StorageSettings
from pipeline.telnyx.models import Secret
from tests.fixtures.emulators import Emulators, unique_bucket
from tests.test_storage_contract import Producer


async def test_preflight_names_credentials_that_are_not_service_account_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    secret = '{"type": "service_account", "private_key": "-----BEGIN hunter2'
    backend = GCSBackend(bucket="b-1", settings=StorageSettings(), credentials_json=Secret(secret))
    with pytest.raises(PreflightError) as caught:
        await backend.preflight()
    await backend.close()
    assert str(caught.value) == "gcs bucket 'b-1': credentials are not a valid service-account JSON"
    assert "hunter2" not in repr(backend)


def test_the_emulator_host_may_be_given_without_a_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")
    assert emulator_endpoint(StorageSettings()) == "http://127.0.0.1:9023"
    explicit = StorageSettings(gcs_endpoint_url="http://127.0.0.1:1")
    assert emulator_endpoint(explicit) == "http://127.0.0.1:1"


async def test_a_gs_url_finds_the_emulator_through_storage_emulator_host(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = unique_bucket()
    emulators.create_bucket("gcs", bucket)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulators.gcs_url.removeprefix("http://"))
    backend = backend_for_url(f"gs://{bucket}/lake", StorageSettings())
    try:
        await backend.preflight()
        stored = await backend.write_small("a.json", b"[]", content_type="application/json")
    finally:
        await backend.close()
    assert stored.uri == f"gs://{bucket}/lake/a.json"


async def test_a_resumable_upload_reports_the_servers_md5_and_crc32c(
    emulators: Emulators,
) -> None:
    backend = emulators.backend("gcs")
    stored = await backend.write_stream(
        "r.wav", aiter(Producer(11 * MiB)), content_type="audio/wav"
    )
    blob = emulators.gcs_client().bucket(backend.bucket).get_blob("telnyx-archive/r.wav")
    assert blob.content_type == "audio/wav"
    assert stored.checksums[CRC32C] == blob.crc32c
    assert stored.checksums[MD5] == __import__("base64").b64decode(blob.md5_hash).hex()
    assert blob.metadata == {"sha256": stored.sha256}


def test_the_window_replays_bytes_the_server_did_not_persist() -> None:
    window = _Window()
    window.feed(b"abcdef")
    assert window.read(4) == b"abcd"
    window.drop_before(2)  # the server kept 2 of the 4 bytes sent
    window.seek(2)
    assert window.read(10) == b"cdef"
    assert window.tell() == 6
    with pytest.raises(OSError):
        window.seek(1)


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small", "resumable"])
async def test_an_upload_whose_server_md5_differs_is_removed(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    backend = emulators.backend("gcs")
    monkeypatch.setattr("pipeline.storage.gcs.hex_of_b64", lambda value: "00" * 16)
    with pytest.raises(StorageError, match="checksum differs from the bytes sent"):
        await backend.write_stream("bad.wav", aiter(Producer(size)), content_type="audio/wav")
    monkeypatch.undo()
    assert await backend.stat("bad.wav") is None
