"""Exactly once: which ids already have a metadata row at a destination.

The Parquet datasets are themselves the commit log. Each file is written whole and atomically,
so a row exists if and only if its file does. Before writing rows into a call_date partition,
the run reads the ids already in that partition (once per run, then keeps the set up to date
with its own writes) and writes only the missing rows. A rerun after a crash at any instant
therefore never writes a row twice, and needs no state outside the destination.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date

from pipeline.archive.keys import partition_prefix
from pipeline.archive.parquet import read_columns
from pipeline.storage.base import Backend


@dataclass(frozen=True, slots=True)
class RowAudio:
    """The audio a committed recording row points at, per format: (size, sha256)."""

    objects: dict[str, tuple[int, str]]


class Ledger:
    def __init__(self) -> None:
        self._recordings: dict[tuple[str, date], dict[str, RowAudio]] = {}
        self._transcriptions: dict[tuple[str, date], set[str]] = {}
        self._locks: dict[tuple[str, str, date], asyncio.Lock] = {}
        self._audio: dict[tuple[str, str], set[str]] = {}
        self._audio_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def recording(self, backend: Backend, day: date, recording_id: str) -> RowAudio | None:
        rows = await self._load_recordings(backend, day)
        return rows.get(recording_id)

    async def has_transcription(self, backend: Backend, day: date, transcription_id: str) -> bool:
        ids = await self._load_transcriptions(backend, day)
        return transcription_id in ids

    async def audio_may_exist(self, backend: Backend, key: str) -> bool:
        """False if the key's folder, listed once per run, did not hold it: then a first upload
        needs no HEAD of its own (one LIST per folder instead of one HEAD per object)."""
        where = (backend.root_uri(), key.rpartition("/")[0] + "/")
        async with self._audio_locks.setdefault(where, asyncio.Lock()):
            if where not in self._audio:
                self._audio[where] = {obj.key for obj in await backend.list(where[1])}
        return key in self._audio[where]

    def add_recordings(self, backend: Backend, day: date, rows: list[dict]) -> None:
        known = self._recordings.setdefault((backend.root_uri(), day), {})
        for row in rows:
            known[row["id"]] = _row_audio(row)

    def add_transcriptions(self, backend: Backend, day: date, ids: list[str]) -> None:
        self._transcriptions.setdefault((backend.root_uri(), day), set()).update(ids)

    def _lock(self, backend: Backend, dataset: str, day: date) -> asyncio.Lock:
        return self._locks.setdefault((backend.root_uri(), dataset, day), asyncio.Lock())

    async def _load_recordings(self, backend: Backend, day: date) -> dict[str, RowAudio]:
        where = (backend.root_uri(), day)
        async with self._lock(backend, "recordings", day):
            if where not in self._recordings:
                rows: dict[str, RowAudio] = {}
                columns = [
                    "id",
                    "audio_format",
                    "audio_size",
                    "audio_sha256",
                    "wav_size",
                    "wav_sha256",
                ]
                for table in await _read_partition(backend, "recordings", day, columns):
                    for row in table.to_pylist():
                        rows[row["id"]] = _row_audio(row)
                self._recordings[where] = rows
            return self._recordings[where]

    async def _load_transcriptions(self, backend: Backend, day: date) -> set[str]:
        where = (backend.root_uri(), day)
        async with self._lock(backend, "transcriptions", day):
            if where not in self._transcriptions:
                ids: set[str] = set()
                for table in await _read_partition(backend, "transcriptions", day, ["id"]):
                    ids.update(table.column("id").to_pylist())
                self._transcriptions[where] = ids
            return self._transcriptions[where]


def _row_audio(row: dict) -> RowAudio:
    objects = {row["audio_format"]: (row["audio_size"], row["audio_sha256"])}
    if row.get("wav_sha256") and row["audio_format"] != "wav":
        objects["wav"] = (row["wav_size"], row["wav_sha256"])
    return RowAudio(objects)


async def _read_partition(backend: Backend, dataset: str, day: date, columns: list[str]):
    tables = []
    for obj in await backend.list(partition_prefix(dataset, day)):
        if not obj.key.endswith(".parquet"):
            continue
        data = bytearray()
        async for chunk in backend.read_stream(obj.key):
            data += chunk
        tables.append(read_columns(bytes(data), columns))
    return tables
