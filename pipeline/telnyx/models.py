"""Typed values for what the Telnyx API returns.

Every field is optional, as in the spec. Unknown fields and unknown enum values are tolerated
(and logged once per name). A field of the wrong type makes the whole item malformed: the
listing reports it and goes on, and the item is never archived nor deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


class MalformedItemError(ValueError):
    """An API item that cannot be trusted: a field of the wrong type, or not an object at all."""

    def __init__(self, kind: str, item_id: str | None, reason: str) -> None:
        self.kind = kind
        self.item_id = item_id
        self.reason = reason
        shown = repr(item_id)[:80] if item_id is not None else "without id"
        super().__init__(f"malformed {kind} {shown}: {reason}")


class Secret:
    """A string that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, what: str) -> None:
    if (kind, what) not in _warned:
        _warned.add((kind, what))
        log.warning("tolerating unknown %s in %s", what, kind)


def parse_timestamp(value: Any, *, kind: str = "item", name: str = "timestamp") -> datetime | None:
    """ISO 8601 string -> aware UTC datetime. None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedItemError(kind, None, f"{name} is not a string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedItemError(kind, None, f"{name} is not ISO 8601: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class _Reader:
    """Reads typed fields out of one API object, naming the field on failure."""

    def __init__(self, kind: str, raw: Any, known: frozenset[str]) -> None:
        if not isinstance(raw, dict):
            raise MalformedItemError(kind, None, f"expected an object, got {type(raw).__name__}")
        self.kind = kind
        self.raw = raw
        ident = raw.get("id")
        self.id = ident if isinstance(ident, str) else None
        for name in raw:
            if name not in known:
                _warn_once(kind, f"field {str(name)[:40]!r}")

    def _fail(self, reason: str) -> MalformedItemError:
        return MalformedItemError(self.kind, self.id, reason)

    def str(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None or isinstance(value, str):
            return value
        raise self._fail(f"{name} is not a string")

    def enum(self, name: str, allowed: frozenset[str]) -> str | None:
        value = self.str(name)
        if value is not None and value not in allowed:
            _warn_once(self.kind, f"{name} value {value[:40]!r}")
        return value

    def int(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(f"{name} is not an integer")
        if not -(2**63) <= value < 2**63:
            raise self._fail(f"{name} is out of range")
        return value

    def time(self, name: str) -> datetime | None:
        try:
            return parse_timestamp(self.raw.get(name), kind=self.kind, name=name)
        except MalformedItemError as exc:
            raise self._fail(exc.reason) from None


@dataclass(frozen=True, slots=True)
class DownloadUrls:
    mp3: str | None = None
    wav: str | None = None

    def for_format(self, fmt: str) -> str | None:
        return {"mp3": self.mp3, "wav": self.wav}.get(fmt)


_RECORDING_FIELDS = frozenset(
    "id record_type call_control_id call_leg_id call_session_id conference_id connection_id "
    "channels source status initiated_by from to duration_millis recording_started_at "
    "recording_ended_at created_at updated_at download_urls".split()
)

# Built once, not per item: a listing parses every recording through these.
_DOWNLOAD_URL_FIELDS = frozenset({"mp3", "wav"})
_RECORD_TYPES = frozenset({"recording"})
_CHANNELS = frozenset({"single", "dual"})
_SOURCES = frozenset({"conference", "call"})
_RECORDING_STATUSES = frozenset({"completed"})


@dataclass(frozen=True, slots=True)
class Recording:
    id: str | None = None
    record_type: str | None = None
    call_control_id: str | None = None
    call_leg_id: str | None = None
    call_session_id: str | None = None
    conference_id: str | None = None
    connection_id: str | None = None
    channels: str | None = None
    source: str | None = None
    status: str | None = None
    initiated_by: str | None = None
    from_: str | None = None
    to: str | None = None
    duration_millis: int | None = None
    recording_started_at: datetime | None = None
    recording_ended_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    download_urls: DownloadUrls = field(default_factory=DownloadUrls)

    @classmethod
    def from_api(cls, raw: Any) -> Recording:
        r = _Reader("recording", raw, _RECORDING_FIELDS)
        urls_raw = raw.get("download_urls")
        if urls_raw is None:
            urls = DownloadUrls()
        elif isinstance(urls_raw, dict):
            u = _Reader("recording.download_urls", urls_raw, _DOWNLOAD_URL_FIELDS)
            try:
                urls = DownloadUrls(mp3=u.str("mp3"), wav=u.str("wav"))
            except MalformedItemError as exc:
                raise MalformedItemError("recording", r.id, exc.reason) from None
        else:
            raise MalformedItemError("recording", r.id, "download_urls is not an object")
        return cls(
            id=r.str("id"),
            record_type=r.enum("record_type", _RECORD_TYPES),
            call_control_id=r.str("call_control_id"),
            call_leg_id=r.str("call_leg_id"),
            call_session_id=r.str("call_session_id"),
            conference_id=r.str("conference_id"),
            connection_id=r.str("connection_id"),
            channels=r.enum("channels", _CHANNELS),
            source=r.enum("source", _SOURCES),
            status=r.enum("status", _RECORDING_STATUSES),
            initiated_by=r.str("initiated_by"),
            from_=r.str("from"),
            to=r.str("to"),
            duration_millis=r.int("duration_millis"),
            recording_started_at=r.time("recording_started_at"),
            recording_ended_at=r.time("recording_ended_at"),
            created_at=r.time("created_at"),
            updated_at=r.time("updated_at"),
            download_urls=urls,
        )


_TRANSCRIPTION_FIELDS = frozenset(
    "id record_type recording_id status transcription_text duration_millis created_at updated_at".split()
)

_TRANSCRIPTION_RECORD_TYPES = frozenset({"recording_transcription"})
_TRANSCRIPTION_STATUSES = frozenset({"in-progress", "completed"})


@dataclass(frozen=True, slots=True)
class Transcription:
    """A recording transcription (`RecordingTranscription` in the spec)."""

    id: str | None = None
    record_type: str | None = None
    recording_id: str | None = None
    status: str | None = None
    transcription_text: str | None = None
    duration_millis: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_completed(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_api(cls, raw: Any) -> Transcription:
        r = _Reader("transcription", raw, _TRANSCRIPTION_FIELDS)
        return cls(
            id=r.str("id"),
            record_type=r.enum("record_type", _TRANSCRIPTION_RECORD_TYPES),
            recording_id=r.str("recording_id"),
            status=r.enum("status", _TRANSCRIPTION_STATUSES),
            transcription_text=r.str("transcription_text"),
            duration_millis=r.int("duration_millis"),
            created_at=r.time("created_at"),
            updated_at=r.time("updated_at"),
        )


BACKENDS = ("s3", "s3-generic", "gcs", "azure")


@dataclass(frozen=True, slots=True)
class S3Configuration:
    bucket: str
    region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: Secret | None = None
    endpoint: str | None = None  # only for s3-generic


@dataclass(frozen=True, slots=True)
class GCSConfiguration:
    bucket: str
    credentials: Secret | None = None  # the service-account JSON, as a string


@dataclass(frozen=True, slots=True)
class AzureConfiguration:
    bucket: str  # the container
    account_name: str | None = None
    account_key: Secret | None = None


@dataclass(frozen=True, slots=True)
class StorageCredential:
    """The custom storage credential a connection has stored at Telnyx."""

    connection_id: str | None
    backend: str
    configuration: S3Configuration | GCSConfiguration | AzureConfiguration

    @property
    def bucket(self) -> str:
        return self.configuration.bucket

    @classmethod
    def from_api(cls, body: Any, *, connection_id: str | None = None) -> StorageCredential:
        """Parse a `CredentialsResponse`: `connection_id` and `record_type` sit beside `data`."""
        kind = "storage credential"
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise MalformedItemError(kind, connection_id, "no data object")
        top = body.get("connection_id")
        if top is not None and not isinstance(top, str):
            raise MalformedItemError(kind, connection_id, "connection_id is not a string")
        data = body["data"]
        conf = data.get("configuration")
        if not isinstance(conf, dict):
            raise MalformedItemError(kind, connection_id, "configuration is not an object")
        backend = data.get("backend") or conf.get("backend")
        if backend not in BACKENDS:
            raise MalformedItemError(kind, connection_id, f"unknown backend {str(backend)[:40]!r}")
        r = _Reader(
            kind,
            conf,
            frozenset(
                "backend bucket region aws_access_key_id aws_secret_access_key endpoint "
                "credentials account_name account_key".split()
            ),
        )
        bucket = r.str("bucket")
        if not bucket:
            raise MalformedItemError(kind, connection_id, "bucket is missing")

        def secret(name: str) -> Secret | None:
            value = r.str(name)
            return Secret(value) if value is not None else None

        configuration: S3Configuration | GCSConfiguration | AzureConfiguration
        if backend in ("s3", "s3-generic"):
            endpoint = r.str("endpoint")
            if backend == "s3-generic" and not endpoint:
                raise MalformedItemError(kind, connection_id, "s3-generic needs an endpoint")
            configuration = S3Configuration(
                bucket=bucket,
                region=r.str("region"),
                aws_access_key_id=r.str("aws_access_key_id"),
                aws_secret_access_key=secret("aws_secret_access_key"),
                endpoint=endpoint,
            )
        elif backend == "gcs":
            configuration = GCSConfiguration(bucket=bucket, credentials=secret("credentials"))
        else:
            configuration = AzureConfiguration(
                bucket=bucket, account_name=r.str("account_name"), account_key=secret("account_key")
            )
        return cls(connection_id=top or connection_id, backend=backend, configuration=configuration)

    def to_api(self) -> dict[str, Any]:
        """The request body for create/update (`CustomStorageConfiguration`)."""
        c = self.configuration
        conf: dict[str, Any] = {"backend": self.backend, "bucket": c.bucket}
        if isinstance(c, S3Configuration):
            conf.update(region=c.region, aws_access_key_id=c.aws_access_key_id)
            if c.aws_secret_access_key is not None:
                conf["aws_secret_access_key"] = c.aws_secret_access_key.reveal()
            if c.endpoint:
                conf["endpoint"] = c.endpoint
        elif isinstance(c, GCSConfiguration):
            if c.credentials is not None:
                conf["credentials"] = c.credentials.reveal()
        else:
            conf["account_name"] = c.account_name
            if c.account_key is not None:
                conf["account_key"] = c.account_key.reveal()
        return {
            "backend": self.backend,
            "configuration": {k: v for k, v in conf.items() if v is not None},
        }
