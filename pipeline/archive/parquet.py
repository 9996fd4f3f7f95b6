"""The two metadata datasets, `recordings/` and `transcriptions/`, as typed Parquet.

Hive-partitioned by call_date (the partition is in the path, not in the file). Each file is
written whole and atomically by the backend's write_small.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.telnyx.models import Recording, Transcription

TS = pa.timestamp("us", tz="UTC")

RECORDINGS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("record_type", pa.string()),
        ("call_control_id", pa.string()),
        ("call_leg_id", pa.string()),
        ("call_session_id", pa.string()),
        ("conference_id", pa.string()),
        ("connection_id", pa.string()),
        ("channels", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("initiated_by", pa.string()),
        ("from", pa.string()),
        ("to", pa.string()),
        ("duration_millis", pa.int64()),
        ("recording_started_at", TS),
        ("recording_ended_at", TS),
        ("created_at", TS),
        ("updated_at", TS),
        ("audio_format", pa.string()),
        ("audio_uri", pa.string()),
        ("audio_size", pa.int64()),
        ("audio_sha256", pa.string()),
        ("wav_uri", pa.string()),
        ("wav_size", pa.int64()),
        ("wav_sha256", pa.string()),
        ("transcription_id", pa.string()),
        ("transcription_status", pa.string()),
        ("transcription_text", pa.string()),
        ("archived_at", TS),
        ("run_id", pa.string()),
    ]
)

TRANSCRIPTIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("record_type", pa.string()),
        ("recording_id", pa.string()),
        ("status", pa.string()),
        ("transcription_text", pa.string()),
        ("duration_millis", pa.int64()),
        ("created_at", TS),
        ("updated_at", TS),
        ("archived_at", TS),
        ("run_id", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class AudioColumns:
    format: str
    uri: str
    size: int
    sha256: str


def recording_row(
    rec: Recording,
    audio: Sequence[AudioColumns],
    transcription: Transcription | None,
    archived_at: datetime,
    run_id: str,
) -> dict:
    main = audio[0]
    wav = next((a for a in audio[1:] if a.format == "wav"), None)
    return {
        "id": rec.id,
        "record_type": rec.record_type,
        "call_control_id": rec.call_control_id,
        "call_leg_id": rec.call_leg_id,
        "call_session_id": rec.call_session_id,
        "conference_id": rec.conference_id,
        "connection_id": rec.connection_id,
        "channels": rec.channels,
        "source": rec.source,
        "status": rec.status,
        "initiated_by": rec.initiated_by,
        "from": rec.from_,
        "to": rec.to,
        "duration_millis": rec.duration_millis,
        "recording_started_at": rec.recording_started_at,
        "recording_ended_at": rec.recording_ended_at,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "audio_format": main.format,
        "audio_uri": main.uri,
        "audio_size": main.size,
        "audio_sha256": main.sha256,
        "wav_uri": wav.uri if wav else None,
        "wav_size": wav.size if wav else None,
        "wav_sha256": wav.sha256 if wav else None,
        "transcription_id": transcription.id if transcription else None,
        "transcription_status": transcription.status if transcription else None,
        "transcription_text": transcription.transcription_text if transcription else None,
        "archived_at": archived_at,
        "run_id": run_id,
    }


def transcription_row(t: Transcription, archived_at: datetime, run_id: str) -> dict:
    return {
        "id": t.id,
        "record_type": t.record_type,
        "recording_id": t.recording_id,
        "status": t.status,
        "transcription_text": t.transcription_text,
        "duration_millis": t.duration_millis,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "archived_at": archived_at,
        "run_id": run_id,
    }


def to_parquet_bytes(rows: Iterable[dict], schema: pa.Schema) -> bytes:
    table = pa.Table.from_pylist(list(rows), schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_columns(data: bytes, columns: Sequence[str]) -> pa.Table:
    return pq.read_table(io.BytesIO(data), columns=list(columns))


def partition_date(key: str) -> date | None:
    """call_date=YYYY-MM-DD out of a dataset key."""
    for part in key.split("/"):
        if part.startswith("call_date="):
            return date.fromisoformat(part.removeprefix("call_date="))
    return None
