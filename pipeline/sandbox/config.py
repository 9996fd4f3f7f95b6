"""Settings of one sandbox: the data it generates and the faults it injects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

TRANSCRIPTION_PAGINATION = ("cursor", "page")


@dataclass
class SandboxConfig:
    """Everything the sandbox does is decided by these fields; same values, same answers.

    The data fields (recordings .. credentials) are read once, when the state is built.
    The behaviour fields (api_key, link_ttl, transcription_pagination, rate limit, latency,
    faults) are read on every request, so tests may flip them on a running server.
    """

    recordings: int = 300
    seed: int = 1
    api_key: str = field(default="sandbox-key", repr=False)
    connections: int = 4
    days: int = 7
    anchor: datetime | None = None  # default: today 00:00 UTC
    audio_bytes: int = 64 * 1024  # size of each recording's mp3 and of its wav
    link_ttl: float = 600.0  # seconds a download link stays valid
    transcription_pagination: str = "cursor"  # or "page"
    transcription_ratio: float = 0.7  # share of recordings that have a transcription
    in_progress_ratio: float = 0.15  # share of those transcriptions still in progress
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    rate_limit: float | None = None  # requests per second; None = unlimited
    rate_burst: int = 10
    retry_after_header: bool = False
    rate_reset_fractional: bool = False  # x-ratelimit-reset as "0.25" instead of "1"
    latency: float = 0.0  # seconds before each /v2 answer
    audio_latency: float = 0.0  # seconds before the first byte of an audio download
    fault_seed: int = 0
    fault_5xx: float = 0.0  # share of /v2 calls answered 500 and 503 in turn
    fault_reset: float = 0.0  # share of /v2 calls and downloads whose connection is dropped
    fault_truncate: float = 0.0  # share of downloads cut short after a 200
    fault_expire: float = 0.0  # share of fresh download links answered 403 "expired"
    fault_partial_delete: float = 0.0  # share of bulk deletes that delete some ids, then 500

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.recordings < 0 or self.connections < 1 or self.days < 1:
            raise ValueError("recordings >= 0, connections >= 1 and days >= 1 are required")
        if self.audio_bytes < 0:
            raise ValueError("audio_bytes must be >= 0")
        if self.transcription_pagination not in TRANSCRIPTION_PAGINATION:
            raise ValueError(f"transcription_pagination must be one of {TRANSCRIPTION_PAGINATION}")
        for name in (
            "transcription_ratio",
            "in_progress_ratio",
            "fault_5xx",
            "fault_reset",
            "fault_truncate",
            "fault_expire",
            "fault_partial_delete",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.fault_5xx + self.fault_reset > 1.0:
            raise ValueError("fault_5xx + fault_reset must be <= 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be > 0 (or None for no limit)")
        if self.rate_burst < 1:
            raise ValueError("rate_burst must be >= 1")

    def update(self, changes: dict[str, Any]) -> None:
        """Apply runtime changes (POST /_sandbox/config); unknown or data fields are refused."""
        allowed = {f.name for f in fields(self)} - RUNTIME_FIXED
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} at runtime")
        old = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            self.validate()
        except ValueError:
            for name, value in old.items():
                setattr(self, name, value)
            raise

    def public(self) -> dict[str, Any]:
        """The settings without the API key and the stored credentials."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.pop("api_key")
        out.pop("credentials")
        if self.anchor is not None:
            out["anchor"] = self.anchor.isoformat()
        return out


# Read once when the data is generated: changing them later would not change the data.
RUNTIME_FIXED = frozenset(
    {
        "recordings",
        "seed",
        "connections",
        "days",
        "anchor",
        "audio_bytes",
        "transcription_ratio",
        "in_progress_ratio",
        "credentials",
    }
)


def load_credentials(path: str | Path) -> dict[str, dict[str, Any]]:
    """A JSON file {connection_id: CustomStorageConfiguration body}."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected an object of connection_id -> configuration body")
    return {str(k): v for k, v in data.items()}
