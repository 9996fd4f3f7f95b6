"""The one place that decides what may be deleted from Telnyx.

A recording may leave Telnyx only as an `Archived` value, and only `commit` in run.py makes
those: after its audio was read back with the right size and hash and after the Parquet files
holding its row and its transcriptions' rows were durably written. On top of that, the safety
valves of rclone: --dry-run, --keep-source and --max-delete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.archive.options import ArchiveOptions, RunReport
from pipeline.telnyx.errors import TelnyxError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Archived:
    """Proof that a recording and its transcriptions are archived: verified audio, durable rows."""

    recording_id: str
    transcription_ids: tuple[str, ...]
    rows_in: str  # the durable Parquet file holding the recording's row


@dataclass(frozen=True, slots=True)
class ArchivedTranscription:
    """Proof that a transcription whose recording is gone has a durable row."""

    transcription_id: str
    rows_in: str


class Deleter:
    def __init__(self, client, options: ArchiveOptions, report: RunReport) -> None:
        self._client = client
        self._options = options
        self._report = report
        self._budget = options.max_delete
        self._budget_lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return not (self._options.dry_run or self._options.keep_source)

    async def _take(self, wanted: int) -> int:
        async with self._budget_lock:
            if self._budget is None:
                return wanted
            granted = min(wanted, self._budget)
            self._budget -= granted
            if granted < wanted:
                self._report.recordings_skipped += wanted - granted
                # As in rclone, reaching the limit is an error: the operator asked to be stopped.
                message = (
                    f"--max-delete {self._options.max_delete} reached: archived recordings "
                    "beyond it are left in Telnyx (counted as skipped)"
                )
                if message not in self._report.errors:
                    self._report.errors.append(message)
                    log.warning(message)
            return granted

    async def delete_archived(self, batch: Sequence[Archived]) -> None:
        if not self.enabled or not batch:
            return
        granted = await self._take(len(batch))
        batch = batch[:granted]
        # Transcriptions go first: a crash between the two deletes then leaves a recording whose
        # rows exist (a rerun recognises it), never a transcription whose recording is gone.
        results = await asyncio.gather(
            *(self._delete_transcriptions(item) for item in batch), return_exceptions=False
        )
        ready = [item.recording_id for item, ok in zip(batch, results, strict=True) if ok]
        if not ready:
            return
        outcome = await self._client.delete_recordings(
            ready, chunk_size=self._options.delete_chunk_size
        )
        self._report.recordings_deleted += len(outcome.deleted)
        for rid, reason in outcome.failed.items():
            self._report.recordings_failed += 1
            self._report.errors.append(f"recording {rid}: delete failed: {reason}")

    async def delete_orphans(self, batch: Sequence[ArchivedTranscription]) -> None:
        if not self.enabled:
            return
        await asyncio.gather(*(self._delete_one_transcription(t.transcription_id) for t in batch))

    async def _delete_transcriptions(self, item: Archived) -> bool:
        oks = await asyncio.gather(
            *(self._delete_one_transcription(t) for t in item.transcription_ids)
        )
        if not all(oks):
            self._report.recordings_failed += 1
            self._report.errors.append(
                f"recording {item.recording_id}: kept in Telnyx because a transcription delete failed"
            )
        return all(oks)

    async def _delete_one_transcription(self, transcription_id: str) -> bool:
        try:
            await self._client.delete_transcription(transcription_id)  # 404: already gone, fine
        except TelnyxError as exc:
            self._report.errors.append(f"transcription {transcription_id}: delete failed: {exc}")
            return False
        self._report.transcriptions_deleted += 1
        return True
