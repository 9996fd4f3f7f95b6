"""What a run shows while it works, and the summary it ends with.

On a terminal: a live rich progress bar (slices, recordings, bytes, rate, ETA).
Elsewhere (cron, Kubernetes, a pipe): a plain log line per finished slice, at most one every
`every` seconds, plus the first and the last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.archive.options import ProgressSink, RunReport

log = logging.getLogger("pipeline.progress")


class Counts:
    """Running totals shared by both displays."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.slices_total = 0
        self.slices_done = 0
        self.found = 0
        self.done = 0
        self.failed = 0
        self.bytes = 0

    def rate(self) -> tuple[float, float]:
        """(recordings per second, bytes per second) since the start."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.done / elapsed, self.bytes / elapsed


class LogProgress(Counts):
    """A ProgressSink that writes periodic log lines, for runs without a terminal."""

    def __init__(self, logger: logging.Logger = log, every: float = 10.0) -> None:
        super().__init__()
        self.logger = logger
        self.every = every
        self._last = 0.0

    def slices_planned(self, total: int) -> None:
        # The run plans slices as it lists them, so this is called again as the total grows.
        self.slices_total = total
        self.logger.debug("planned %d slices", total, extra={"slices_total": total})

    def slice_done(self) -> None:
        self.slices_done += 1
        now = time.monotonic()
        last = self.slices_done >= self.slices_total
        if last or self.slices_done == 1 or now - self._last >= self.every:
            self._last = now
            rec_rate, byte_rate = self.rate()
            self.logger.info(
                "slice %d/%d done: %d/%d recordings, %d failed, %s (%.1f rec/s, %s/s)",
                self.slices_done,
                self.slices_total,
                self.done,
                self.found,
                self.failed,
                decimal(self.bytes),
                rec_rate,
                decimal(int(byte_rate)),
                extra={
                    "slices_done": self.slices_done,
                    "slices_total": self.slices_total,
                    "recordings_done": self.done,
                    "recordings_found": self.found,
                    "recordings_failed": self.failed,
                    "bytes": self.bytes,
                },
            )

    def recordings_found(self, n: int) -> None:
        self.found += n

    def recording_done(self, nbytes: int) -> None:
        self.done += 1
        self.bytes += nbytes

    def recording_failed(self) -> None:
        self.failed += 1


class RichProgress(Counts):
    """A ProgressSink drawing a live bar on a terminal."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress
        self.slices: TaskID = progress.add_task("slices", total=None, info="")
        self.recordings: TaskID = progress.add_task("recordings", total=None, info="")

    def slices_planned(self, total: int) -> None:
        self.slices_total = total
        self.progress.update(self.slices, total=total)

    def slice_done(self) -> None:
        self.slices_done += 1
        self.progress.update(self.slices, advance=1)

    def recordings_found(self, n: int) -> None:
        self.found += n
        self.progress.update(self.recordings, total=self.found)

    def recording_done(self, nbytes: int) -> None:
        self.done += 1
        self.bytes += nbytes
        self._refresh()

    def recording_failed(self) -> None:
        self.failed += 1
        self._refresh()

    def _refresh(self) -> None:
        rec_rate, byte_rate = self.rate()
        failed = f", [red]{self.failed} failed[/]" if self.failed else ""
        self.progress.update(
            self.recordings,
            completed=self.done + self.failed,
            info=f"{decimal(self.bytes)} · {decimal(int(byte_rate))}/s · {rec_rate:.1f} rec/s{failed}",
        )


@contextmanager
def progress_for(console: Console | None, *, live: bool | None = None) -> Iterator[ProgressSink]:
    """A live bar when console is a terminal (or live=True), else periodic log lines."""
    use_bar = live if live is not None else bool(console is not None and console.is_terminal)
    if not use_bar:
        yield LogProgress()
        return
    progress = Progress(
        TextColumn("[bold]{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield RichProgress(progress)


# --- the summary every run ends with ------------------------------------------------------


def summary_fields(report: RunReport) -> dict[str, Any]:
    duration = None
    if report.started_at and report.finished_at:
        duration = round((report.finished_at - report.started_at).total_seconds(), 3)
    return {
        "run_id": report.run_id,
        "ok": report.ok,
        "dry_run": report.dry_run,
        "window_since": report.window.since.isoformat(),
        "window_until": report.window.until.isoformat(),
        "slices_done": report.slices_done,
        "slices_total": report.slices_total,
        "recordings_listed": report.recordings_listed,
        "recordings_archived": report.recordings_archived,
        "recordings_deleted": report.recordings_deleted,
        "recordings_skipped": report.recordings_skipped,
        "recordings_deferred": report.recordings_deferred,
        "recordings_failed": report.recordings_failed,
        "transcriptions_archived": report.transcriptions_archived,
        "transcriptions_deleted": report.transcriptions_deleted,
        "bytes_uploaded": report.bytes_uploaded,
        "duration_seconds": duration,
        "api_calls": sum(report.api_calls.values()),
        "api_calls_by_endpoint": dict(report.api_calls),
        "errors": len(report.errors),
    }


def summary_lines(report: RunReport) -> list[str]:
    f = summary_fields(report)
    status = "OK" if report.ok else "FINISHED WITH FAILURES"
    mode = " (dry run: nothing written, nothing deleted)" if report.dry_run else ""
    duration = f"{f['duration_seconds']:.1f} s" if f["duration_seconds"] is not None else "?"
    lines = [
        f"run {report.run_id}: {status}{mode}",
        f"  window      {f['window_since']} .. {f['window_until']}",
        f"  slices      {f['slices_done']}/{f['slices_total']}",
        f"  recordings  listed {f['recordings_listed']}, "
        + (f"would archive {report.recordings_planned}, " if report.dry_run else "")
        + f"archived {f['recordings_archived']}, "
        f"deleted {f['recordings_deleted']}, skipped {f['recordings_skipped']}, "
        f"deferred {f['recordings_deferred']}, failed {f['recordings_failed']}",
        f"  transcriptions archived {f['transcriptions_archived']}, "
        f"deleted {f['transcriptions_deleted']}",
        f"  bytes       {decimal(report.bytes_uploaded)} uploaded",
        f"  duration    {duration}",
        f"  API calls   {f['api_calls']}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(report.api_calls.items())) + ")"
            if report.api_calls
            else ""
        ),
    ]
    for error in report.errors[:20]:
        lines.append(f"  error: {error}")
    if len(report.errors) > 20:
        lines.append(f"  ... and {len(report.errors) - 20} more errors")
    if report.recordings_failed:
        lines.append("  failed recordings stay in Telnyx; the next run retries them")
    return lines
