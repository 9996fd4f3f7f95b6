"""Deterministic object keys, built only from validated ids.

An id from the API ends up in an object key, so it is checked first: a hostile id such as
`../x` or `a/b` must never escape the destination's prefix.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from pipeline.telnyx.models import Recording, Transcription

# Telnyx ids are uuids or numeric strings; allow a little more, never a separator or a dot-dot.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-:.=+]{0,199}$")


class UnsafeIdError(ValueError):
    """An id that cannot be used in an object key."""


def safe_id(value: str | None, what: str) -> str:
    if not value:
        raise UnsafeIdError(f"{what} is missing")
    if ".." in value or not _SAFE_ID.match(value):
        raise UnsafeIdError(
            f"{what} {value[:60]!r} is not a safe id (only letters, digits and _-:.=+)"
        )
    return value


def call_date(recording: Recording) -> date:
    """The UTC date of recording_started_at, falling back to created_at."""
    moment: datetime | None = recording.recording_started_at or recording.created_at
    if moment is None:
        raise UnsafeIdError("recording has neither recording_started_at nor created_at")
    return moment.date()


def audio_key(recording: Recording, fmt: str) -> str:
    rid = safe_id(recording.id, "recording id")
    cid = safe_id(recording.connection_id, "connection_id")
    return f"audio/call_date={call_date(recording).isoformat()}/connection_id={cid}/{rid}.{fmt}"


def partition_prefix(dataset: str, day: date) -> str:
    return f"{dataset}/call_date={day.isoformat()}/"


def parquet_key(dataset: str, day: date, run_id: str, seq: int) -> str:
    return f"{partition_prefix(dataset, day)}part-{run_id}-{seq:05d}.parquet"


def manifest_key(run_id: str) -> str:
    return f"_runs/{run_id}.json"


def transcription_partition_date(transcription: Transcription) -> date:
    """Where an orphan transcription's row goes: its own created_at date (its recording is gone)."""
    if transcription.created_at is None:
        raise UnsafeIdError("transcription has no created_at")
    return transcription.created_at.date()
