"""The archival run against the sandbox and a local folder: exactly once, safe at every instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.archive.options import ArchiveOptions, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.storage.select import backend_for_url
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx import TelnyxClient
from tests.fixtures.invariants import archived_rows, violations

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
FAST = dict(requests_per_second=1000.0, max_concurrency=32, backoff_base=0.01, backoff_max=0.2)


class Crash(Exception):
    """Stands for the process dying at a stage boundary."""


def crash_at(stage: str, nth: int = 1):
    seen = {"n": 0}

    def hook(current: str) -> None:
        if current == stage:
            seen["n"] += 1
            if seen["n"] == nth:
                raise Crash(f"crash at {stage} #{nth}")

    return hook


async def run_once(
    sandbox, root: Path, options: ArchiveOptions | None = None, client_options=FAST, **kw
):
    storage = StorageSettings(default_destination=root.as_uri())
    async with TelnyxClient(sandbox.config.api_key, sandbox.base_url, **client_options) as client:
        return await archive(
            WINDOW, client=client, storage=storage, options=options or ArchiveOptions(), **kw
        )


def local(root: Path):
    return backend_for_url(root.as_uri(), StorageSettings())


@pytest.fixture
def config() -> SandboxConfig:
    return SandboxConfig(recordings=60, seed=7, audio_bytes=4096)


async def test_a_run_archives_every_recording_verified_then_deletes_it(config, tmp_path):
    async with SandboxServer(config) as sandbox:
        report = await run_once(sandbox, tmp_path)
        assert report.ok, report.errors
        assert report.recordings_listed == 60
        assert report.recordings_archived == 60 == report.recordings_deleted
        assert not sandbox.state.recordings, "everything left Telnyx"
        assert await violations(sandbox, [local(tmp_path)]) == []
        recordings, transcriptions = await archived_rows([local(tmp_path)])
        assert len(recordings) == 60
        assert len(transcriptions) == len(sandbox.state.deleted_transcription_ids) > 0


async def test_dry_run_lists_and_plans_but_writes_and_deletes_nothing(config, tmp_path):
    async with SandboxServer(config) as sandbox:
        report = await run_once(sandbox, tmp_path, ArchiveOptions(dry_run=True))
        assert report.recordings_planned == 60
        assert report.recordings_archived == 0 and report.recordings_deleted == 0
        assert len(sandbox.state.recordings) == 60
        assert not any(tmp_path.iterdir())


async def test_keep_source_archives_without_deleting_and_a_later_run_adds_no_rows(config, tmp_path):
    async with SandboxServer(config) as sandbox:
        first = await run_once(sandbox, tmp_path, ArchiveOptions(keep_source=True))
        assert first.recordings_archived == 60 and first.recordings_deleted == 0
        assert len(sandbox.state.recordings) == 60
        second = await run_once(sandbox, tmp_path)
        assert second.recordings_deleted == 60
        assert second.bytes_uploaded == 0, "identical audio is not uploaded again"
        assert await violations(sandbox, [local(tmp_path)]) == []


async def test_max_delete_caps_deletions_and_leaves_the_rest_archived_in_telnyx(config, tmp_path):
    async with SandboxServer(config) as sandbox:
        report = await run_once(sandbox, tmp_path, ArchiveOptions(max_delete=10))
        assert not report.ok, "reaching the limit is reported as an error, as in rclone"
        assert sum("--max-delete 10 reached" in e for e in report.errors) >= 1
        assert report.recordings_deleted == 10
        assert len(sandbox.state.recordings) == 50
        assert await violations(sandbox, [local(tmp_path)]) == []


async def test_in_progress_transcriptions_defer_their_recording_until_the_grace_period(tmp_path):
    config = SandboxConfig(recordings=80, seed=3, audio_bytes=1024)
    async with SandboxServer(config) as sandbox:
        in_progress = {
            t["recording_id"]
            for t in sandbox.state.transcriptions.values()
            if t.get("status") == "in-progress"
        }
        assert in_progress, "the sandbox makes some in-progress transcriptions"
        report = await run_once(
            sandbox, tmp_path, ArchiveOptions(transcription_grace=timedelta(days=3650))
        )
        assert report.recordings_deferred == len(in_progress)
        assert in_progress <= set(sandbox.state.recordings)
        later = await run_once(sandbox, tmp_path, ArchiveOptions(transcription_grace=timedelta(0)))
        assert later.recordings_archived == len(in_progress)
        assert not sandbox.state.recordings
        assert await violations(sandbox, [local(tmp_path)]) == []


@pytest.mark.parametrize(
    ("stage", "nth"),
    [
        ("listed", 1),
        ("stored", 1),
        ("stored", 30),
        ("committed", 1),
        ("deleting", 1),
        ("deleted", 1),
    ],
)
async def test_a_crash_at_any_stage_then_a_rerun_archives_everything_exactly_once(
    config, tmp_path, stage, nth
):
    options = ArchiveOptions(commit_every=20)
    async with SandboxServer(config) as sandbox:
        with pytest.raises(Crash):
            await run_once(sandbox, tmp_path, options, on_stage=crash_at(stage, nth))
        assert await violations(sandbox, [local(tmp_path)]) == []
        report = await run_once(sandbox, tmp_path, options)
        assert report.ok, report.errors
        assert not sandbox.state.recordings
        assert await violations(sandbox, [local(tmp_path)]) == []


async def test_a_crash_between_transcription_and_recording_deletes_leaves_nothing_unarchived(
    config, tmp_path
):
    # "deleting" fires before the transcription deletes; crash at the 2nd batch's start while the
    # first batch's deletes may be in flight, then rerun.
    options = ArchiveOptions(commit_every=15)
    async with SandboxServer(config) as sandbox:
        with pytest.raises(Crash):
            await run_once(sandbox, tmp_path, options, on_stage=crash_at("deleting", 2))
        report = await run_once(sandbox, tmp_path, options)
        assert report.ok, report.errors
        assert await violations(sandbox, [local(tmp_path)]) == []


async def test_a_transcription_whose_recording_is_gone_is_archived_once_then_deleted(
    config, tmp_path
):
    async with SandboxServer(config) as sandbox:
        victim = next(
            t for t in sandbox.state.transcriptions.values() if t.get("status") == "completed"
        )
        sandbox.state.delete_recordings([victim["recording_id"]])  # deleted outside the archiver
        report = await run_once(sandbox, tmp_path)
        assert report.transcriptions_orphaned == 1
        assert victim["id"] in sandbox.state.deleted_transcription_ids
        _, transcriptions = await archived_rows([local(tmp_path)])
        assert [t["id"] for t in transcriptions].count(victim["id"]) == 1


async def test_connections_without_credential_or_default_stay_in_telnyx_and_are_reported(
    config, tmp_path
):
    async with (
        SandboxServer(config) as sandbox,
        TelnyxClient(config.api_key, sandbox.base_url, **FAST) as client,
    ):
        report = await archive(
            WINDOW, client=client, storage=StorageSettings(), options=ArchiveOptions()
        )
        assert report.recordings_skipped == 60 and report.recordings_deleted == 0
        assert len(sandbox.state.recordings) == 60
        assert any("no default destination" in e for e in report.errors)


async def test_many_slices_and_pages_lose_nothing_while_deleting(tmp_path):
    config = SandboxConfig(recordings=700, seed=11, audio_bytes=512, days=3)
    options = ArchiveOptions(slice_max_results=120, page_size=25, commit_every=40)
    async with SandboxServer(config) as sandbox:
        report = await run_once(sandbox, tmp_path, options)
        assert report.ok, report.errors[:5]
        assert report.slices_total > 5
        assert not sandbox.state.recordings
        assert await violations(sandbox, [local(tmp_path)], check_audio_bytes=False) == []


async def test_the_fault_mix_still_ends_with_everything_archived_exactly_once(tmp_path):
    config = SandboxConfig(
        recordings=120,
        seed=5,
        audio_bytes=8192,
        rate_limit=100.0,
        rate_burst=5,
        fault_seed=9,
        fault_5xx=0.05,
        fault_reset=0.03,
        fault_truncate=0.05,
        fault_expire=0.05,
        fault_partial_delete=0.2,
    )
    async with SandboxServer(config) as sandbox:
        patient = FAST | {"backoff_max": 2.0}
        report = await run_once(sandbox, tmp_path, ArchiveOptions(commit_every=30), patient)
        leftovers = set(sandbox.state.recordings)
        if leftovers:  # a run may leave a few for the next night; the next one must finish them
            report = await run_once(sandbox, tmp_path, client_options=patient)
        assert not sandbox.state.recordings, report.errors[:5]
        assert await violations(sandbox, [local(tmp_path)]) == []
        statuses = sandbox.state.request_counts
        for fault in (" 429", " 500", " 503", " reset", " truncated", "/_audio/{name} 403"):
            assert any(k.endswith(fault) for k in statuses), f"the sandbox never injected{fault}"


async def test_a_backfill_rerun_continues_from_the_slices_it_finished(tmp_path):
    from pipeline.archive.checkpoint import Checkpoints

    config = SandboxConfig(recordings=200, seed=2, audio_bytes=256, days=4)
    options = ArchiveOptions(slice_max_results=60, state_dir=str(tmp_path / "state"))
    (tmp_path / "a").mkdir()
    async with SandboxServer(config) as sandbox:
        with pytest.raises(Crash):
            await run_once(sandbox, tmp_path / "a", options, on_stage=crash_at("listed", 3))
        done = Checkpoints.for_window(options.state_dir, WINDOW).done_ranges
        assert len(done) == 1 and done[0][0] == WINDOW.since, "two finished slices, merged"
        finished_until = done[0][1]
        assert all(
            datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")) >= finished_until
            for r in sandbox.state.recordings.values()
        ), "only recordings after the finished slices are left"
        report = await run_once(sandbox, tmp_path / "a", options)
        assert report.ok and not sandbox.state.recordings
        assert Checkpoints.for_window(options.state_dir, WINDOW).covers(WINDOW.since, WINDOW.until)
        assert await violations(sandbox, [local(tmp_path / "a")]) == []
