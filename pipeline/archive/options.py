"""What a run is asked to do, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

MiB = 1024 * 1024
AUDIO_FORMATS = ("mp3", "wav")


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open range [since, until) of recording `created_at`, aware UTC datetimes."""

    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class ArchiveOptions:
    formats: tuple[str, ...] = ("mp3",)  # subset of AUDIO_FORMATS
    dry_run: bool = False  # list and plan; write nothing, delete nothing
    keep_source: bool = False  # archive, never delete
    max_delete: int | None = None  # at most this many recordings deleted per run
    slice_max_results: int = 5000  # split a slice whose total_results exceeds this
    page_size: int = 250
    concurrency: int = 16  # recordings downloading/uploading at once
    max_bytes_in_flight: int = 256 * MiB
    delete_chunk_size: int = 100  # ids per POST /recordings/actions/delete
    transcription_lag: timedelta = timedelta(
        hours=2
    )  # how long after a recording its transcription may appear
    transcription_grace: timedelta = timedelta(
        hours=24
    )  # in-progress longer than this: archive without text
    commit_every: int = 500  # verified recordings per metadata commit (then their delete starts)
    commit_interval: float = 5.0  # ...or fewer, once the oldest has waited this many seconds
    rows_per_file: int = 50_000
    state_dir: str | None = None  # where backfill checkpoints live; None: no checkpoints
    run_id: str | None = None  # None: generated


@dataclass
class RunReport:
    run_id: str
    window: Window
    dry_run: bool = False
    slices_total: int = 0
    slices_done: int = 0
    recordings_listed: int = 0
    recordings_planned: int = 0  # --dry-run: what a real run would archive
    recordings_archived: int = 0  # audio verified and row durable (this run or an earlier one)
    recordings_deleted: int = 0
    recordings_skipped: int = 0  # left in Telnyx on purpose (no destination, deferred, max-delete)
    recordings_failed: int = 0  # left in Telnyx because something went wrong
    recordings_deferred: int = 0  # transcription still in progress
    transcriptions_archived: int = 0
    transcriptions_deleted: int = 0
    transcriptions_orphaned: int = 0  # archived on their own: their recording was already gone
    bytes_uploaded: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    errors: list[str] = field(default_factory=list)  # one line each, no secrets
    api_calls: dict[str, int] = field(default_factory=dict)  # "GET /recordings 200" -> n

    @property
    def ok(self) -> bool:
        return self.recordings_failed == 0 and not self.errors


class ProgressSink(Protocol):
    """What the run tells the CLI's progress display. Every method must be cheap."""

    def slices_planned(self, total: int) -> None: ...
    def slice_done(self) -> None: ...
    def recordings_found(self, n: int) -> None: ...
    def recording_done(self, nbytes: int) -> None: ...
    def recording_failed(self) -> None: ...
