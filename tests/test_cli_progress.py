"""What a run shows while it works: a live bar on a terminal, log lines elsewhere, a summary."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from pipeline.archive.options import RunReport, Window
from pipeline.progress import LogProgress, RichProgress, progress_for, summary_lines


def drive(sink) -> None:
    sink.slices_planned(2)
    sink.recordings_found(3)
    sink.recording_done(1_500_000)
    sink.recording_done(500_000)
    sink.recording_failed()
    sink.slice_done()
    sink.recordings_found(1)
    sink.recording_done(1_000_000)
    sink.slice_done()


def test_a_terminal_gets_a_live_bar_with_slices_recordings_and_bytes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    with progress_for(console) as sink:
        assert isinstance(sink, RichProgress)
        drive(sink)
    text = out.getvalue()
    assert "slices" in text and "2/2" in text
    assert "recordings" in text and "4/4" in text
    assert "3.0 MB" in text
    assert "1 failed" in text


def test_without_a_terminal_each_slice_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"), progress_for(console) as sink:
        assert isinstance(sink, LogProgress)
        drive(sink)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("slice 1/2 done: 2/3 recordings, 1 failed, 2.0 MB")
    assert messages[1].startswith("slice 2/2 done: 3/4 recordings, 1 failed, 3.0 MB")
    assert caplog.records[1].recordings_done == 3  # the figures travel as extras for JSON logs


def test_log_lines_are_throttled_between_the_first_and_last_slice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = LogProgress(every=3600)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        sink.slices_planned(5)
        for _ in range(5):
            sink.slice_done()
    done = [r.getMessage() for r in caplog.records if "done" in r.getMessage()]
    assert [m.split(" done")[0] for m in done] == ["slice 1/5", "slice 5/5"]


def test_the_summary_names_every_count_and_the_api_calls() -> None:
    start = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    report = RunReport(
        run_id="r42",
        window=Window(start - timedelta(days=3), start),
        slices_total=2,
        slices_done=2,
        recordings_listed=5,
        recordings_archived=4,
        recordings_deleted=4,
        recordings_failed=1,
        bytes_uploaded=2_500_000,
        started_at=start,
        finished_at=start + timedelta(seconds=12.5),
        errors=["rec-9: mp3: download failed"],
        api_calls={"GET /recordings 200": 2, "POST /recordings/actions/delete 200": 1},
    )
    text = "\n".join(summary_lines(report))
    assert "run r42: FINISHED WITH FAILURES" in text
    assert "listed 5, archived 4, deleted 4, skipped 0, deferred 0, failed 1" in text
    assert "2.5 MB uploaded" in text
    assert "duration    12.5 s" in text
    assert "API calls   3 (GET /recordings 200: 2, POST /recordings/actions/delete 200: 1)" in text
    assert "error: rec-9: mp3: download failed" in text
