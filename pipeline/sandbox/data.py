"""Deterministic, realistic recordings and transcriptions from (config, seed)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.sandbox.config import SandboxConfig

INITIATED_BY_CALL = ("DialVerb", "OutboundAPI", "Trunking", "RecordVerb", "StartCallRecordingAPI")
INITIATED_BY_CONFERENCE = ("Conference", "StartConferenceRecordingAPI")
CONFERENCE_REGIONS = ("us", "eu", "au")
VOCABULARY = (
    "hello good morning thanks for calling how may I help you today my order number is "
    "please hold while I check the account balance refund delivery tomorrow address "
    "confirm appointment invoice sorry about that wonderful have a nice day goodbye"
).split()
COUNTRY_FORMATS = (("+1", 10), ("+1", 10), ("+1", 10), ("+44", 10), ("+49", 11), ("+61", 9))


def iso(t: datetime) -> str:
    """Telnyx style: UTC with milliseconds and a Z."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_anchor() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Dataset:
    connection_ids: list[str]
    recordings: dict[str, dict[str, Any]]  # id -> spec body without download_urls
    hidden: dict[str, dict[str, str]]  # id -> attributes Telnyx filters on but does not return
    transcriptions: dict[str, dict[str, Any]]
    created: dict[str, datetime] = field(default_factory=dict)  # recording and transcription ids
    times: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)  # started, ended
    window: tuple[datetime, datetime] = (
        datetime.min,
        datetime.min,
    )  # [start, end) of recordings' created_at


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _phone(rng: random.Random) -> str:
    prefix, digits = rng.choice(COUNTRY_FORMATS)
    if prefix == "+1":  # NANP: area code and exchange never start with 0/1; 555 is fictional
        return f"+1{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}"
    # E.164: no trunk prefix 0 right after the country code
    return prefix + str(rng.randrange(10 ** (digits - 1), 10**digits))


def _duration_ms(rng: random.Random) -> int:
    # Most calls are short, a few run long: log-normal around 90 s, clipped to 2 s .. 2 h.
    return int(min(max(rng.lognormvariate(11.4, 1.0), 2_000), 7_200_000))


def generate(config: SandboxConfig) -> Dataset:
    rng = random.Random(config.seed)
    anchor = config.anchor or default_anchor()
    anchor = anchor.replace(tzinfo=UTC) if anchor.tzinfo is None else anchor.astimezone(UTC)
    # Whole milliseconds everywhere, so the datetimes kept equal the ones served (ms precision).
    anchor = anchor.replace(microsecond=anchor.microsecond // 1000 * 1000)
    window_end = anchor - timedelta(days=1)
    window_start = window_end - timedelta(days=config.days)
    span_ms = int((window_end - window_start).total_seconds() * 1000)

    connection_ids = [str(rng.randint(10**17, 10**18 - 1)) for _ in range(config.connections)]
    recordings: dict[str, dict[str, Any]] = {}
    hidden: dict[str, dict[str, str]] = {}
    transcriptions: dict[str, dict[str, Any]] = {}
    created: dict[str, datetime] = {}
    times: dict[str, tuple[datetime, datetime]] = {}

    previous: datetime | None = None
    for _ in range(config.recordings):
        rec_id = _uuid(rng)
        # About 2% share their created_at with another recording, so ties in the sort key occur.
        if previous is not None and rng.random() < 0.02:
            created_at = previous
        else:
            created_at = window_start + timedelta(milliseconds=rng.randrange(span_ms))
        previous = created_at
        duration = _duration_ms(rng)
        ended = created_at - timedelta(milliseconds=rng.randint(0, 30_000))
        started = ended - timedelta(milliseconds=duration)
        conference = rng.random() < 0.2
        body: dict[str, Any] = {
            "id": rec_id,
            "record_type": "recording",
            "call_control_id": "v3:" + rng.randbytes(30).hex()[:54],
            "call_leg_id": _uuid(rng),
            "call_session_id": _uuid(rng),
            "connection_id": rng.choice(connection_ids),
            "channels": "dual" if rng.random() < 0.6 else "single",
            "source": "conference" if conference else "call",
            "status": "completed",
            "initiated_by": rng.choice(
                INITIATED_BY_CONFERENCE if conference else INITIATED_BY_CALL
            ),
            "from": _phone(rng),
            "to": _phone(rng),
            "duration_millis": duration,
            "recording_started_at": iso(started),
            "recording_ended_at": iso(ended),
            "created_at": iso(created_at),
            "updated_at": iso(created_at + timedelta(milliseconds=rng.randint(0, 2_000))),
        }
        extra = {"sip_call_id": f"{rng.getrandbits(64):016x}@sip.sandbox.invalid"}
        if conference:
            body["conference_id"] = _uuid(rng)
            extra["conference_region"] = rng.choice(CONFERENCE_REGIONS)
        recordings[rec_id] = body
        hidden[rec_id] = extra
        created[rec_id] = created_at
        times[rec_id] = (started, ended)

        if rng.random() < config.transcription_ratio:
            tr_id = _uuid(rng)
            tr_created = created[rec_id] + timedelta(seconds=rng.randint(20, 50 * 60))
            tr: dict[str, Any] = {
                "id": tr_id,
                "record_type": "recording_transcription",
                "recording_id": rec_id,
                "status": "completed",
                "duration_millis": duration,
                "created_at": iso(tr_created),
                "updated_at": iso(tr_created + timedelta(seconds=rng.randint(0, 120))),
            }
            if rng.random() < config.in_progress_ratio:
                tr["status"] = "in-progress"
            else:
                words = [rng.choice(VOCABULARY) for _ in range(rng.randint(3, 12))]
                text = " ".join(words)
                tr["transcription_text"] = text[0].upper() + text[1:] + "."
            transcriptions[tr_id] = tr
            created[tr_id] = tr_created
    return Dataset(
        connection_ids,
        recordings,
        hidden,
        transcriptions,
        created,
        times,
        (window_start, window_end),
    )


def parse_served(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
