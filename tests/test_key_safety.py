"""Object keys built from API data never leave the configured prefix, on any backend.

A hostile recording id or connection id (`../x`, `a/b`, NUL, a backslash, odd unicode) is
refused before any key is built: the recording is reported and left in Telnyx, and nothing
is written outside the prefix: not in the bucket beside it, not in the folder above it.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.archive.keys import UnsafeIdError, audio_key, manifest_key, parquet_key, safe_id
from pipeline.archive.options import ArchiveOptions, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.sandbox import app as sandbox_app
from pipeline.storage._common import check_key
from pipeline.storage.local import LocalBackend
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx import TelnyxClient
from pipeline.telnyx.models import Recording
from tests.fixtures.emulators import Emulators

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
FAST = dict(requests_per_second=1000.0, max_concurrency=16, backoff_base=0.01, backoff_max=0.1)
PREFIX = "telnyx-archive"
HOSTILE = [
    "../x",
    "..",
    ".",
    "a/b",
    "/abs",
    "x\x00y",
    "a\\b",
    "..%2F..%2Fx",
    "../../../../etc/passwd",
    "\u202egnp",
    "ｆｕｌｌ",
    "a\nb",
    "",
]
ID_TEXT = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))
DAY = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def stays_inside(key: str) -> bool:
    norm = posixpath.normpath(key)
    return not norm.startswith(("/", "..")) and norm == key and check_key(key) == key


@settings(max_examples=400, deadline=None, derandomize=True)
@given(recording_id=ID_TEXT, connection_id=ID_TEXT, fmt=st.sampled_from(["mp3", "wav"]))
def test_an_audio_key_from_any_ids_is_refused_or_stays_under_the_prefix(
    recording_id: str, connection_id: str, fmt: str
) -> None:
    rec = Recording(id=recording_id, connection_id=connection_id, created_at=DAY)
    try:
        key = audio_key(rec, fmt)
    except UnsafeIdError:
        with pytest.raises(UnsafeIdError):  # one of the two ids is at fault
            safe_id(recording_id, "r")
            safe_id(connection_id, "c")
        return
    assert stays_inside(key), key
    assert key.startswith(f"audio/call_date=2026-01-02/connection_id={connection_id}/")


def test_parquet_and_manifest_keys_stay_under_the_prefix() -> None:
    for key in (
        parquet_key("recordings", DAY.date(), "20260102T000000Z-abc123", 7),
        manifest_key("r1"),
    ):
        assert stays_inside(key)


# --- end to end, on every backend --------------------------------------------------------------

SERVED: dict[str, dict[str, Any]] = {}
_recording_out = sandbox_app.recording_out


def hostile_out(request: web.Request, rec: dict[str, Any]) -> dict[str, Any]:
    out = _recording_out(request, rec)
    out.update(SERVED.get(rec["id"], {}))
    return out


@pytest.mark.parametrize("kind", ["s3", "s3-generic", "gcs", "azure", "local"])
async def test_hostile_ids_are_refused_reported_and_left_and_nothing_lands_outside_the_prefix(
    kind: str, emulators: Emulators, tmp_path: Path
) -> None:
    settings_ = emulators.settings(
        None if kind == "local" else ("s3" if kind == "s3-generic" else kind)
    )
    config: dict[str, Any] = {}
    outer = tmp_path / "outer"
    if kind == "local":
        (outer / PREFIX).mkdir(parents=True)
        storage = StorageSettings(default_destination=(outer / PREFIX).as_uri())
        whole: Any = LocalBackend(root=outer, settings=StorageSettings())
    else:
        credential = emulators.credential(kind)
        config["credentials"] = {f"#{i}": credential.to_api() for i in range(2)}
        storage = settings_
        root_view = replace(settings_, prefix="")
        whole = emulators.backend(kind, credential.bucket, create=False, settings=root_view)
    sandbox_config = SandboxConfig(
        recordings=2 * len(HOSTILE) + 6, seed=21, connections=2, audio_bytes=1024, **config
    )
    async with SandboxServer(sandbox_config) as sandbox:
        keys = sorted(sandbox.state.recordings)
        SERVED.clear()
        for i, bad in enumerate(HOSTILE):
            SERVED[keys[2 * i]] = {"id": bad}
            SERVED[keys[2 * i + 1]] = {"connection_id": bad}
        with patch.object(sandbox_app, "recording_out", hostile_out):
            async with TelnyxClient(sandbox.config.api_key, sandbox.base_url, **FAST) as client:
                report = await archive(
                    WINDOW, client=client, storage=storage, options=ArchiveOptions()
                )
        assert set(sandbox.state.recordings) == set(SERVED), (
            "every hostile one stays, the rest went"
        )
        assert report.recordings_failed == len(SERVED)
        refused = [e for e in report.errors if "not a safe id" in e or "is missing" in e]
        assert len(refused) == len(SERVED), report.errors

    written = [obj.key for obj in await whole.list("")]
    assert written, "the other recordings were archived"
    outside = [k for k in written if not k.startswith(f"{PREFIX}/")]
    assert outside == [], f"written outside the prefix on {kind}: {outside}"
    for bad in HOSTILE:
        if bad not in ("", "."):
            assert not any(f"/{bad}." in k or f"={bad}/" in k for k in written)
    if kind == "local":
        files = await asyncio.to_thread(lambda: [p for p in tmp_path.rglob("*") if p.is_file()])
        assert [p for p in files if outer / PREFIX not in p.parents] == []
