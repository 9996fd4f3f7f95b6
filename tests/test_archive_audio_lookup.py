"""Looking for earlier copies of the audio: one listing per audio folder, not a stat per object."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.archive.options import ArchiveOptions, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.storage.local import LocalBackend
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx import TelnyxClient
from tests.fixtures.invariants import violations

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
FAST = dict(requests_per_second=1000.0, max_concurrency=32, backoff_base=0.01, backoff_max=0.2)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts LocalBackend.stat of audio keys and LocalBackend.list of audio folders."""
    seen: Counter[str] = Counter()
    stat, listing = LocalBackend.stat, LocalBackend.list

    async def counting_stat(self, key):
        if key.startswith("audio/"):
            seen["stat"] += 1
        return await stat(self, key)

    async def counting_list(self, prefix):
        if prefix.startswith("audio/"):
            seen["list"] += 1
        return await listing(self, prefix)

    monkeypatch.setattr(LocalBackend, "stat", counting_stat)
    monkeypatch.setattr(LocalBackend, "list", counting_list)
    return seen


async def run_once(sandbox: SandboxServer, root: Path, options: ArchiveOptions):
    storage = StorageSettings(default_destination=root.as_uri())
    async with TelnyxClient(sandbox.config.api_key, sandbox.base_url, **FAST) as client:
        return await archive(WINDOW, client=client, storage=storage, options=options)


async def test_a_first_upload_is_preceded_by_one_listing_per_folder_and_no_stat(calls, tmp_path):
    config = SandboxConfig(recordings=40, seed=5, audio_bytes=1024, connections=2, days=2)
    async with SandboxServer(config) as sandbox:
        report = await run_once(sandbox, tmp_path, ArchiveOptions())
        assert report.ok, report.errors
        assert report.recordings_archived == 40
        folders = {p.parent for p in tmp_path.glob("audio/*/*/*.mp3")}
        assert calls["list"] == len(folders)
        assert calls["stat"] == 40, "only the read-back after each upload"


async def test_audio_left_by_a_run_that_kept_the_source_is_found_and_not_uploaded_again(
    calls, tmp_path
):
    config = SandboxConfig(recordings=30, seed=6, audio_bytes=1024)
    async with SandboxServer(config) as sandbox:
        await run_once(sandbox, tmp_path, ArchiveOptions(keep_source=True))
        # Drop the rows, keep the audio: what a crash between upload and commit leaves behind.
        for part in tmp_path.glob("recordings/**/*.parquet"):
            part.unlink()
        report = await run_once(sandbox, tmp_path, ArchiveOptions())
        assert report.ok, report.errors
        assert report.recordings_archived == 30 and report.bytes_uploaded == 0
        assert not sandbox.state.recordings
        assert (
            await violations(
                sandbox, [LocalBackend(root=str(tmp_path), settings=StorageSettings())]
            )
            == []
        )
