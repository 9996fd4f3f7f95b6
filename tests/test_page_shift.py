"""Why the pipeline never deletes while paging: on Telnyx (and the sandbox) pages shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.telnyx import RecordingFilters, TelnyxClient


async def test_the_client_paging_a_window_while_another_task_deletes_from_it_skips_recordings():
    config = SandboxConfig(recordings=100, seed=17, audio_bytes=0)
    window = RecordingFilters(
        created_at_gte=datetime(2000, 1, 1, tzinfo=UTC), created_at_lte=datetime.now(UTC)
    )
    async with (
        SandboxServer(config) as sandbox,
        TelnyxClient(config.api_key, sandbox.base_url) as client,
    ):
        everything = set(sandbox.state.recordings)
        seen: set[str] = set()
        number, total_pages = 1, None
        while total_pages is None or number <= total_pages:
            page = await client.get_recordings_page(
                page_number=number, page_size=20, filters=window
            )
            total_pages = total_pages or page.total_pages
            ids = [r.id for r in page.items]
            seen.update(ids)
            # Another task archives and deletes what this page showed, as a naive loop would.
            await client.delete_recordings(ids)
            number += 1
        skipped = everything - seen
        assert skipped, "deleting while paging by page number must skip recordings"
        assert len(skipped) == len(sandbox.state.recordings) == 40, (
            "page shifting leaves them behind"
        )


async def test_listing_a_closed_window_completely_before_deleting_misses_nothing():
    config = SandboxConfig(recordings=100, seed=17, audio_bytes=0)
    window = RecordingFilters(
        created_at_gte=datetime(2000, 1, 1, tzinfo=UTC),
        created_at_lte=datetime.now(UTC) - timedelta(hours=1),
    )
    async with (
        SandboxServer(config) as sandbox,
        TelnyxClient(config.api_key, sandbox.base_url) as client,
    ):
        listed = [r.id async for r in client.list_recordings(window, page_size=20)]
        result = await client.delete_recordings(listed)
        assert len(set(listed)) == 100 and not result.failed
        assert not sandbox.state.recordings
