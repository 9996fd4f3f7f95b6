"""`telnyx-archiver verify`: audit an archive at one destination.

Every recording row's audio must exist with its size and hash; every audio object must have
its row; no id may have two rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote

from pipeline.archive.parquet import read_columns
from pipeline.archive.verify import matches
from pipeline.storage.base import Backend


@dataclass
class AuditReport:
    rows: int = 0
    transcription_rows: int = 0
    audio_objects: int = 0
    missing_audio: list[str] = field(default_factory=list)  # row -> no object
    bad_audio: list[str] = field(default_factory=list)  # object differs from its row
    orphan_audio: list[str] = field(default_factory=list)  # object -> no row
    duplicate_rows: list[str] = field(default_factory=list)  # ids with more than one row

    @property
    def ok(self) -> bool:
        return not (
            self.missing_audio or self.bad_audio or self.orphan_audio or self.duplicate_rows
        )


def key_of(backend: Backend, uri: str) -> str:
    """The key behind one of the backend's URIs (file URIs percent-encode '=')."""
    return unquote(uri.removeprefix(backend.root_uri()))


async def _read_dataset(backend: Backend, dataset: str, columns: list[str]) -> list[dict]:
    rows: list[dict] = []
    for obj in await backend.list(f"{dataset}/"):
        if not obj.key.endswith(".parquet"):
            continue
        data = bytearray()
        async for chunk in backend.read_stream(obj.key):
            data += chunk
        rows += read_columns(bytes(data), columns).to_pylist()
    return rows


async def audit(backend: Backend) -> AuditReport:
    report = AuditReport()
    recordings = await _read_dataset(
        backend,
        "recordings",
        ["id", "audio_uri", "audio_size", "audio_sha256", "wav_uri", "wav_size", "wav_sha256"],
    )
    transcriptions = await _read_dataset(backend, "transcriptions", ["id"])
    report.rows = len(recordings)
    report.transcription_rows = len(transcriptions)
    for dataset, rows in (("recordings", recordings), ("transcriptions", transcriptions)):
        counts = Counter(r["id"] for r in rows)
        report.duplicate_rows += [f"{dataset}/{i}" for i, n in counts.items() if n > 1]

    objects = {o.key: o for o in await backend.list("audio/")}
    report.audio_objects = len(objects)
    referenced: set[str] = set()
    for row in recordings:
        for prefix in ("audio", "wav"):
            uri = row[f"{prefix}_uri"]
            if not uri:
                continue
            key = key_of(backend, uri)
            referenced.add(key)
            if key not in objects:
                report.missing_audio.append(uri)
            elif not matches(
                await backend.stat(key), row[f"{prefix}_size"], row[f"{prefix}_sha256"]
            ):
                report.bad_audio.append(uri)
    report.orphan_audio = sorted(backend.uri(k) for k in objects if k not in referenced)
    return report
