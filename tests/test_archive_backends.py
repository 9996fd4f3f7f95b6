"""End-to-end runs into every backend, routed by the connections' stored credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.archive.audit import audit
from pipeline.archive.options import ArchiveOptions, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.storage.select import backend_for_credential, backend_for_url
from pipeline.telnyx import TelnyxClient
from tests.fixtures.invariants import archived_rows, violations

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
FAST = dict(requests_per_second=1000.0, max_concurrency=32, backoff_base=0.01, backoff_max=0.2)


@pytest.mark.parametrize("kind", ["s3", "s3-generic", "gcs", "azure"])
async def test_recordings_go_to_the_bucket_of_their_connections_stored_credential(emulators, kind):
    config = SandboxConfig(recordings=40, seed=21, audio_bytes=3000, connections=2)
    settings = emulators.settings(None if kind != "s3-generic" else "s3")
    async with (
        SandboxServer(config) as sandbox,
        TelnyxClient(config.api_key, sandbox.base_url, **FAST) as client,
    ):
        credential = emulators.credential(kind)
        for connection_id in sandbox.state.connection_ids:
            await client.create_storage_credential(connection_id, credential)
        report = await archive(
            WINDOW, client=client, storage=settings, options=ArchiveOptions(formats=("mp3", "wav"))
        )
        assert report.ok, report.errors
        assert report.recordings_deleted == 40 and not sandbox.state.recordings
        backend = backend_for_credential(credential, settings)
        try:
            assert await violations(sandbox, [backend]) == []
            recordings, _ = await archived_rows([backend])
            assert all(r["wav_sha256"] for r in recordings), "both formats archived"
            assert all(r["audio_uri"].startswith(backend.root_uri()) for r in recordings)
            found = await audit(backend)
            assert found.ok and found.rows == 40 and found.audio_objects == 80
        finally:
            await backend.close()


async def test_connections_without_a_credential_go_to_the_default_destination(emulators, tmp_path):
    config = SandboxConfig(recordings=60, seed=4, audio_bytes=2048, connections=4)
    settings = emulators.settings(default_destination=(tmp_path / "default").as_uri())
    (tmp_path / "default").mkdir()
    async with (
        SandboxServer(config) as sandbox,
        TelnyxClient(config.api_key, sandbox.base_url, **FAST) as client,
    ):
        kinds = ["s3", "gcs", "azure"]
        credentials = {}
        for connection_id, kind in zip(sandbox.state.connection_ids, kinds, strict=False):
            credentials[connection_id] = emulators.credential(kind)
            await client.create_storage_credential(connection_id, credentials[connection_id])
        report = await archive(WINDOW, client=client, storage=settings, options=ArchiveOptions())
        assert report.ok, report.errors
        assert not sandbox.state.recordings
        backends = [backend_for_credential(c, settings) for c in credentials.values()]
        backends.append(backend_for_url(settings.default_destination, settings))
        try:
            assert await violations(sandbox, backends) == []
            for backend in backends:
                recordings, _ = await archived_rows([backend])
                assert recordings, f"{backend!r} received its connection's recordings"
        finally:
            for backend in backends:
                await backend.close()


async def test_a_destination_that_fails_preflight_keeps_its_recordings_in_telnyx(
    emulators, tmp_path
):
    config = SandboxConfig(recordings=30, seed=8, audio_bytes=1024, connections=2)
    settings = emulators.settings(default_destination=(tmp_path / "default").as_uri())
    (tmp_path / "default").mkdir()
    async with (
        SandboxServer(config) as sandbox,
        TelnyxClient(config.api_key, sandbox.base_url, **FAST) as client,
    ):
        broken, healthy = sandbox.state.connection_ids[:2]
        missing_bucket = emulators.credential("s3", create=False)
        await client.create_storage_credential(broken, missing_bucket)
        report = await archive(WINDOW, client=client, storage=settings, options=ArchiveOptions())
        assert not report.ok
        assert any("bucket" in e and broken in e for e in report.errors), report.errors
        left = {r["connection_id"] for r in sandbox.state.recordings.values()}
        assert left == {broken}
        secret = missing_bucket.configuration.aws_secret_access_key.reveal()
        assert not any(secret in e for e in report.errors)
        assert (
            await violations(sandbox, [backend_for_url(settings.default_destination, settings)])
            == []
        )
