"""The sandbox's mutable world: what remains, what was deleted, credentials, request counts."""

from __future__ import annotations

import base64
import bisect
import functools
import hmac
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.sandbox.audio import audio_digest
from pipeline.sandbox.config import SandboxConfig
from pipeline.sandbox.data import generate, iso, parse_served
from pipeline.sandbox.faults import Faults

Key = tuple[datetime, str]  # every list is ordered by (created_at, id)

BACKEND_REQUIRED = {
    "gcs": ("backend",),
    "azure": ("backend",),
    "s3": ("backend", "bucket", "region", "aws_access_key_id", "aws_secret_access_key"),
    "s3-generic": (
        "backend",
        "bucket",
        "region",
        "endpoint",
        "aws_access_key_id",
        "aws_secret_access_key",
    ),
}


class InvalidRequest(ValueError):
    """A request the real service would refuse with 422; names the offending parameter."""

    def __init__(
        self, detail: str, parameter: str | None = None, pointer: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter
        self.pointer = pointer


@dataclass(frozen=True, slots=True)
class Page:
    """One cursor page, and whether items remain before and after it."""

    items: list[dict[str, Any]]
    has_before: bool = False
    has_after: bool = False


def encode_cursor(key: Key) -> str:
    raw = json.dumps([iso(key[0]), key[1]], separators=(",", ":")).encode()
    return "v1:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, parameter: str) -> Key:
    try:
        if not text.startswith("v1:"):
            raise ValueError
        body = text[3:]
        created, ident = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return parse_served(created), str(ident)
    except (ValueError, TypeError):
        raise InvalidRequest("The cursor is not valid.", parameter) from None


def validate_credentials_body(body: Any) -> dict[str, Any]:
    """A CustomStorageConfiguration, checked as the spec's schema does; returns a clean copy."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", pointer="/")
    backend = body.get("backend")
    if backend not in BACKEND_REQUIRED:
        raise InvalidRequest(
            f"backend must be one of {sorted(BACKEND_REQUIRED)}.", pointer="/backend"
        )
    conf = body.get("configuration")
    if not isinstance(conf, dict):
        raise InvalidRequest("configuration must be an object.", pointer="/configuration")
    conf = dict(conf)
    conf.setdefault("backend", backend)  # Telnyx's own docs omit it in examples
    if conf["backend"] != backend:
        raise InvalidRequest(
            "configuration.backend must equal backend.", pointer="/configuration/backend"
        )
    for name in BACKEND_REQUIRED[backend]:
        if not isinstance(conf.get(name), str) or not conf[name]:
            raise InvalidRequest(f"{name} is required.", pointer=f"/configuration/{name}")
    for name, value in conf.items():
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string.", pointer=f"/configuration/{name}")
    if backend == "s3-generic" and not conf["endpoint"].startswith(("http://", "https://")):
        raise InvalidRequest("endpoint must use http or https.", pointer="/configuration/endpoint")
    return {"backend": backend, "configuration": conf}


@functools.lru_cache(maxsize=2)
def _link_params(issued: int, ttl: float) -> tuple[str, str, str]:
    """X-Amz-Date, X-Amz-Expires and the unsigned query of links issued in one second.

    Every link of a list page shares them, so they are formatted once, not per link.
    """
    date = datetime.fromtimestamp(issued, UTC).strftime("%Y%m%dT%H%M%SZ")
    expires = str(int(ttl)) if float(ttl).is_integer() else repr(float(ttl))
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=SANDBOX%2F{date[:8]}%2Fsandbox%2Fs3%2Faws4_request"
        f"&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
    )
    return date, expires, query


class SandboxState:
    """Direct access for tests; the HTTP app reads and changes only this."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        data = generate(config)
        self.window = data.window
        self.connection_ids: list[str] = data.connection_ids
        self.recordings: dict[str, dict[str, Any]] = data.recordings  # remaining only
        self.transcriptions: dict[str, dict[str, Any]] = data.transcriptions
        self.deleted_recording_ids: set[str] = set()
        self.deleted_transcription_ids: set[str] = set()
        self.request_counts: Counter[str] = Counter()
        self.faults = Faults(config)
        self._all_recordings = dict(data.recordings)  # deleted ones too: their audio digests
        self._hidden = data.hidden
        self._created = data.created
        self._times = data.times
        self._rec_order: list[Key] = sorted((self._created[i], i) for i in self.recordings)
        self._tr_order: list[Key] = sorted((self._created[i], i) for i in self.transcriptions)
        self._link_secret = os.urandom(32)
        self._clock_offset = 0.0
        self.credentials: dict[str, dict[str, Any]] = {}
        for conn, body in config.credentials.items():
            # "#0", "#1", ... name the generated connections, whose ids depend on the seed.
            if conn.startswith("#") and conn[1:].isdigit():
                conn = self.connection_ids[int(conn[1:]) % len(self.connection_ids)]
            self.known_connection(conn)
            self.credentials[conn] = validate_credentials_body(body)

    # -- clock: tests move it forward instead of sleeping ---------------------------------
    def now(self) -> float:
        return time.time() + self._clock_offset

    def monotonic(self) -> float:
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        self._clock_offset += seconds

    # -- lookups -----------------------------------------------------------------------------
    def known_connection(self, connection_id: str) -> None:
        if connection_id not in self.connection_ids:
            self.connection_ids.append(connection_id)

    def recording_was_created(self, recording_id: str) -> bool:
        return recording_id in self._all_recordings

    def audio_digest(self, recording_id: str, fmt: str) -> tuple[int, str]:
        """(size, sha256 hex) of a recording's mp3 or wav, also after it was deleted."""
        rec = self._all_recordings[recording_id]
        return audio_digest(
            self.config.seed, recording_id, fmt, self.config.audio_bytes, self.channels(rec)
        )

    @staticmethod
    def channels(rec: dict[str, Any]) -> int:
        return 2 if rec.get("channels") == "dual" else 1

    # -- download links ----------------------------------------------------------------------
    def _signature(self, name: str, date: str, expires: str) -> str:
        msg = f"{name}\n{date}\n{expires}".encode()
        return hmac.digest(self._link_secret, msg, "sha256").hex()

    def download_query(self, name: str) -> str:
        """Query string of a fresh presigned-style link for `<id>.<fmt>`."""
        date, expires, query = _link_params(int(self.now()), self.config.link_ttl)
        return f"{query}&X-Amz-Signature={self._signature(name, date, expires)}"

    def check_link(self, name: str, query: dict[str, str]) -> tuple[str, float]:
        """'ok', 'expired', 'denied' or 'signature' and the link's expiry (epoch seconds)."""
        date, expires, sig = (
            query.get(k) for k in ("X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature")
        )
        if not (date and expires and sig):
            return "denied", 0.0
        if not hmac.compare_digest(sig, self._signature(name, date, expires)):
            return "signature", 0.0
        issued = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        # X-Amz-Date has whole seconds: counting from the end of that second gives every link at
        # least link_ttl seconds (and less than link_ttl + 1), even a 1-second one.
        expiry = issued + 1 + float(expires)
        return ("expired" if self.now() >= expiry else "ok"), expiry

    # -- recordings ---------------------------------------------------------------------------
    def list_recordings(
        self,
        *,
        created_gte: datetime | None = None,
        created_lte: datetime | None = None,
        start_gte: datetime | None = None,
        start_lte: datetime | None = None,
        end_gte: datetime | None = None,
        end_lte: datetime | None = None,
        equals: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Every remaining recording matching the filters, in (created_at, id) order."""
        equals = equals or {}
        out = []
        for _, rid in self._range(self._rec_order, created_gte, created_lte):
            rec = self.recordings[rid]
            started, ended = self._times[rid]
            if (start_gte and started < start_gte) or (start_lte and started > start_lte):
                continue
            if (end_gte and ended < end_gte) or (end_lte and ended > end_lte):
                continue
            hidden = self._hidden[rid]
            if all(rec.get(k, hidden.get(k)) == v for k, v in equals.items()):
                out.append(rec)
        return out

    def recordings_page(
        self, number: int, size: int, **filters: Any
    ) -> tuple[list[dict[str, Any]], int]:
        """One page-number page and the total: positions shift when earlier items are deleted."""
        start = (number - 1) * size
        if set(filters) <= {"created_gte", "created_lte"}:  # fast path: a slice of the order
            lo, hi = self._bounds(
                self._rec_order, filters.get("created_gte"), filters.get("created_lte")
            )
            keys = self._rec_order[min(lo + start, hi) : min(lo + start + size, hi)]
            return [self.recordings[rid] for _, rid in keys], hi - lo
        matched = self.list_recordings(**filters)
        return matched[start : start + size], len(matched)

    def delete_recordings(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Delete those that remain; ids already gone are ignored. Returns what was deleted."""
        gone = []
        for rid in ids:
            rec = self.recordings.pop(rid, None)
            if rec is None:
                continue
            self._remove(self._rec_order, (self._created[rid], rid))
            self.deleted_recording_ids.add(rid)
            gone.append(rec)
        return gone

    # -- transcriptions -------------------------------------------------------------------------
    def _transcription_keys(
        self, created_gte: datetime | None, created_lte: datetime | None, recording_id: str | None
    ) -> list[Key]:
        keys = self._range(self._tr_order, created_gte, created_lte)
        if recording_id is not None:
            keys = [k for k in keys if self.transcriptions[k[1]]["recording_id"] == recording_id]
        return keys

    def list_transcriptions(
        self,
        *,
        created_gte: datetime | None = None,
        created_lte: datetime | None = None,
        recording_id: str | None = None,
    ) -> list[dict[str, Any]]:
        keys = self._transcription_keys(created_gte, created_lte, recording_id)
        return [self.transcriptions[k[1]] for k in keys]

    def transcription_keyset_page(
        self,
        size: int,
        *,
        after: Key | None = None,
        before: Key | None = None,
        offset: int | None = None,
        created_gte: datetime | None = None,
        created_lte: datetime | None = None,
        recording_id: str | None = None,
    ) -> Page:
        """A cursor page: stable under deletion because it starts after a key, not a position."""
        keys = self._transcription_keys(created_gte, created_lte, recording_id)
        if after is not None:
            lo = bisect.bisect_right(keys, after)
            hi = min(lo + size, len(keys))
        elif before is not None:
            hi = bisect.bisect_left(keys, before)
            lo = max(hi - size, 0)
        else:
            lo = min(offset or 0, len(keys))
            hi = min(lo + size, len(keys))
        items = [self.transcriptions[k[1]] for k in keys[lo:hi]]
        return Page(
            items, has_before=lo > 0 and bool(items), has_after=hi < len(keys) and bool(items)
        )

    def transcription_key(self, tr: dict[str, Any]) -> Key:
        return (self._created[tr["id"]], tr["id"])

    def delete_transcription(self, tid: str) -> dict[str, Any] | None:
        tr = self.transcriptions.pop(tid, None)
        if tr is not None:
            self._remove(self._tr_order, (self._created[tid], tid))
            self.deleted_transcription_ids.add(tid)
        return tr

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _bounds(order: list[Key], gte: datetime | None, lte: datetime | None) -> tuple[int, int]:
        lo = bisect.bisect_left(order, (gte, "")) if gte else 0
        # "\U0010ffff" sorts after every id, so lte is inclusive of ties on created_at
        hi = bisect.bisect_right(order, (lte, "\U0010ffff")) if lte else len(order)
        return lo, max(lo, hi)

    @classmethod
    def _range(cls, order: list[Key], gte: datetime | None, lte: datetime | None) -> list[Key]:
        lo, hi = cls._bounds(order, gte, lte)
        return order[lo:hi]

    @staticmethod
    def _remove(order: list[Key], key: Key) -> None:
        i = bisect.bisect_left(order, key)
        if i < len(order) and order[i] == key:
            del order[i]

    def snapshot(self) -> dict[str, Any]:
        """GET /_sandbox/state."""

        def ordered(ids: Iterable[str]) -> list[str]:
            return [i for _, i in sorted((self._created[i], i) for i in ids)]

        return {
            "recordings": {
                "remaining": [i for _, i in self._rec_order],
                "deleted": ordered(self.deleted_recording_ids),
            },
            "transcriptions": {
                "remaining": [i for _, i in self._tr_order],
                "deleted": ordered(self.deleted_transcription_ids),
            },
            "connection_ids": list(self.connection_ids),
            "credentials": sorted(self.credentials),
            "requests": dict(sorted(self.request_counts.items())),
            "config": self.config.public(),
        }
