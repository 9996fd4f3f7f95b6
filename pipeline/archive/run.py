"""The archival run: one recording's way from listing to deletion.

    for each slice of the window (listed completely first, so deletes never shift a page we read):
        list the slice's transcriptions (created_at widened by the transcription lag)
        route each recording to its destination (stored credential, else the default)
        store + verify its audio                                   -> audio.store_audio
        commit its metadata rows, exactly once                     -> commit (ledger.Ledger)
        delete what was committed                                  -> delete.Deleter
    write the run manifest into each destination used

Deletes overlap with the archiving of the same slice, never with the listing of any slice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

from pipeline.archive.audio import AudioError, FreshRecording, StoredAudio, store_audio
from pipeline.archive.checkpoint import Checkpoints
from pipeline.archive.delete import Archived, ArchivedTranscription, Deleter
from pipeline.archive.keys import (
    UnsafeIdError,
    audio_key,
    call_date,
    manifest_key,
    parquet_key,
    safe_id,
    transcription_partition_date,
)
from pipeline.archive.ledger import Ledger, RowAudio
from pipeline.archive.options import ArchiveOptions, ProgressSink, RunReport, Window
from pipeline.archive.parquet import (
    RECORDINGS_SCHEMA,
    TRANSCRIPTIONS_SCHEMA,
    AudioColumns,
    recording_row,
    to_parquet_bytes,
    transcription_row,
)
from pipeline.archive.slices import Slice, list_slices
from pipeline.archive.verify import matches
from pipeline.storage.base import Backend, PreflightError, StorageError
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx.errors import NotFoundError, TelnyxError
from pipeline.telnyx.models import MalformedItemError, Recording, Transcription

log = logging.getLogger(__name__)

StageHook = Callable[[str], None]
STAGE_LOG_ENV = "TELNYX_ARCHIVER_STAGE_LOG"


def stage_log_from_env() -> StageHook | None:
    """If $TELNYX_ARCHIVER_STAGE_LOG names a file, append each stage name to it (chaos tests).

    One unbuffered O_APPEND write per stage, so a SIGKILL never loses a stage already passed.
    """
    path = os.environ.get(STAGE_LOG_ENV)
    if not path:
        return None

    def hook(stage: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{stage}\n".encode())
        finally:
            os.close(fd)

    return hook


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class Router:
    """Which destination a connection's recordings go to: the bucket of its stored credential,
    else the configured default destination, else none (they stay in Telnyx)."""

    def __init__(self, client, storage: StorageSettings, report: RunReport, *, dry_run: bool):
        self._client = client
        self._storage = storage
        self._report = report
        self._dry_run = dry_run
        self._by_connection: dict[str, Backend | None | Exception] = {}
        self._by_place: dict[str, Backend] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.default: Backend | None = None

    @property
    def used(self) -> list[Backend]:
        return list(self._by_place.values())

    async def open_default(self) -> None:
        if self._storage.default_destination:
            from pipeline.storage.select import backend_for_url

            self.default = await self._adopt(
                backend_for_url(self._storage.default_destination, self._storage)
            )

    async def _adopt(self, backend: Backend) -> Backend:
        place = backend.root_uri()
        if place not in self._by_place:
            if not self._dry_run:
                await backend.preflight()  # raises PreflightError: one line, no secret
            self._by_place[place] = backend
        else:
            await backend.close()
        return self._by_place[place]

    async def backend_for(self, connection_id: str) -> Backend | None:
        """Raises RoutingError when the connection's destination cannot be used."""
        async with self._locks[connection_id]:
            if connection_id not in self._by_connection:
                self._by_connection[connection_id] = await self._resolve(connection_id)
        found = self._by_connection[connection_id]
        if isinstance(found, Exception):
            raise RoutingError(str(found))
        return found

    async def _resolve(self, connection_id: str) -> Backend | None | Exception:
        from pipeline.storage.select import backend_for_credential

        try:
            credential = await self._client.get_storage_credential(connection_id)
            if credential is None:
                return self.default
            return await self._adopt(backend_for_credential(credential, self._storage))
        except Exception as exc:
            ours = (MalformedItemError, PreflightError, StorageError, TelnyxError, ValueError)
            # An SDK's own error may quote a secret from the credential: name its type only.
            detail = exc if isinstance(exc, ours) else type(exc).__name__
            message = f"connection {connection_id}: destination unusable: {detail}"
            self._report.errors.append(message)
            log.error(message)
            return RoutingError(message)

    async def close(self) -> None:
        for backend in self._by_place.values():
            await backend.close()


class RoutingError(Exception):
    pass


@dataclass
class Verified:
    """A recording whose audio is stored and read back; its rows are not yet committed."""

    recording: Recording
    backend: Backend
    day: date
    audio: list[StoredAudio]
    transcriptions: list[Transcription]
    row_exists: bool


@dataclass
class _SliceOutcome:
    held: int = 0  # skipped or deferred: left in Telnyx on purpose
    pending_deletes: list[asyncio.Task] = field(default_factory=list)


async def archive(
    window: Window,
    *,
    client,
    storage: StorageSettings,
    options: ArchiveOptions,
    progress: ProgressSink | None = None,
    stop: asyncio.Event | None = None,
    on_stage: StageHook | None = None,
) -> RunReport:
    """Archive every recording created in the window, then delete what is verifiably archived."""
    started = datetime.now(UTC)
    run = _Run(
        client=client,
        storage=storage,
        options=options,
        progress=progress,
        on_stage=on_stage or stage_log_from_env() or (lambda stage: None),
        report=RunReport(
            run_id=options.run_id or new_run_id(started),
            window=window,
            dry_run=options.dry_run,
            started_at=started,
        ),
    )
    return await run.execute(window, stop)


class _Run:
    def __init__(self, *, client, storage, options, progress, on_stage, report: RunReport):
        self.client = client
        self.options: ArchiveOptions = options
        self.progress = progress
        self.on_stage: StageHook = on_stage
        self.report = report
        self.router = Router(client, storage, report, dry_run=options.dry_run)
        self.ledger = Ledger()
        self.deleter = Deleter(client, options, report)
        self.seq = 0
        self.commit_lock = asyncio.Lock()
        self.archived_at = report.started_at or datetime.now(UTC)
        # Bytes in flight are bounded by uploads at once x one part each.
        part = max(1, storage.part_size)
        self.slots = asyncio.Semaphore(
            max(1, min(options.concurrency, options.max_bytes_in_flight // part))
        )

    async def execute(self, window: Window, stop: asyncio.Event | None) -> RunReport:
        t0 = time.monotonic()
        checkpoints = Checkpoints.for_window(
            None if self.options.dry_run else self.options.state_dir, window
        )
        try:
            await self.router.open_default()
            async for piece in list_slices(
                self.client,
                window,
                max_results=self.options.slice_max_results,
                page_size=self.options.page_size,
                skip=checkpoints.covers,
            ):
                self.report.slices_total += 1
                if self.progress:
                    self.progress.slices_planned(self.report.slices_total)
                before = (
                    self.report.recordings_archived,
                    self.report.recordings_deleted,
                    self.report.recordings_failed,
                )
                outcome = await self.archive_slice(piece)
                self.report.slices_done += 1
                if self.progress:
                    self.progress.slice_done()
                archived = self.report.recordings_archived - before[0]
                deleted = self.report.recordings_deleted - before[1]
                failed = self.report.recordings_failed - before[2]
                # Done means nothing of the slice is left in Telnyx; only then may a rerun skip it.
                if (
                    failed == 0
                    and outcome.held == 0
                    and deleted == archived
                    and self.deleter.enabled
                ):
                    checkpoints.mark_done(piece.since, piece.until)
                if stop is not None and stop.is_set():
                    self.report.errors.append("stopped on request after a complete slice")
                    break
        finally:
            self.report.finished_at = datetime.now(UTC)
            self.report.api_calls = self.client.stats.snapshot()
            duration = time.monotonic() - t0
            if not self.options.dry_run:
                await self.write_manifests(duration)
            await self.router.close()
        return self.report

    # -- one slice --------------------------------------------------------------------

    async def archive_slice(self, piece: Slice) -> _SliceOutcome:
        outcome = _SliceOutcome()
        report = self.report
        report.recordings_listed += len(piece.recordings)
        if self.progress:
            self.progress.recordings_found(len(piece.recordings))
        for bad in piece.malformed:
            self.fail(str(bad))
        self.on_stage("listed")

        by_recording = await self.list_transcriptions(piece)
        ids = {r.id for r in piece.recordings}
        now = datetime.now(UTC)

        work: list[tuple[Recording, Backend, list[Transcription]]] = []
        for rec in piece.recordings:
            try:
                safe_id(rec.id, "recording id")
                audio_key(rec, "mp3")  # validates connection_id and call_date too
            except UnsafeIdError as exc:
                self.fail(f"recording {str(rec.id)[:60]!r}: {exc}")
                continue
            transcriptions = by_recording.get(rec.id, [])
            if _in_progress(transcriptions) and _younger_than(
                rec, now, self.options.transcription_grace
            ):
                report.recordings_deferred += 1
                outcome.held += 1
                continue
            try:
                backend = await self.router.backend_for(rec.connection_id)
            except RoutingError:
                self.fail(None)
                continue
            if backend is None:
                report.recordings_skipped += 1
                outcome.held += 1
                note = f"connection {rec.connection_id}: no stored credential and no default destination; left in Telnyx"
                if note not in report.errors:
                    report.errors.append(note)
                continue
            work.append((rec, backend, transcriptions))

        orphans = await self.find_orphans(piece, by_recording, ids)
        if self.options.dry_run:
            report.recordings_planned += len(work)
            return outcome

        committer = _Committer(self, outcome)
        await asyncio.gather(
            *(self.store_one(rec, backend, ts, committer) for rec, backend, ts in work)
        )
        await committer.flush()
        if orphans:
            await self.archive_orphans(orphans)
        await asyncio.gather(*outcome.pending_deletes)
        return outcome

    async def list_transcriptions(self, piece: Slice) -> dict[str, list[Transcription]]:
        """One listing per slice, widened by the lag: fewer calls than one filter per recording."""
        found: dict[str, list[Transcription]] = defaultdict(list)
        lte = piece.until + self.options.transcription_lag - timedelta(milliseconds=1)

        def malformed(exc: MalformedItemError) -> None:
            self.report.errors.append(str(exc))

        async for t in self.client.list_transcriptions(
            created_at_gte=piece.since,
            created_at_lte=lte,
            page_size=self.options.page_size,
            on_malformed=malformed,
        ):
            try:
                # Its ids go into URLs ("..", "." survive quoting): a 404 there is no delete.
                safe_id(t.id, "transcription id")
                safe_id(t.recording_id, "its recording_id")
            except UnsafeIdError as exc:  # say so and leave it in Telnyx
                self.report.errors.append(
                    f"transcription {str(t.id)[:60]!r}: {exc}; left in Telnyx"
                )
                continue
            found[t.recording_id].append(t)
        return found

    async def find_orphans(
        self, piece: Slice, by_recording: dict[str, list[Transcription]], ids: set
    ) -> list[Transcription]:
        """Transcriptions created in this slice whose recording Telnyx no longer has."""
        suspects = [
            t
            for rid, ts in by_recording.items()
            if rid not in ids
            for t in ts
            if t.created_at is not None and piece.since <= t.created_at < piece.until
        ]
        orphans = []
        for t in suspects:
            try:
                await self.client.get_recording(t.recording_id)
            except NotFoundError:
                orphans.append(t)
            except TelnyxError as exc:
                self.report.errors.append(
                    f"transcription {t.id}: could not check its recording: {exc}"
                )
        return orphans

    async def store_one(
        self,
        rec: Recording,
        backend: Backend,
        transcriptions: list[Transcription],
        committer: _Committer,
    ) -> None:
        async with self.slots:
            day = call_date(rec)
            try:
                existing = await self.ledger.recording(backend, day, rec.id)
                if existing is not None:
                    audio = await self.check_committed_audio(rec, backend, existing)
                else:
                    fresh = FreshRecording(rec, time.monotonic())
                    audio = [
                        await store_audio(
                            self.client,
                            backend,
                            fresh,
                            f,
                            may_exist=await self.ledger.audio_may_exist(backend, audio_key(rec, f)),
                        )
                        for f in self.options.formats
                    ]
            except (AudioError, StorageError, UnsafeIdError) as exc:
                self.fail(str(exc))
                return
            self.report.bytes_uploaded += sum(a.size for a in audio if not a.reused)
            self.on_stage("stored")
        await committer.add(
            Verified(rec, backend, day, audio, transcriptions, existing is not None)
        )

    async def check_committed_audio(
        self, rec: Recording, backend: Backend, row: RowAudio
    ) -> list[StoredAudio]:
        """A row from an earlier run: its audio must still be there, as the row describes it."""
        found = []
        for fmt, (size, sha) in row.objects.items():
            key = audio_key(rec, fmt)
            if not matches(await backend.stat(key), size, sha):
                raise AudioError(
                    f"recording {rec.id}: its row exists but {backend.uri(key)} does not match it"
                )
            found.append(StoredAudio(fmt, key, backend.uri(key), size, sha, reused=True))
        return found

    # -- commit and delete ------------------------------------------------------------

    async def commit(self, batch: list[Verified], outcome: _SliceOutcome) -> None:
        """Write the missing rows, exactly once, then hand the batch to the deleter."""
        async with self.commit_lock:
            groups: dict[tuple[str, date], list[Verified]] = defaultdict(list)
            for item in batch:
                groups[(item.backend.root_uri(), item.day)].append(item)
            archived: list[Archived] = []
            for items in groups.values():
                backend, day = items[0].backend, items[0].day
                try:
                    rows_in = await self.write_rows(backend, day, items)
                except Exception as exc:  # whatever failed, nothing of this batch may be deleted
                    for item in items:
                        self.fail(f"recording {item.recording.id}: metadata not written: {exc}")
                    continue
                for item in items:
                    self.report.recordings_archived += 1
                    if self.progress:
                        self.progress.recording_done(sum(a.size for a in item.audio))
                    archived.append(
                        Archived(
                            item.recording.id, tuple(t.id for t in item.transcriptions), rows_in
                        )
                    )
            self.on_stage("committed")
        if archived:
            outcome.pending_deletes.append(asyncio.create_task(self.delete(archived)))

    async def delete(self, archived: list[Archived]) -> None:
        self.on_stage("deleting")
        await self.deleter.delete_archived(archived)
        self.on_stage("deleted")

    async def write_rows(self, backend: Backend, day: date, items: list[Verified]) -> str:
        new_transcriptions = [
            t
            for item in items
            for t in item.transcriptions
            if not await self.ledger.has_transcription(backend, day, t.id)
        ]
        if new_transcriptions:
            rows = [
                transcription_row(t, self.archived_at, self.report.run_id)
                for t in new_transcriptions
            ]
            await self.write_parquet(backend, "transcriptions", day, rows, TRANSCRIPTIONS_SCHEMA)
            self.ledger.add_transcriptions(backend, day, [t.id for t in new_transcriptions])
            self.report.transcriptions_archived += len(rows)
        rows = [
            recording_row(
                item.recording,
                [AudioColumns(a.format, a.uri, a.size, a.sha256) for a in item.audio],
                _primary(item.transcriptions),
                self.archived_at,
                self.report.run_id,
            )
            for item in items
            if not item.row_exists
            and await self.ledger.recording(backend, day, item.recording.id) is None
        ]
        if not rows:
            return "(rows committed earlier)"
        key = await self.write_parquet(backend, "recordings", day, rows, RECORDINGS_SCHEMA)
        self.ledger.add_recordings(backend, day, rows)
        return key

    async def write_parquet(self, backend: Backend, dataset: str, day: date, rows, schema) -> str:
        keys = []
        for start in range(0, len(rows), self.options.rows_per_file):
            self.seq += 1
            key = parquet_key(dataset, day, self.report.run_id, self.seq)
            data = to_parquet_bytes(rows[start : start + self.options.rows_per_file], schema)
            await backend.write_small(key, data, content_type="application/vnd.apache.parquet")
            stat = await backend.stat(key)
            if stat is None or stat.size != len(data):
                raise StorageError(f"{backend.uri(key)}: not readable back after writing")
            keys.append(key)
        return keys[-1]

    async def archive_orphans(self, orphans: list[Transcription]) -> None:
        backend = self.router.default
        if backend is None:
            for t in orphans:
                self.report.errors.append(
                    f"transcription {t.id}: its recording is gone and no default destination is set; left in Telnyx"
                )
            return
        done: list[ArchivedTranscription] = []
        async with self.commit_lock:
            by_day: dict[date, list[Transcription]] = defaultdict(list)
            for t in orphans:
                try:
                    safe_id(t.id, "transcription id")
                    by_day[transcription_partition_date(t)].append(t)
                except UnsafeIdError as exc:
                    self.report.errors.append(f"transcription {str(t.id)[:60]!r}: {exc}")
            for day, ts in by_day.items():
                fresh = [
                    t for t in ts if not await self.ledger.has_transcription(backend, day, t.id)
                ]
                try:
                    key = "(rows committed earlier)"
                    if fresh:
                        rows = [
                            transcription_row(t, self.archived_at, self.report.run_id)
                            for t in fresh
                        ]
                        key = await self.write_parquet(
                            backend, "transcriptions", day, rows, TRANSCRIPTIONS_SCHEMA
                        )
                        self.ledger.add_transcriptions(backend, day, [t.id for t in fresh])
                        self.report.transcriptions_archived += len(fresh)
                except Exception as exc:  # nothing of this batch may be deleted
                    self.report.errors.append(f"orphan transcriptions of {day}: not written: {exc}")
                    continue
                self.report.transcriptions_orphaned += len(ts)
                done += [ArchivedTranscription(t.id, key) for t in ts]
        await self.deleter.delete_orphans(done)

    # -- bookkeeping ------------------------------------------------------------------

    def fail(self, message: str | None) -> None:
        self.report.recordings_failed += 1
        if message:
            self.report.errors.append(message)
            log.error(message)
        if self.progress:
            self.progress.recording_failed()

    async def write_manifests(self, duration: float) -> None:
        body = manifest(self.report, duration)
        for backend in self.router.used:
            try:
                await backend.write_small(
                    manifest_key(self.report.run_id), body, content_type="application/json"
                )
            except (StorageError, OSError) as exc:
                self.report.errors.append(f"{backend.root_uri()}: run manifest not written: {exc}")


class _Committer:
    """Gathers verified recordings and commits them in batches, so deletes start early."""

    def __init__(self, run: _Run, outcome: _SliceOutcome) -> None:
        self._run = run
        self._outcome = outcome
        self._batch: list[Verified] = []
        self._oldest = 0.0

    async def add(self, item: Verified) -> None:
        if not self._batch:
            self._oldest = time.monotonic()
        self._batch.append(item)
        options = self._run.options
        if (
            len(self._batch) >= options.commit_every
            or time.monotonic() - self._oldest >= options.commit_interval
        ):
            await self.flush()

    async def flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            await self._run.commit(batch, self._outcome)


def _in_progress(transcriptions: list[Transcription]) -> bool:
    return any(t.status != "completed" for t in transcriptions)


def _younger_than(rec: Recording, now: datetime, age: timedelta) -> bool:
    created = rec.created_at or rec.recording_started_at
    return created is None or now - created < age


def _primary(transcriptions: list[Transcription]) -> Transcription | None:
    completed = [t for t in transcriptions if t.is_completed]
    return (completed or transcriptions or [None])[-1]


def manifest(report: RunReport, duration: float) -> bytes:
    data = asdict(report)
    data["duration_seconds"] = round(duration, 3)
    return json.dumps(data, default=_json_default, indent=2, sort_keys=True).encode()


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(type(value).__name__)
